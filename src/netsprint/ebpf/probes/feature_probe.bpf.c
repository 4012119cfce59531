// Feature probes for `netsprint doctor`: one tiny program per attach type.
//
// Compiled by feature_probe.py with exactly one of -DNETSPRINT_PROBE_TRACEPOINT,
// -DNETSPRINT_PROBE_KPROBE, -DNETSPRINT_PROBE_FENTRY, plus -DNETSPRINT_TGID=<pid of the
// probing process>. Each program counts how often it ran for that process in hits[0], so the
// loader can tell "attached" from "attached and really fired".

BPF_ARRAY(hits, u64, 1);

static __always_inline int count_hit(void)
{
    if ((bpf_get_current_pid_tgid() >> 32) != NETSPRINT_TGID)
        return 0;
    u32 key = 0;
    u64 *value = hits.lookup(&key);
    if (value)
        __sync_fetch_and_add(value, 1);
    return 0;
}

#if defined(NETSPRINT_PROBE_TRACEPOINT)
// Attached by the loader to syscalls:sys_enter_getpid (or raw_syscalls:sys_enter).
int probe_tracepoint(void *ctx)
{
    return count_hit();
}
#endif

#if defined(NETSPRINT_PROBE_KPROBE)
// Attached by the loader to the getpid syscall's kernel entry function.
int probe_kprobe(struct pt_regs *ctx)
{
    return count_hit();
}
#endif

#if defined(NETSPRINT_PROBE_FENTRY)
// fentry on bpf_fentry_test1, the kernel's own no-op target for trampoline tests. bcc loads and
// attaches kfunc__* programs as soon as the module is built.
KFUNC_PROBE(bpf_fentry_test1, int a)
{
    return count_hit();
}
#endif
