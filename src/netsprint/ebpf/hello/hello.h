// The record hello.bpf.c sends through its ring buffer for each execve(2).
//
// Only <linux/types.h> types, so gcc can compile it for the ctypes-mirror size test
// (tests/test_ebpf_hello.py) and bcc into the program.
//
// No parent pid: the only way to it is task->real_parent->tgid, a kernel struct read, and the
// headers bcc compiles against may not match the running kernel (their layout would be
// garbage). syscalls:sys_enter_execve's arguments do not carry it.
#ifndef NETSPRINT_HELLO_H
#define NETSPRINT_HELLO_H

#include "netsprint_common.h"

// PATH_MAX is 4096, but a record is copied for every exec on the machine: 256 bytes cover
// real program paths; longer ones arrive cut (and NUL-terminated) at 255 bytes.
#define NETSPRINT_EXEC_PATH_LEN 256

struct exec_event {
    __u64 ts_ns;          // bpf_ktime_get_ns(): CLOCK_MONOTONIC, the clock of time.monotonic_ns()
    __u32 pid;            // process id (the kernel's tgid): the pid the new program keeps
    __u32 tid;            // thread id (the kernel's pid)
    __u32 uid;
    __s32 filename_len;   // bpf_probe_read_user_str's result: bytes with the NUL, or -errno
    __u8 comm[NETSPRINT_COMM_LEN];  // the caller's name: the exec has not happened yet
    __u8 filename[NETSPRINT_EXEC_PATH_LEN];
};

#endif
