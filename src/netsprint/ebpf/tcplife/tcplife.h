// The record tcplife.bpf.c sends through its ring buffer, one per TCP lifecycle event.
//
// Shared with user space: loader.py mirrors it with ctypes (TcpLifeRecord) and
// tests/test_ebpf_tcplife.py checks the mirror against gcc's layout. Only __u8..__u64 types
// and fields ordered largest first, so there is no hidden padding on any 64-bit ABI.
#ifndef NETSPRINT_TCPLIFE_H
#define NETSPRINT_TCPLIFE_H

#include "netsprint_common.h"

// What happened (tcplife_event.kind).
#define TCPLIFE_CONNECT 1         // SYN_SENT -> ESTABLISHED: our connect() completed
#define TCPLIFE_CONNECT_FAILED 2  // SYN_SENT -> CLOSE: refused (RST), timed out, or aborted
#define TCPLIFE_ACCEPT 3          // SYN_RECV -> ESTABLISHED: a passive open completed
#define TCPLIFE_CLOSE 4           // an established connection reached CLOSE

// tcplife_event.flags and tcplife_conn.flags
#define TCPLIFE_F_ACTIVE 0x1       // this side called connect()
#define TCPLIFE_F_OWNER_KNOWN 0x2  // pid/comm are of a task that acted on the socket itself
#define TCPLIFE_F_ESTABLISHED 0x4  // the connection reached ESTABLISHED

struct tcplife_event {
    __u64 ts_ns;        // bpf_ktime_get_ns(): CLOCK_MONOTONIC, like time.monotonic()
    __u64 skaddr;       // the kernel's struct sock address: an id for correlating events
    __u64 latency_ns;   // CONNECT/CONNECT_FAILED: since SYN_SENT; ACCEPT: since SYN_RECV
    __u64 lifetime_ns;  // CLOSE: since ESTABLISHED
    __u32 pid;          // tgid (the process id user space knows)
    __u16 family;       // AF_INET (2) or AF_INET6 (10)
    __u16 sport;        // host byte order: the tracepoint already applied ntohs()
    __u16 dport;
    __u8 kind;          // TCPLIFE_CONNECT ...
    __u8 flags;         // TCPLIFE_F_*
    __u8 oldstate;      // the state left (e.g. FIN_WAIT2 or LAST_ACK for CLOSE)
    __u8 newstate;
    __u8 saddr[16];     // IPv4: the first 4 bytes; network byte order
    __u8 daddr[16];
    __u8 comm[NETSPRINT_COMM_LEN];
    __u8 pad[2];        // explicit: 96 bytes, a multiple of 8, no tail padding
};

#endif
