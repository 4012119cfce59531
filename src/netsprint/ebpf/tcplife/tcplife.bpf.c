// TCP lifecycle tracer (week 10): connect, connect failure, accept and close, with connect
// latency and connection lifetime, from the sock:inet_sock_set_state tracepoint only.
//
// Why this tracepoint: the kernel calls it from tcp_set_state() / inet_sk_set_state() for
// every state change of every TCP socket, with the 4-tuple already filled in, so the program
// never reads struct sock (whose layout differs between the running kernel and the headers
// bcc compiles against). The plan's kprobes on tcp_v4_connect/tcp_close are an optional
// extra behind NETSPRINT_TCPLIFE_KPROBES (loader.py turns it on only when a feature probe
// proved that kprobes attach on this kernel).
//
// What the tracepoint shows on each side of a connection (measured on 6.18):
//   client: CLOSE->SYN_SENT (in connect(), process context; sport still 0: the ephemeral
//           port is picked after this), SYN_SENT->ESTABLISHED (SYN-ACK received, softirq),
//           ESTABLISHED->FIN_WAIT1 (close()), FIN_WAIT1->FIN_WAIT2->CLOSE (the TIME_WAIT
//           mini-socket that replaces it fires nothing); refused: SYN_SENT->CLOSE.
//   server: the listener CLOSE->LISTEN / LISTEN->CLOSE; each child LISTEN->SYN_RECV
//           (cloned from the listener when the handshake's last ACK arrives) and
//           SYN_RECV->ESTABLISHED, both in softirq: current task is whoever was interrupted.
//           Passive close: ESTABLISHED->CLOSE_WAIT (FIN received), CLOSE_WAIT->LAST_ACK
//           (close()), LAST_ACK->CLOSE.

#include "tcplife.h"
#include "inet_sock_set_state.h"  // struct set_state_args, TCP_* states, copy_addresses()

// What we remember about one socket between its state changes.
struct tcplife_conn {
    __u64 start_ns;        // SYN_SENT (active) or SYN_RECV (passive)
    __u64 established_ns;  // 0 until ESTABLISHED
    __u32 pid;
    __u8 flags;            // TCPLIFE_F_*
    __u8 comm[NETSPRINT_COMM_LEN];
};

// Keyed by the struct sock address. LRU, and bounded: an entry is normally deleted at CLOSE,
// but a program attached mid-connection, a socket freed on a path we do not see, or a flood
// of half-open connections (a SYN flood makes SYN_RECV children) must not fill the map
// forever. A full plain hash refuses inserts, so new connections would go unseen; an LRU map
// evicts the least recently touched socket instead, the one least likely to still matter.
BPF_TABLE("lru_hash", __u64, struct tcplife_conn, conns, 16384);

// lost[0]: records the full ring buffer refused (the reader was too slow). bcc rewrites
// map calls only in the main file, so each program declares its own.
BPF_ARRAY(lost, __u64, 1);
BPF_RINGBUF_OUTPUT(events, 64);  // 64 pages = 256 KiB: ~2500 records of 96 bytes + 8-byte ring header

#ifdef NETSPRINT_TCPLIFE_KPROBES
#include <uapi/linux/ptrace.h>  // struct pt_regs: the registers' layout is arch ABI, stable

// Optional (the plan's original hooks): when connect() entered tcp_v4_connect/tcp_v6_connect,
// keyed by the sock pointer (its value only: no field of struct sock is read).
BPF_TABLE("lru_hash", __u64, __u64, connect_calls, 4096);
#endif

static __always_inline void remember_task(struct tcplife_conn *conn)
{
    conn->pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&conn->comm, sizeof(conn->comm));
}

static __always_inline void emit(struct set_state_args *args, struct tcplife_conn *conn,
                                 __u8 kind, __u64 now, __u64 latency_ns, __u64 lifetime_ns)
{
    struct tcplife_event ev = {};
    ev.ts_ns = now;
    ev.skaddr = args->skaddr;
    ev.latency_ns = latency_ns;
    ev.lifetime_ns = lifetime_ns;
    ev.kind = kind;
    ev.flags = conn->flags;
    ev.oldstate = args->oldstate;
    ev.newstate = args->newstate;
    ev.pid = conn->pid;
    __builtin_memcpy(ev.comm, conn->comm, sizeof(ev.comm));
    ev.family = args->family;
    ev.sport = args->sport;
    ev.dport = args->dport;
    copy_addresses(args, ev.saddr, ev.daddr);
    if (events.ringbuf_output(&ev, sizeof(ev), 0) != 0) {
        __u32 key = 0;
        __u64 *count = lost.lookup(&key);
        if (count)
            __sync_fetch_and_add(count, 1);
    }
}

static __always_inline __u64 connect_start(__u64 key, __u64 now)
{
#ifdef NETSPRINT_TCPLIFE_KPROBES
    __u64 *called = connect_calls.lookup(&key);
    if (called) {  // connect() entered tcp_vN_connect before the state changed: start there
        __u64 start = *called;
        connect_calls.delete(&key);
        return start;
    }
#endif
    return now;
}

int ns_tcplife_state(struct set_state_args *args)
{
    if (args->protocol != NS_IPPROTO_TCP)
        return 0;
    int oldstate = args->oldstate, newstate = args->newstate;
    // A listener's own CLOSE->LISTEN and LISTEN->CLOSE; its children start LISTEN->SYN_RECV.
    if (newstate == TCP_LISTEN || (oldstate == TCP_LISTEN && newstate != TCP_SYN_RECV))
        return 0;

    __u64 key = args->skaddr;
    __u64 now = bpf_ktime_get_ns();

    if (newstate == TCP_SYN_SENT) {
        // connect(): process context, so the current task is the one connecting.
        struct tcplife_conn conn = {};
        conn.start_ns = connect_start(key, now);
        conn.flags = TCPLIFE_F_ACTIVE | TCPLIFE_F_OWNER_KNOWN;
        remember_task(&conn);
        conns.update(&key, &conn);
        return 0;
    }
    if (newstate == TCP_SYN_RECV && oldstate == TCP_LISTEN) {
        // A passive child, in softirq: the task is whoever was interrupted, not the owner.
        struct tcplife_conn conn = {};
        conn.start_ns = now;
        remember_task(&conn);
        conns.update(&key, &conn);
        return 0;
    }

    struct tcplife_conn *conn = conns.lookup(&key);
    if (!conn)  // a socket that began before we attached: nothing to measure
        return 0;

    if (newstate == TCP_ESTABLISHED) {
        conn->established_ns = now;
        conn->flags |= TCPLIFE_F_ESTABLISHED;
        __u8 kind = (conn->flags & TCPLIFE_F_ACTIVE) ? TCPLIFE_CONNECT : TCPLIFE_ACCEPT;
        emit(args, conn, kind, now, now - conn->start_ns, 0);
        return 0;
    }
    if ((oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1) ||
        (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK)) {
        // close() or shutdown() by the socket's owner, in its own process context: the first
        // moment the passive side learns who owns the connection.
        if (!(conn->flags & TCPLIFE_F_OWNER_KNOWN)) {
            remember_task(conn);
            conn->flags |= TCPLIFE_F_OWNER_KNOWN;
        }
        return 0;
    }
    if (newstate == TCP_CLOSE) {
        if (conn->flags & TCPLIFE_F_ESTABLISHED)
            emit(args, conn, TCPLIFE_CLOSE, now, 0, now - conn->established_ns);
        else if (conn->flags & TCPLIFE_F_ACTIVE)
            emit(args, conn, TCPLIFE_CONNECT_FAILED, now, now - conn->start_ns, 0);
        // (a passive child that died before ESTABLISHED was never a connection: no event)
        conns.delete(&key);
    }
    return 0;
}

#ifdef NETSPRINT_TCPLIFE_KPROBES
// kprobe on tcp_v4_connect / tcp_v6_connect(struct sock *sk, ...): the start of connect(),
// before route lookup and port selection, as the plan's tracer measured it.
int ns_tcplife_kconn(struct pt_regs *ctx)
{
    __u64 key = PT_REGS_PARM1(ctx);
    __u64 now = bpf_ktime_get_ns();
    connect_calls.update(&key, &now);
    return 0;
}

// kprobe on tcp_close(struct sock *sk, long timeout): the task calling close() owns the
// socket, even when the close goes straight to CLOSE with a RST (unread data, SO_LINGER 0),
// which the tracepoint alone cannot tell from a RST arriving in softirq.
int ns_tcplife_kclose(struct pt_regs *ctx)
{
    __u64 key = PT_REGS_PARM1(ctx);
    struct tcplife_conn *conn = conns.lookup(&key);
    if (conn) {
        remember_task(conn);
        conn->flags |= TCPLIFE_F_OWNER_KNOWN;
    }
    return 0;
}
#endif
