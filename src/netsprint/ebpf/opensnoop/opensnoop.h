// The record opensnoop.bpf.c sends through its ring buffer for each finished openat(2).
//
// Only <linux/types.h> types, so gcc can compile it for the ctypes-mirror size test
// (tests/test_ebpf_opensnoop.py) and bcc into the program.
#ifndef NETSPRINT_OPENSNOOP_H
#define NETSPRINT_OPENSNOOP_H

#include "netsprint_common.h"

// PATH_MAX is 4096, but a ring-buffer record is copied for every open on the machine:
// 256 bytes cover real paths; longer ones arrive cut (and NUL-terminated) at 255 bytes.
#define NETSPRINT_OPEN_PATH_LEN 256

struct open_event {
    __u64 ts_ns;    // bpf_ktime_get_ns(): CLOCK_MONOTONIC, the clock of time.monotonic_ns()
    __u32 pid;      // process id (the kernel's tgid)
    __u32 tid;      // thread id (the kernel's pid)
    __u32 uid;
    __s32 flags;    // openat's flags argument (O_RDONLY, O_CREAT, O_CLOEXEC ...)
    __s64 ret;      // the new fd, or -errno
    __u8 comm[NETSPRINT_COMM_LEN];
    __u8 filename[NETSPRINT_OPEN_PATH_LEN];
};

#endif
