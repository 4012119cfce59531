// opensnoop: each openat(2) as one ring-buffer record, and read(2) bytes summed per process.
//
// Compiled by loader.py with bcc. Optional cflags:
//   -DNETSPRINT_TGID=<pid>          trace only that process (default: every process)
//   -DNETSPRINT_RINGBUF_PAGES=<n>   ring-buffer size in pages, a power of two (default 64)
//
// Only tracepoint arguments are read, through structs that follow
// /sys/kernel/tracing/events/syscalls/<event>/format: never kernel structs, whose layout the
// (possibly mismatched) headers could get wrong.
#include "opensnoop.h"

#ifndef NETSPRINT_RINGBUF_PAGES
#define NETSPRINT_RINGBUF_PAGES 64
#endif

// syscalls:sys_enter_openat. Every syscall argument is stored as 8 bytes after the 8-byte
// common header and the 4-byte syscall number (padded to 16).
struct ns_openat_enter_args {
    __u64 common;       // common_type, common_flags, common_preempt_count, common_pid
    __s32 syscall_nr;
    __u32 pad;
    __u64 dfd;
    __u64 filename;     // const char __user *: user memory, read with bpf_probe_read_user_str
    __u64 flags;
    __u64 mode;
};

// syscalls:sys_exit_openat and syscalls:sys_exit_read share this layout.
struct ns_sys_exit_args {
    __u64 common;
    __s32 syscall_nr;
    __u32 pad;
    __s64 ret;
};

// What sys_enter_openat knows and sys_exit_openat needs: the result exists only at exit, and
// the path is best read at exit too, once the kernel has copied it (and so faulted its page
// in: a BPF program cannot take a page fault, bpf_probe_read_user_str would just fail).
struct open_args {
    __u64 filename;
    __s32 flags;
};

// Keyed by pid_tgid (thread): one thread has at most one syscall in flight.
BPF_HASH(open_args_by_thread, __u64, struct open_args, 10240);
BPF_RINGBUF_OUTPUT(events, NETSPRINT_RINGBUF_PAGES);
// lost[0]: records dropped because the ring buffer was full (reader too slow).
BPF_ARRAY(lost, __u64, 1);
// Bytes returned by read(2), per process (tgid). A full map stops counting new processes.
BPF_HASH(read_bytes, __u32, __u64, 10240);

static __always_inline int traced(__u64 pid_tgid)
{
#ifdef NETSPRINT_TGID
    return (pid_tgid >> 32) == NETSPRINT_TGID;
#else
    return 1;
#endif
}

int ns_open_enter(struct ns_openat_enter_args *args)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!traced(pid_tgid))
        return 0;
    struct open_args stash = {.filename = args->filename, .flags = (__s32)args->flags};
    open_args_by_thread.update(&pid_tgid, &stash);
    return 0;
}

static __always_inline void count_lost(void)
{
    __u32 key = 0;
    __u64 *count = lost.lookup(&key);
    if (count)
        __sync_fetch_and_add(count, 1);
}

int ns_open_exit(struct ns_sys_exit_args *args)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct open_args *stash = open_args_by_thread.lookup(&pid_tgid);
    if (!stash)  // the enter happened before we attached, or another process (filtered out)
        return 0;
    // Reserve in place: the 300-byte record would not fit the 512-byte BPF stack comfortably,
    // and a NULL here is the one signal that the buffer is full.
    struct open_event *event = events.ringbuf_reserve(sizeof(struct open_event));
    if (!event) {
        count_lost();
        open_args_by_thread.delete(&pid_tgid);
        return 0;
    }
    event->ts_ns = bpf_ktime_get_ns();
    event->pid = pid_tgid >> 32;
    event->tid = (__u32)pid_tgid;
    event->uid = (__u32)bpf_get_current_uid_gid();
    event->flags = stash->flags;
    event->ret = args->ret;
    bpf_get_current_comm(&event->comm, sizeof(event->comm));
    if (bpf_probe_read_user_str(&event->filename, sizeof(event->filename),
                                (const void *)stash->filename) < 0)
        event->filename[0] = 0;  // unreadable user memory: an empty name, not garbage
    open_args_by_thread.delete(&pid_tgid);
    events.ringbuf_submit(event, 0);
    return 0;
}

int ns_read_exit(struct ns_sys_exit_args *args)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!traced(pid_tgid) || args->ret <= 0)  // 0 = end of file, < 0 = -errno: no bytes
        return 0;
    __u32 pid = pid_tgid >> 32;
    __u64 zero = 0;
    __u64 *total = read_bytes.lookup_or_try_init(&pid, &zero);
    if (total)
        __sync_fetch_and_add(total, (__u64)args->ret);
    return 0;
}
