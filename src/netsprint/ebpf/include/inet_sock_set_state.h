// sock:inet_sock_set_state, the tracepoint tcplife and tcpbytes take TCP states and the
// 4-tuple from.
//
// The kernel fires it from tcp_set_state() / inet_sk_set_state() with the tuple already
// filled in, so a program never reads struct sock (whose layout may differ between the
// running kernel and the headers bcc compiles against). Nothing here touches a map: bcc
// rewrites map calls only in a program's main file.
#ifndef NETSPRINT_INET_SOCK_SET_STATE_H
#define NETSPRINT_INET_SOCK_SET_STATE_H

#include <linux/types.h>

// Socket states, include/net/tcp_states.h
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT    2
#define TCP_SYN_RECV    3
#define TCP_FIN_WAIT1   4
#define TCP_CLOSE       7
#define TCP_CLOSE_WAIT  8
#define TCP_LAST_ACK    9
#define TCP_LISTEN      10

#define NS_AF_INET      2
#define NS_AF_INET6     10
#define NS_IPPROTO_TCP  6   // MPTCP (262) and SCTP (132) fire the same tracepoint: skipped

// /sys/kernel/tracing/events/sock/inet_sock_set_state/format, field for field.
struct set_state_args {
    __u64 common;   // common_type, common_flags, common_preempt_count, common_pid
    __u64 skaddr;   // const void *: the struct sock's address, only ever used as an id
    int oldstate;
    int newstate;
    __u16 sport;    // host byte order (the tracepoint stores ntohs(inet_sport))
    __u16 dport;
    __u16 family;
    __u16 protocol;
    __u8 saddr[4];
    __u8 daddr[4];
    __u8 saddr_v6[16];
    __u8 daddr_v6[16];
};

// The local and remote address into a record's 16-byte fields: IPv4 in the first 4 bytes,
// network byte order, as user space's `records.ip_address()` reads them.
static __always_inline void copy_addresses(const struct set_state_args *args, __u8 *saddr,
                                           __u8 *daddr)
{
    if (args->family == NS_AF_INET) {
        __builtin_memcpy(saddr, args->saddr, 4);
        __builtin_memcpy(daddr, args->daddr, 4);
    } else {
        __builtin_memcpy(saddr, args->saddr_v6, 16);
        __builtin_memcpy(daddr, args->daddr_v6, 16);
    }
}

#endif
