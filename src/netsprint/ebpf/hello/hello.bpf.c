// hello: each execve(2) on the machine as one ring-buffer record (struct exec_event).
//
// Compiled by loader.py with bcc. Optional cflag:
//   -DNETSPRINT_RINGBUF_PAGES=<n>   ring-buffer size in pages, a power of two (default 64)
// A pid filter is set at run time in the `filter` map (0: every process), so changing it
// needs no recompile.
//
// Only tracepoint arguments and helpers are used, never kernel structs: the headers bcc
// compiles against may belong to another kernel.
#include "hello.h"

#ifndef NETSPRINT_RINGBUF_PAGES
#define NETSPRINT_RINGBUF_PAGES 64
#endif

// syscalls:sys_enter_execve, as /sys/kernel/tracing/events/syscalls/sys_enter_execve/format
// lays it out: the 8-byte common header, the syscall number (padded to 16), then each
// syscall argument in 8 bytes.
struct ns_execve_enter_args {
    __u64 common;        // common_type, common_flags, common_preempt_count, common_pid
    __s32 syscall_nr;
    __u32 pad;
    __u64 filename;      // const char __user *: user memory, read with bpf_probe_read_user_str
    __u64 argv;
    __u64 envp;
};

BPF_RINGBUF_OUTPUT(events, NETSPRINT_RINGBUF_PAGES);
// filter[0]: trace only this process id; 0 traces every process.
BPF_ARRAY(filter, __u32, 1);
// lost[0]: records dropped because the ring buffer was full (reader too slow).
BPF_ARRAY(lost, __u64, 1);

static __always_inline int wanted(__u32 pid)
{
    __u32 key = 0;
    __u32 *only = filter.lookup(&key);
    // An array lookup cannot miss for key 0, but the verifier does not know that: check.
    return !only || *only == 0 || *only == pid;
}

int ns_hello_exec(struct ns_execve_enter_args *args)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!wanted(pid_tgid >> 32))
        return 0;
    // Reserve in place: a 300-byte record would crowd the 512-byte BPF stack.
    struct exec_event *event = events.ringbuf_reserve(sizeof(struct exec_event));
    if (!event) {
        __u32 key = 0;
        __u64 *count = lost.lookup(&key);
        if (count)
            __sync_fetch_and_add(count, 1);
        return 0;
    }
    event->ts_ns = bpf_ktime_get_ns();
    event->pid = pid_tgid >> 32;
    event->tid = (__u32)pid_tgid;
    event->uid = (__u32)bpf_get_current_uid_gid();  // low 32 bits: uid, high: gid
    bpf_get_current_comm(&event->comm, sizeof(event->comm));
    event->filename_len = bpf_probe_read_user_str(&event->filename, sizeof(event->filename),
                                                  (const void *)args->filename);
    if (event->filename_len < 0)
        event->filename[0] = 0;  // unreadable user memory (page not present): empty, not garbage
    events.ringbuf_submit(event, 0);
    return 0;
}
