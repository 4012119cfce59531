// tcpbytes: payload bytes sent and received per TCP connection and per remote IP address.
//
// Why these hooks (kernel >= 6.3):
//  - sock:sock_send_length / sock:sock_recv_length fire in sock_sendmsg() / sock_recvmsg()
//    with the syscall's return value: exactly the payload bytes the application moved.
//    send, sendto, sendmsg, write and (since 6.5, via splice_to_socket -> sock_sendmsg)
//    sendfile and splice into a socket all pass there; MSG_PEEK reads are reported with
//    flags & MSG_PEEK and must not count (the tracepoint's own print fmt does the same).
//  - sock:inet_sock_set_state gives the 4-tuple. At SYN_SENT the source port is still 0
//    (tcp_v4_connect sets the state before inet_hash_connect picks the port), so the tuple
//    is taken at ESTABLISHED, for both sides.
//  - tcp:tcp_destroy_sock marks the end: an application may still read queued data after
//    the state reached TCP_CLOSE (shutdown(SHUT_WR), then the peer's FIN), so the record
//    is emitted when the socket is destroyed, with end_ns from the move to TCP_CLOSE.
// Every hook is keyed by the socket's address (sk / skaddr): the same pointer in all of
// them. No struct sock / tcp_sock field is read: the build headers do not match the kernel.
#include "tcpbytes.h"
#include "inet_sock_set_state.h"  // struct set_state_args, TCP_* states, copy_addresses()
#include "sock_events.h"          // struct length_args, struct destroy_args, MSG_PEEK_FLAG

// Open connections, by socket address. Entries are deleted when the socket is destroyed,
// so the size bounds concurrent connections, not connections over time.
BPF_HASH(conns, __u64, struct tcpbytes_conn, 16384);
// Totals per remote address since the program was loaded. Remote addresses are unbounded,
// so an LRU hash: when full it evicts the coldest address instead of refusing new ones.
BPF_TABLE("lru_hash", struct tcpbytes_ip_key, struct tcpbytes_ip_totals, per_ip, 4096);
// One record per connection when its socket is destroyed.
// lost[0]: records the full ring buffer refused (the reader was too slow). bcc rewrites
// map calls only in the main file, so each program declares its own.
BPF_ARRAY(lost, __u64, 1);
BPF_RINGBUF_OUTPUT(closed, 64);

static __always_inline void remember_opener(struct tcpbytes_conn *conn)
{
    conn->pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&conn->comm, sizeof(conn->comm));
}

static __always_inline void start_tracking(__u64 sk, __u8 direction)
{
    struct tcpbytes_conn conn = {};
    conn.sk = sk;
    conn.direction = direction;
    // connect() runs in the caller's context; a passive handshake completes in softirq,
    // where the current task is whoever was interrupted: its opener is set on first use.
    if (direction == TCPBYTES_ACTIVE)
        remember_opener(&conn);
    conns.update(&sk, &conn);  // BPF_ANY: a reused socket address replaces a stale entry
}

static __always_inline struct tcpbytes_ip_totals *ip_totals(struct tcpbytes_conn *conn)
{
    struct tcpbytes_ip_key key = {};
    struct tcpbytes_ip_totals zero = {};
    __builtin_memcpy(key.addr, conn->daddr, sizeof(key.addr));
    key.family = conn->family;
    // lookup_or_try_init, not increment(): bcc's increment() does nothing for a new key
    // of an LRU map.
    return per_ip.lookup_or_try_init(&key, &zero);
}

static __always_inline void on_established(__u64 sk, struct set_state_args *args)
{
    struct tcpbytes_conn *conn = conns.lookup(&sk);
    if (!conn) {  // the handshake began before we were loaded
        start_tracking(sk, args->oldstate == TCP_SYN_SENT ? TCPBYTES_ACTIVE : TCPBYTES_PASSIVE);
        conn = conns.lookup(&sk);
        if (!conn)
            return;  // map full
    }
    conn->family = args->family;
    conn->sport = args->sport;
    conn->dport = args->dport;
    copy_addresses(args, conn->saddr, conn->daddr);
    conn->start_ns = bpf_ktime_get_ns();
    conn->established = 1;
    struct tcpbytes_ip_totals *totals = ip_totals(conn);
    if (totals)
        __sync_fetch_and_add(&totals->connections, 1);
}

int ns_tcpb_state(struct set_state_args *args)
{
    if (args->protocol != NS_IPPROTO_TCP)
        return 0;
    __u64 sk = args->skaddr;
    if (args->newstate == TCP_SYN_SENT) {
        start_tracking(sk, TCPBYTES_ACTIVE);
    } else if (args->oldstate == TCP_LISTEN && args->newstate == TCP_SYN_RECV) {
        start_tracking(sk, TCPBYTES_PASSIVE);
    } else if (args->newstate == TCP_ESTABLISHED
               && (args->oldstate == TCP_SYN_SENT || args->oldstate == TCP_SYN_RECV)) {
        on_established(sk, args);
    } else if (args->newstate == TCP_CLOSE) {
        struct tcpbytes_conn *conn = conns.lookup(&sk);
        if (!conn)
            return 0;
        if (!conn->established)  // a refused or aborted connect: no connection to report
            conns.delete(&sk);
        else if (conn->end_ns == 0)
            conn->end_ns = bpf_ktime_get_ns();
    }
    return 0;
}

static __always_inline void count(struct length_args *args, int sending)
{
    if (args->protocol != NS_IPPROTO_TCP || args->ret <= 0)
        return;
    __u64 sk = args->sk;
    struct tcpbytes_conn *conn = conns.lookup(&sk);
    if (!conn || !conn->established)
        return;  // opened before we were loaded, or not TCP-established: no tuple to report
    if (conn->pid == 0)  // process context here: the first user of an accepted socket
        remember_opener(conn);
    __u64 bytes = args->ret;
    struct tcpbytes_ip_totals *totals = ip_totals(conn);
    if (sending) {
        __sync_fetch_and_add(&conn->sent_bytes, bytes);
        __sync_fetch_and_add(&conn->send_calls, 1);
        if (totals)
            __sync_fetch_and_add(&totals->sent_bytes, bytes);
    } else {
        __sync_fetch_and_add(&conn->received_bytes, bytes);
        __sync_fetch_and_add(&conn->recv_calls, 1);
        if (totals)
            __sync_fetch_and_add(&totals->received_bytes, bytes);
    }
}

int ns_tcpb_send(struct length_args *args)
{
    count(args, 1);
    return 0;
}

int ns_tcpb_recv(struct length_args *args)
{
    // A peek leaves the bytes queued; the read that takes them counts them.
    if (args->flags & MSG_PEEK_FLAG)
        return 0;
    count(args, 0);
    return 0;
}

int ns_tcpb_destroy(struct destroy_args *args)
{
    __u64 sk = args->skaddr;
    struct tcpbytes_conn *conn = conns.lookup(&sk);
    if (!conn)
        return 0;
    if (conn->established) {
        if (conn->end_ns == 0)
            conn->end_ns = bpf_ktime_get_ns();
        if (closed.ringbuf_output(conn, sizeof(*conn), 0) != 0) {
            __u32 key = 0;
            __u64 *count = lost.lookup(&key);
            if (count)
                __sync_fetch_and_add(count, 1);
        }
    }
    conns.delete(&sk);
    return 0;
}
