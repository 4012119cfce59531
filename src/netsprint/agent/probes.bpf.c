// The agent's probes (weeks 12-19): per-flow TCP counters and histograms in maps that the
// agent reads on a schedule (probes.py `AgentProbes.snapshot()`). Tracepoints only: kprobes
// are compiled out on the project's kernel, fentry is refused, and the build headers do not
// match the kernel (docs/ebpf.md, "Why tracepoints first").
//
// Hooks, each keyed by the socket's address (skaddr / sk, the same pointer everywhere):
//   sock:inet_sock_set_state  opens, closes, connect failures, connect duration; where a
//                             socket's byte counts start, its FIN; at CLOSE, its bytes
//   tcp:tcp_retransmit_skb    retransmitted segments
//   tcp:tcp_probe             BTF-typed raw: smoothed RTT, per received segment (kept minimal)
// and one program that runs only when the agent reads: bpf_iter__bpf_map_elem, an iterator
// over `sockets` that writes each entry's bytes and RTT samples so far (struct
// agent_live_socket).
//
// Why no hook counts bytes: a hook on every message (sock_send_length / sock_recv_length,
// what weeks 10-11 use) costs the traffic four program runs per request-reply, and that
// alone broke the agent's overhead budget (docs/performance.md, "Agent overhead"). The
// kernel already counts each socket's bytes in its tcp_sock (bytes_acked, bytes_received:
// RFC 4898, what tcp_info and `ss -i` report), so the agent reads those counters instead:
// when a map read asks (the iterator) and at CLOSE, when they stop moving. The price is the
// meaning: "sent" is what the peer acknowledged and "received" what arrived in sequence,
// not what send() and recv() moved; the two agree once a connection is idle.
//
// Why raw for tcp_probe: it runs on every segment, and a classic tracepoint fills its event
// record before the program runs, which doubles what the hook costs before the program does
// anything (measured: docs/performance.md). A raw program gets the C arguments instead, so it
// reads the fields it needs itself, at AGENT_OFF_* offsets that probes.py takes from the
// running kernel's BTF at load time (never from the headers, which are another kernel's).
// It is BTF-typed (tp_btf), so its one hot read is a plain load; the state hook and the
// iterator, off the hot path, read with bpf_probe_read_kernel. (The srtt histogram counts
// every received segment's RTT: tcp_probe is not sampled.)
//
// Why per-CPU maps for `flows` and the histograms: many sockets of one pod talking to one
// peer share one flow key, and softirqs on several CPUs would update the same value at once.
// In a per-CPU map each CPU has its own copy, so a plain `+=` is exact (only the two classic
// tracepoint programs write them, and those do not nest on one CPU: the kernel's
// bpf_prog_active guard skips a nested run; the raw tcp_probe program, which could interrupt
// them, writes only its socket's entry, and `lost` when a map is full) and no cache line
// bounces between CPUs; user space sums the copies. The price is memory: max_flows x CPUs x
// value size, preallocated (224 B for a histogram).
//
// Why a plain hash (not LRU) for `sockets` and `flows`: a full map must refuse and be
// counted (`lost`), not silently evict a live socket or a flow's cumulative counters.
// Inserts use lookup_or_try_init: bcc's increment() inserts nothing for a new key on
// per-CPU maps (docs/ebpf.md, maps).
#include "probes.h"
#include "inet_sock_set_state.h"  // struct set_state_args, TCP_* states, copy_addresses()

#ifndef AGENT_OFF_TCP_BYTES_ACKED
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

// Sockets from SYN_SENT / SYN_RECV (or their first tcp_probe) until they reach CLOSE, where
// their byte counters stop: every TCP socket reaches CLOSE before the kernel destroys it,
// and tcp_disconnect() (connect(AF_UNSPEC)) passes CLOSE before it zeroes them.
BPF_HASH(sockets, __u64, struct agent_socket, AGENT_MAX_SOCKETS);
BPF_TABLE("percpu_hash", struct agent_flow_key, struct agent_flow_counters, flows, AGENT_MAX_FLOWS);
BPF_TABLE("percpu_hash", struct agent_flow_key, struct agent_histogram, connect_hist, AGENT_MAX_FLOWS);
BPF_TABLE("percpu_hash", struct agent_flow_key, struct agent_histogram, srtt_hist, AGENT_MAX_FLOWS);
// Inserts refused because a map was full, per map (AGENT_LOST_*), per CPU.
BPF_PERCPU_ARRAY(lost, __u64, AGENT_LOST_SLOTS);
// One all-zero histogram, never written: the initial value for a new histogram key (224
// bytes would crowd the 512-byte BPF stack).
BPF_ARRAY(zero_histogram, struct agent_histogram, 1);
// A closing socket's entry on its way to its flow, one slot per CPU (too big for the 512-byte
// BPF stack; the state program does not nest on a CPU).
BPF_PERCPU_ARRAY(closing, struct agent_socket, 1);
// One all-zero socket entry, never written: what a new `sockets` entry starts as.
BPF_ARRAY(zero_socket, struct agent_socket, 1);

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

// A closing socket's RTT samples join its flow's (per-CPU: sockets of one flow close on
// several CPUs at once).
static __always_inline void add_srtt_to_flow(struct agent_flow_key *key, struct agent_histogram *samples)
{
    if (!samples->sum_us)
        return;  // no sample (each is at least 1 us)
    __u32 zero_key = 0;
    struct agent_histogram *zero = zero_histogram.lookup(&zero_key);
    if (!zero)
        return;
    struct agent_histogram *hist = srtt_hist.lookup_or_try_init(key, zero);
    if (!hist) {
        count_lost(AGENT_LOST_SRTT_HIST);
        return;
    }
    for (int slot = 0; slot < AGENT_HISTOGRAM_SLOTS; slot++)
        hist->slots[slot] += samples->slots[slot];
    hist->sum_us += samples->sum_us;
}

// --- reading the socket ------------------------------------------------------------------

// enum sock_flags, include/net/sock.h: SOCK_DEAD is 0, SOCK_DONE 1. Only tcp_fin() sets
// SOCK_DONE on a TCP socket (and tcp_disconnect() clears it): the peer's FIN arrived.
#define SOCK_DONE_BIT 1

static __always_inline __u64 read_u64(__u64 address)
{
    __u64 value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), (void *)address);
    return value;
}

static __always_inline __u32 read_u32(__u64 address)
{
    __u32 value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), (void *)address);
    return value;
}

// The cgroup v2 id of the socket: sk->sk_cgrp_data.cgroup->kn->id, what bpf_sk_cgroup_id()
// gives. The kernel sets it when the socket is created (the creating task's cgroup) and an
// accepted socket inherits its listener's, so it is right in softirq too, where the current
// task is whoever was interrupted.
static __always_inline __u64 socket_cgroup_id(__u64 sk)
{
    __u64 cgroup = read_u64(sk + AGENT_OFF_SK_CGROUP);
    if (!cgroup)
        return 0;
    __u64 kn = read_u64(cgroup + AGENT_OFF_CGROUP_KN);
    return kn ? read_u64(kn + AGENT_OFF_KERNFS_NODE_ID) : 0;
}

// Where the socket's counts start, read when its entry begins, before any payload (TCP Fast
// Open carries some in the SYN). An outbound socket's bytes_acked will count its SYN too,
// once the SYN-ACK acknowledges it; an accepted one begins with its SYN-ACK acknowledged
// (tcp_create_openreq_child()), so nothing to add.
static __always_inline void set_bases(struct agent_socket *entry, __u64 sk, __u8 syn_to_come)
{
    entry->acked_base = read_u64(sk + AGENT_OFF_TCP_BYTES_ACKED) + syn_to_come;
    entry->received_base = read_u64(sk + AGENT_OFF_TCP_BYTES_RECEIVED);
}

// Who the socket is (its port pair), so that a read can tell a socket that is still this
// connection from memory the kernel reused for another one (TCP sockets are
// SLAB_TYPESAFE_BY_RCU). 0 if the read failed.
static __always_inline __u32 read_portpair(__u64 sk)
{
    return read_u32(sk + AGENT_OFF_SKC_PORTPAIR);
}

// Counts since the base, or 0 while the counter is below it (an outbound socket before its
// SYN-ACK) or was reset under a read (tcp_disconnect() zeroes it after CLOSE).
static __always_inline __u64 since(__u64 now, __u64 base)
{
    return now > base ? now - base : 0;
}

// Payload bytes since counting started. bytes_acked counts our FIN once the peer acks it and
// bytes_received the peer's FIN once it arrives in sequence (tcp_snd_una_update(),
// tcp_rcv_nxt_update()); neither is payload.
//   Ours: acked when snd_una passed the FIN's sequence number. The kernel adds to
//   bytes_acked, then moves snd_una; reading them in that order, a read can be one byte
//   high only if both loads fall between those two stores (a few instructions), and is
//   otherwise exact or, when the stores fall between the loads, one byte short.
//   The peer's: SOCK_DONE, set by tcp_fin() just after bytes_received took the FIN. A read
//   that lands between those two stores (about 100 ns, once per connection) is one byte
//   high; the next read and CLOSE are exact, but probes.py never lets an exported counter go
//   down, so the flow's received bytes stay one high until they grow past it (docs/agent.md).
static __always_inline void socket_bytes(struct agent_socket *entry, __u64 sk, __u64 *sent,
                                         __u64 *received)
{
    __u64 acked = since(read_u64(sk + AGENT_OFF_TCP_BYTES_ACKED), entry->acked_base);
    if (entry->fin_queued && acked) {
        __u32 snd_una = read_u32(sk + AGENT_OFF_TCP_SND_UNA);
        if ((__s32)(snd_una - entry->fin_seq) > 0)
            acked -= 1;
    }
    __u64 got = since(read_u64(sk + AGENT_OFF_TCP_BYTES_RECEIVED), entry->received_base);
    __u64 flags = read_u64(sk + AGENT_OFF_SKC_FLAGS);
    if ((flags & (1ULL << SOCK_DONE_BIT)) && got)
        got -= 1;
    *sent = acked;
    *received = got;
}

// --- sock:inet_sock_set_state ------------------------------------------------------------

static __always_inline void add_bytes_to_flow(struct agent_flow_key *key, __u64 sent, __u64 received)
{
    if (!sent && !received)
        return;
    struct agent_flow_counters *counters = flow_counters(key);
    if (!counters)
        return;  // `flows` is full (counted): these bytes are lost
    counters->sent_bytes += sent;
    counters->received_bytes += received;
}

// A zeroed entry for `sk`, or NULL if `sockets` is full (counted). `replace`: a reused socket
// address (connect() again after a failure) starts over; otherwise an entry a state change
// on another CPU made meanwhile is kept.
static __always_inline struct agent_socket *new_socket(__u64 sk, int replace)
{
    __u32 zero_key = 0;
    struct agent_socket *zero = zero_socket.lookup(&zero_key);  // 312 bytes: not the stack
    if (!zero)
        return 0;
    int refused = replace ? sockets.update(&sk, zero) : sockets.insert(&sk, zero);
    struct agent_socket *entry = sockets.lookup(&sk);
    if (refused && !entry)
        count_lost(AGENT_LOST_SOCKETS);
    return entry;
}

static __always_inline struct agent_socket *start_socket(__u64 sk, __u8 direction, __u64 start_ns)
{
    struct agent_socket *entry = new_socket(sk, 1);
    if (entry) {
        entry->key.cgroup_id = socket_cgroup_id(sk);
        entry->direction = direction;
        entry->connect_start_ns = start_ns;
        set_bases(entry, sk, direction == AGENT_ACTIVE);
    }
    return entry;
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
    if (!entry) {  // the handshake began before we attached: bytes from here on
        entry = start_socket(sk, AGENT_PASSIVE, 0);
        if (!entry)
            return;  // `sockets` is full (counted)
        entry->direction = active ? AGENT_ACTIVE : AGENT_PASSIVE;
    }
    take_addresses(entry, args);
    entry->portpair = read_portpair(sk);
    entry->opened = 1;
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

// Our FIN is queued right after this transition (tcp_close_state(), then tcp_send_fin()):
// write_seq is the sequence number it will take.
static __always_inline void on_fin_queued(__u64 sk)
{
    struct agent_socket *entry = sockets.lookup(&sk);
    // Once: close() after shutdown(SHUT_WR) passes FIN_WAIT1 or LAST_ACK again, with the FIN
    // already counted in write_seq.
    if (!entry || entry->fin_queued)
        return;
    entry->fin_seq = read_u32(sk + AGENT_OFF_TCP_WRITE_SEQ);
    entry->fin_queued = 1;
}

// CLOSE: the socket's counters stop moving, so its bytes and RTT samples go to its flow and
// it is forgotten (first taken out and removed, then added: a map read between the two steps
// sees them nowhere and is short until the next read, and probes.py keeps the exported
// counters from going down; the other order could show them twice).
static __always_inline void on_close(__u64 sk, struct set_state_args *args)
{
    __u32 zero_key = 0;
    struct agent_socket *moving = closing.lookup(&zero_key);
    struct agent_socket *entry = sockets.lookup(&sk);
    if (!moving || !entry)
        return;
    *moving = *entry;
    __u64 sent = 0, received = 0;
    socket_bytes(moving, sk, &sent, &received);
    sockets.delete(&sk);
    if (moving->opened) {
        struct agent_flow_counters *counters = flow_counters(&moving->key);
        if (counters)
            counters->closed += 1;
    } else if (args->oldstate == TCP_SYN_SENT) {
        // Refused, unreachable or timed out. The entry has no addresses yet (they are taken
        // at ESTABLISHED); the tracepoint carries the ones connect() set.
        take_addresses(moving, args);
        struct agent_flow_counters *counters = flow_counters(&moving->key);
        if (counters)
            counters->connect_failures += 1;
    }
    add_bytes_to_flow(&moving->key, sent, received);
    add_srtt_to_flow(&moving->key, &moving->srtt);
}

int ns_agent_state(struct set_state_args *args)
{
    if (args->protocol != NS_IPPROTO_TCP)
        return 0;
    __u64 sk = args->skaddr;
    int oldstate = args->oldstate, newstate = args->newstate;
    if (newstate == TCP_SYN_SENT) {
        start_socket(sk, AGENT_ACTIVE, bpf_ktime_get_ns());
    } else if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
        start_socket(sk, AGENT_PASSIVE, 0);
    } else if (newstate == TCP_ESTABLISHED
               && (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)) {
        on_established(sk, args, bpf_ktime_get_ns());
    } else if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) {
        on_fin_queued(sk);
    } else if (newstate == TCP_CLOSE) {
        on_close(sk, args);
    }
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

// --- tcp:tcp_probe (BTF-typed raw) ------------------------------------------------------------------

// A socket established before we attached, met at its first segment since: from now on it is
// counted like the others (its bytes from this moment), under its own addresses and cgroup.
static __always_inline struct agent_socket *adopt_socket(__u64 sk)
{
    struct agent_socket *entry = new_socket(sk, 0);
    if (!entry || entry->key.family)
        return entry;  // full (counted), or a state change on another CPU made it meanwhile
    if (!entry->direction) {  // new: its bytes from here on (else its ESTABLISHED was missed)
        entry->direction = AGENT_ADOPTED;
        set_bases(entry, sk, 0);
    }
    entry->key.cgroup_id = socket_cgroup_id(sk);
    bpf_probe_read_kernel(&entry->key.family, sizeof(entry->key.family),
                          (void *)(sk + AGENT_OFF_SKC_FAMILY));
    if (entry->key.family == NS_AF_INET) {
        bpf_probe_read_kernel(entry->key.local, 4, (void *)(sk + AGENT_OFF_SKC_RCV_SADDR));
        bpf_probe_read_kernel(entry->key.peer, 4, (void *)(sk + AGENT_OFF_SKC_DADDR));
    } else {
        bpf_probe_read_kernel(entry->key.local, 16, (void *)(sk + AGENT_OFF_SKC_V6_RCV_SADDR));
        bpf_probe_read_kernel(entry->key.peer, 16, (void *)(sk + AGENT_OFF_SKC_V6_DADDR));
    }
    entry->portpair = read_portpair(sk);
    return entry;
}

// Fires for every segment an established socket receives (tcp_rcv_established), so it does
// the least it can: one socket lookup, one field load, two adds in the entry. Loaded as a
// BTF-typed raw tracepoint (probes.py): ctx[] are the tracepoint's arguments (struct sock
// *sk, struct sk_buff *skb; include/trace/events/tcp.h) and the verifier knows their types,
// so srtt_us is a plain load from the tcp_sock bpf_skc_to_tcp_sock() hands back, where
// bpf_probe_read_kernel cost a third of this program's time (docs/performance.md).
int ns_agent_srtt(unsigned long long *ctx)
{
    __u64 sk = ctx[0];
    struct agent_socket *entry = sockets.lookup(&sk);
    // No entry: established before we attached. No addresses: its ESTABLISHED was missed (a
    // classic tracepoint program does not run while another BPF program runs on its CPU).
    if (!entry || !entry->key.family) {
        entry = adopt_socket(sk);
        if (!entry)
            return 0;  // `sockets` is full (counted)
    }
    struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)ctx[0]);
    if (!tp)
        return 0;
    // tcp_sock.srtt_us: the smoothed RTT in microseconds, times 8
    __u64 us = *(__u32 *)((char *)tp + AGENT_OFF_TCP_SRTT_US) >> 3;  // as TCP_INFO reports it
    if (us)  // 0: no RTT sample yet
        add_sample(&entry->srtt, us);
    return 0;
}

// --- the `sockets` iterator: runs when the agent reads, never on the traffic's path --------

struct bpf_iter_meta {
    void *seq;
    __u64 session_id;
    __u64 seq_num;
};

// The context of an iterator over a map's elements (kernel/bpf/map_iter.c); the verifier
// checks it against the kernel's own. key and value are NULL on the last call.
struct bpf_iter__bpf_map_elem {
    struct bpf_iter_meta *meta;
    void *map;
    void *key;
    void *value;
};

// Stale: the entry's socket reached CLOSE without our hook seeing it, or its memory now holds
// another connection (or cannot be read). probes.py removes entries stale on two reads.
static __always_inline __u64 is_stale(struct agent_socket *entry, __u64 sk)
{
    __u8 state = 0;
    if (bpf_probe_read_kernel(&state, sizeof(state), (void *)(sk + AGENT_OFF_SKC_STATE)) != 0)
        return 1;
    if (state == TCP_CLOSE)
        return 1;
    return entry->portpair && read_portpair(sk) != entry->portpair;
}

_Static_assert(sizeof(struct agent_live_socket) == sizeof(struct agent_flow_key)
               + sizeof(struct agent_reading) + sizeof(struct agent_histogram),
               "the iterator writes struct agent_live_socket in three parts, with no padding");

// One struct agent_live_socket per entry, in three writes (the record would crowd the
// 512-byte stack): the flow key and the RTT histogram straight from the entry, the reading
// from here.
int bpf_iter__bpf_map_elem(struct bpf_iter__bpf_map_elem *ctx)
{
    __u64 *key = ctx->key;
    struct agent_socket *entry = ctx->value;
    if (!key || !entry)
        return 0;
    struct agent_reading reading = {.sk = *key};
    reading.stale = is_stale(entry, reading.sk);
    if (!reading.stale)
        socket_bytes(entry, reading.sk, &reading.sent_bytes, &reading.received_bytes);
    bpf_seq_write(ctx->meta->seq, &entry->key, sizeof(entry->key));
    bpf_seq_write(ctx->meta->seq, &reading, sizeof(reading));
    bpf_seq_write(ctx->meta->seq, &entry->srtt, sizeof(entry->srtt));
    return 0;
}
