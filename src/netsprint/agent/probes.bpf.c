// The agent's probes (weeks 12-19): per-flow TCP counters and histograms in maps that the
// agent reads on a schedule (probes.py `AgentProbes.snapshot()`). Tracepoints only: kprobes
// are compiled out on the project's kernel, fentry is refused, and the build headers do not
// match the kernel (docs/ebpf.md, "Why tracepoints first").
//
// Hooks, each keyed by the socket's address (skaddr / sk, the same pointer everywhere):
//   sock:inet_sock_set_state  opens, closes, connect failures, connect duration
//   sock:sock_send_length     raw: payload bytes sent (kernel >= 6.3), process context
//   sock:sock_recv_length     raw: payload bytes received, MSG_PEEK excluded, process context
//   tcp:tcp_retransmit_skb    retransmitted segments
//   tcp:tcp_probe             raw: smoothed RTT, once per received segment (kept minimal)
//   tcp:tcp_destroy_sock      moves the socket's bytes into its flow, forgets the socket
//
// Why raw for those three: they run on every message or segment, and a classic tracepoint
// fills its event record before the program runs, which doubles what the hook costs before
// the program does anything (measured: docs/performance.md, "Agent overhead").
// A raw program gets the C arguments instead, so it reads the fields it needs itself, with
// bpf_probe_read_kernel at AGENT_OFF_* offsets that probes.py takes from the running
// kernel's BTF at load time (never from the headers, which are another kernel's).
//
// Why bytes wait in the socket's entry: sock_send_length and sock_recv_length run on every
// message, 4 runs per request-reply (docs/performance.md, "Agent overhead"). Adding to the
// entry the socket lookup finds costs one lookup with an 8-byte key; going on to the flow
// cost a second one with a 48-byte key (struct agent_flow_key). The entry's bytes move to
// the flow at destroy, and a read adds the bytes of the live sockets (probes.py), so nothing
// is lost while a socket lives. (tcp_probe is not sampled: the srtt histogram counts every
// received segment's RTT. A random 1-in-8 sample saved nothing measurable while the hook was
// a classic tracepoint; raw, the body is most of its cost, and docs/performance.md says what
// sampling could still save.)
//
// Why per-CPU maps for `flows` and the histograms: many sockets of one pod talking to one
// peer share one flow key, and sendmsg()/softirqs on several CPUs would update the same
// value at once. In a per-CPU map each CPU has its own copy, so a plain `+=` is exact
// (tracing programs do not nest on one CPU: the kernel's bpf_prog_active guard skips a
// nested run) and no cache line bounces between CPUs; user space sums the copies. The
// price is memory: max_flows x CPUs x value size, preallocated (224 B for a histogram).
//
// Why a plain hash (not LRU) for `sockets` and `flows`: a full map must refuse and be
// counted (`lost`), not silently evict a live socket or a flow's cumulative counters.
// Inserts use lookup_or_try_init: bcc's increment() inserts nothing for a new key on
// per-CPU maps (docs/ebpf.md, maps).
#include "probes.h"
#include "inet_sock_set_state.h"  // struct set_state_args, TCP_* states, copy_addresses()
#include "sock_events.h"          // struct destroy_args, MSG_PEEK_FLAG

#ifndef AGENT_OFF_TCP_SRTT_US
#error "field offsets come from the kernel's BTF: load through probes.py AgentProbes"
#endif

#ifndef AGENT_MAX_FLOWS
#define AGENT_MAX_FLOWS 10240
#endif
#ifndef AGENT_MAX_SOCKETS
#define AGENT_MAX_SOCKETS 65536
#endif

// /sys/kernel/tracing/events/tcp/tcp_retransmit_skb/format
struct retransmit_args {
    __u64 common;
    __u64 skbaddr;
    __u64 skaddr;
    int state;
    __u16 sport;
    __u16 dport;
    __u16 family;
    __u8 saddr[4];          // offset 34: byte arrays pack right after family
    __u8 daddr[4];
    __u8 saddr_v6[16];
    __u8 daddr_v6[16];
    int err;
};

// Sockets from SYN_SENT / SYN_RECV until the kernel destroys them. Deleted at destroy, not at
// CLOSE: an application may still read queued bytes after the state reached CLOSE
// (shutdown(SHUT_WR), then the peer's FIN), and those belong to the flow too.
BPF_HASH(sockets, __u64, struct agent_socket, AGENT_MAX_SOCKETS);
BPF_TABLE("percpu_hash", struct agent_flow_key, struct agent_flow_counters, flows, AGENT_MAX_FLOWS);
BPF_TABLE("percpu_hash", struct agent_flow_key, struct agent_histogram, connect_hist, AGENT_MAX_FLOWS);
BPF_TABLE("percpu_hash", struct agent_flow_key, struct agent_histogram, srtt_hist, AGENT_MAX_FLOWS);
// Inserts refused because a map was full, per map (AGENT_LOST_*), per CPU.
BPF_PERCPU_ARRAY(lost, __u64, AGENT_LOST_SLOTS);
// One all-zero histogram, never written: the initial value for a new histogram key (224
// bytes would crowd the 512-byte BPF stack).
BPF_ARRAY(zero_histogram, struct agent_histogram, 1);

static __always_inline void count_lost(__u32 index)
{
    __u64 *count = lost.lookup(&index);
    if (count)
        *count += 1;  // per-CPU slot
}

static __always_inline struct agent_flow_counters *flow_counters(struct agent_flow_key *key)
{
    struct agent_flow_counters zero = {};
    struct agent_flow_counters *counters = flows.lookup_or_try_init(key, &zero);
    if (!counters)
        count_lost(AGENT_LOST_FLOWS);
    return counters;
}

// floor(log2(value)) with log2(0) = log2(1) = 0, capped at the last (open-ended) slot.
static __always_inline __u32 log2_slot(__u64 value)
{
    __u32 slot = 0;
    if (value >> 32) { value >>= 32; slot += 32; }
    if (value >> 16) { value >>= 16; slot += 16; }
    if (value >> 8)  { value >>= 8;  slot += 8; }
    if (value >> 4)  { value >>= 4;  slot += 4; }
    if (value >> 2)  { value >>= 2;  slot += 2; }
    if (value >> 1)  { slot += 1; }
    return slot < AGENT_HISTOGRAM_SLOTS ? slot : AGENT_HISTOGRAM_SLOTS - 1;
}

static __always_inline void add_sample(struct agent_histogram *hist, __u64 us)
{
    __u32 slot = log2_slot(us);
    if (slot < AGENT_HISTOGRAM_SLOTS)  // always true; the verifier wants the bound spelled out
        hist->slots[slot] += 1;
    hist->sum_us += us;
}

// The key of a socket opened before we attached: the tracepoint's own addresses, cgroup
// unknown (0). `key` must be zeroed: an IPv4 address fills only 4 of the 16 bytes.
static __always_inline void key_from_fields(struct agent_flow_key *key, __u16 family,
                                            const __u8 *local4, const __u8 *peer4,
                                            const __u8 *local6, const __u8 *peer6)
{
    key->family = family;
    if (family == NS_AF_INET) {
        __builtin_memcpy(key->local, local4, 4);
        __builtin_memcpy(key->peer, peer4, 4);
    } else {
        __builtin_memcpy(key->local, local6, 16);
        __builtin_memcpy(key->peer, peer6, 16);
    }
}

static __always_inline void record_connect(struct agent_flow_key *key, __u64 us)
{
    __u32 zero_key = 0;
    struct agent_histogram *zero = zero_histogram.lookup(&zero_key);
    if (!zero)
        return;
    struct agent_histogram *hist = connect_hist.lookup_or_try_init(key, zero);
    if (!hist) {
        count_lost(AGENT_LOST_CONNECT_HIST);
        return;
    }
    add_sample(hist, us);
}

static __always_inline void record_srtt(struct agent_flow_key *key, __u64 us)
{
    struct agent_histogram *hist = srtt_hist.lookup(key);
    if (!hist) {  // first sample of this flow: the slow path
        __u32 zero_key = 0;
        struct agent_histogram *zero = zero_histogram.lookup(&zero_key);
        if (!zero)
            return;
        hist = srtt_hist.lookup_or_try_init(key, zero);
        if (!hist) {
            count_lost(AGENT_LOST_SRTT_HIST);
            return;
        }
    }
    add_sample(hist, us);
}

// --- sock:inet_sock_set_state ------------------------------------------------------------

// The bytes a `sockets` entry holds, on their way to the flow when the entry goes away.
// Taken out, then the entry is removed or replaced, then they are added to the flow: a map
// read between the two steps sees them nowhere and is short until the next read (probes.py
// keeps the exported counters from going down); the other order could show them twice.
struct moving_bytes {
    struct agent_flow_key key;
    __u64 sent;
    __u64 received;
};

static __always_inline void take_bytes(struct agent_socket *entry, struct moving_bytes *out)
{
    out->key = entry->key;
    out->sent = entry->sent_bytes;
    out->received = entry->received_bytes;
}

static __always_inline void add_bytes_to_flow(struct moving_bytes *moved)
{
    if (!moved->sent && !moved->received)
        return;
    struct agent_flow_counters *counters = flow_counters(&moved->key);
    if (!counters)
        return;  // `flows` is full (counted): these bytes are lost
    counters->sent_bytes += moved->sent;
    counters->received_bytes += moved->received;
}

static __always_inline void start_socket(__u64 sk, __u8 direction, __u64 cgroup_id,
                                         __u8 cgroup_known, __u64 start_ns)
{
    // connect() again on a socket that carried bytes (connect(AF_UNSPEC) disconnects it):
    // its old entry is about to be overwritten, so its bytes go to their flow.
    struct moving_bytes moved = {};
    struct agent_socket *old = sockets.lookup(&sk);
    if (old)
        take_bytes(old, &moved);
    struct agent_socket entry = {};
    entry.key.cgroup_id = cgroup_id;
    entry.cgroup_known = cgroup_known;
    entry.direction = direction;
    entry.connect_start_ns = start_ns;
    // BPF_ANY: a reused socket address (connect() again after a failure) starts over.
    if (sockets.update(&sk, &entry) != 0)
        count_lost(AGENT_LOST_SOCKETS);
    add_bytes_to_flow(&moved);
}

static __always_inline void take_addresses(struct agent_socket *entry, struct set_state_args *args)
{
    entry->key.family = args->family;
    copy_addresses(args, entry->key.local, entry->key.peer);
}

static __always_inline void on_established(__u64 sk, struct set_state_args *args, __u64 now)
{
    __u8 active = args->oldstate == TCP_SYN_SENT;
    struct agent_socket *entry = sockets.lookup(&sk);
    if (!entry) {  // the handshake began before we attached; softirq now: cgroup unknown
        start_socket(sk, active ? AGENT_ACTIVE : AGENT_PASSIVE, 0, 0, 0);
        entry = sockets.lookup(&sk);
        if (!entry)
            return;  // `sockets` is full (already counted)
    }
    take_addresses(entry, args);
    entry->opened = 1;
    entry->opened_cgroup_id = entry->key.cgroup_id;
    struct agent_flow_counters *counters = flow_counters(&entry->key);
    if (counters) {
        if (active)
            counters->opened_outbound += 1;
        else
            counters->opened_inbound += 1;
    }
    if (active && entry->connect_start_ns)
        record_connect(&entry->key, (now - entry->connect_start_ns) / 1000);
}

static __always_inline void on_close(__u64 sk, struct set_state_args *args)
{
    struct agent_socket *entry = sockets.lookup(&sk);
    if (!entry)
        return;
    if (entry->opened) {
        // Counted under the key the open was counted under, so `active` per key stays
        // right even when a passive socket learned its cgroup in between.
        struct agent_flow_key key = entry->key;
        key.cgroup_id = entry->opened_cgroup_id;
        entry->opened = 0;
        struct agent_flow_counters *counters = flow_counters(&key);
        if (counters)
            counters->closed += 1;
    } else if (args->oldstate == TCP_SYN_SENT) {
        // Refused, unreachable or timed out (in softirq: the cgroup is the one connect()
        // ran in, recorded at SYN_SENT). The entry has no addresses yet (they are taken at
        // ESTABLISHED); the tracepoint carries the ones connect() set.
        take_addresses(entry, args);
        struct agent_flow_counters *counters = flow_counters(&entry->key);
        if (counters)
            counters->connect_failures += 1;
    }
}

int ns_agent_state(struct set_state_args *args)
{
    if (args->protocol != NS_IPPROTO_TCP)
        return 0;
    __u64 sk = args->skaddr;
    int oldstate = args->oldstate, newstate = args->newstate;
    if (newstate == TCP_SYN_SENT) {
        // connect(): process context, so the current cgroup is the connecting process's.
        start_socket(sk, AGENT_ACTIVE, bpf_get_current_cgroup_id(), 1, bpf_ktime_get_ns());
    } else if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
        // A passive child, created in softirq: the current task is whoever was interrupted.
        start_socket(sk, AGENT_PASSIVE, 0, 0, 0);
    } else if (newstate == TCP_ESTABLISHED
               && (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)) {
        on_established(sk, args, bpf_ktime_get_ns());
    } else if (newstate == TCP_CLOSE) {
        on_close(sk, args);
    }
    return 0;
}

int ns_agent_destroy(struct destroy_args *args)
{
    __u64 sk = args->skaddr;
    struct agent_socket *entry = sockets.lookup(&sk);
    if (!entry)
        return 0;
    // No sendmsg/recvmsg can add to the entry now: the socket is being freed.
    struct moving_bytes moved;
    take_bytes(entry, &moved);
    sockets.delete(&sk);
    add_bytes_to_flow(&moved);
    return 0;
}

// --- sock:sock_send_length / sock_recv_length (raw) -----------------------------------------

// Is a socket the probes never saw open a TCP one? Only asked on the slow path: every socket
// in `sockets` is TCP, and unix, UDP and netlink sockets send through these hooks too.
static __always_inline int is_inet_tcp(__u64 sk)
{
    __u16 family = 0, protocol = 0;
    bpf_probe_read_kernel(&family, sizeof(family), (void *)(sk + AGENT_OFF_SKC_FAMILY));
    bpf_probe_read_kernel(&protocol, sizeof(protocol), (void *)(sk + AGENT_OFF_SK_PROTOCOL));
    return (family == NS_AF_INET || family == NS_AF_INET6) && protocol == NS_IPPROTO_TCP;
}

// Runs in process context (the sendmsg/recvmsg caller), so the current cgroup is the user's.
static __always_inline void count_payload(__u64 sk, __u64 bytes, int sent)
{
    struct agent_socket *entry = sockets.lookup(&sk);
    if (entry) {
        if (!entry->cgroup_known) {  // the first user of an accepted socket
            entry->key.cgroup_id = bpf_get_current_cgroup_id();
            entry->cgroup_known = 1;
        }
        // Atomic: the tracepoint fires after sendmsg/recvmsg released the socket lock, so
        // two threads sending on one socket can add at once.
        if (sent)
            __sync_fetch_and_add(&entry->sent_bytes, bytes);
        else
            __sync_fetch_and_add(&entry->received_bytes, bytes);
        return;
    }
    if (!is_inet_tcp(sk))
        return;
    // Opened before we attached: no addresses, only who uses it (UNKNOWN downstream).
    struct agent_flow_key key = {};
    key.cgroup_id = bpf_get_current_cgroup_id();
    struct agent_flow_counters *counters = flow_counters(&key);
    if (!counters)
        return;
    if (sent)
        counters->sent_bytes += bytes;
    else
        counters->received_bytes += bytes;
}

// Raw tracepoint arguments are the tracepoint's TP_PROTO (include/trace/events/sock.h):
// (struct sock *sk, int ret, int flags); `ret` is the bytes moved or -errno.
int ns_agent_send(struct bpf_raw_tracepoint_args *ctx)
{
    int ret = (int)ctx->args[1];
    if (ret <= 0)
        return 0;
    count_payload(ctx->args[0], ret, 1);
    return 0;
}

int ns_agent_recv(struct bpf_raw_tracepoint_args *ctx)
{
    // A peek leaves the bytes queued; the read that takes them counts them.
    int ret = (int)ctx->args[1], flags = (int)ctx->args[2];
    if (ret <= 0 || (flags & MSG_PEEK_FLAG))
        return 0;
    count_payload(ctx->args[0], ret, 0);
    return 0;
}

// --- tcp:tcp_retransmit_skb ------------------------------------------------------------------

int ns_agent_retrans(struct retransmit_args *args)
{
    __u64 sk = args->skaddr;
    struct agent_socket *entry = sockets.lookup(&sk);
    struct agent_flow_counters *counters;
    if (entry) {
        counters = flow_counters(&entry->key);
    } else {  // opened before we attached
        struct agent_flow_key key = {};
        key_from_fields(&key, args->family, args->saddr, args->daddr, args->saddr_v6,
                        args->daddr_v6);
        counters = flow_counters(&key);
    }
    if (counters)
        counters->retransmitted_segments += 1;
    return 0;
}

// --- tcp:tcp_probe (raw) ------------------------------------------------------------------

// The key of a socket opened before we attached, from its struct sock_common: cgroup unknown.
// `key` must be zeroed: an IPv4 address fills only 4 of the 16 bytes.
static __always_inline void key_from_sock(struct agent_flow_key *key, __u64 sk)
{
    bpf_probe_read_kernel(&key->family, sizeof(key->family), (void *)(sk + AGENT_OFF_SKC_FAMILY));
    if (key->family == NS_AF_INET) {
        bpf_probe_read_kernel(key->local, 4, (void *)(sk + AGENT_OFF_SKC_RCV_SADDR));
        bpf_probe_read_kernel(key->peer, 4, (void *)(sk + AGENT_OFF_SKC_DADDR));
    } else {
        bpf_probe_read_kernel(key->local, 16, (void *)(sk + AGENT_OFF_SKC_V6_RCV_SADDR));
        bpf_probe_read_kernel(key->peer, 16, (void *)(sk + AGENT_OFF_SKC_V6_DADDR));
    }
}

// Fires for every segment an established socket receives (tcp_rcv_established), so it does
// the least it can: one field read, one socket lookup, one histogram lookup, three adds.
// Arguments: (struct sock *sk, struct sk_buff *skb) (include/trace/events/tcp.h).
int ns_agent_srtt(struct bpf_raw_tracepoint_args *ctx)
{
    __u64 sk = ctx->args[0];
    __u32 srtt_us8 = 0;  // tcp_sock.srtt_us: the smoothed RTT in microseconds, times 8
    bpf_probe_read_kernel(&srtt_us8, sizeof(srtt_us8), (void *)(sk + AGENT_OFF_TCP_SRTT_US));
    __u64 us = srtt_us8 >> 3;  // as the classic tcp_probe event reports it
    if (us == 0)  // no RTT sample yet
        return 0;
    struct agent_socket *entry = sockets.lookup(&sk);
    if (entry) {
        record_srtt(&entry->key, us);
        return 0;
    }
    struct agent_flow_key key = {};  // opened before we attached
    key_from_sock(&key, sk);
    record_srtt(&key, us);
    return 0;
}
