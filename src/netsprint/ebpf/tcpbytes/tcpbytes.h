// The records tcpbytes shares between the kernel and user space.
//
// One `struct tcpbytes_conn` per TCP socket: the value of the `conns` hash map while the
// connection is open (read by `snapshot()`), and the ring-buffer record emitted when the
// kernel destroys the socket (read by `poll()`). One layout for both, so one decoder.
// Only __u8/__u16/__u32/__u64 so gcc can compile this header for the ctypes size test.
#ifndef NETSPRINT_TCPBYTES_H
#define NETSPRINT_TCPBYTES_H

#include "netsprint_common.h"

#define TCPBYTES_ACTIVE  1  // we called connect() (CLOSE -> SYN_SENT)
#define TCPBYTES_PASSIVE 2  // accepted from a listener (LISTEN -> SYN_RECV)

struct tcpbytes_conn {
    __u64 sk;               // the kernel's socket address: the key, and an id for the user
    __u64 start_ns;         // bpf_ktime_get_ns() (CLOCK_MONOTONIC) at ESTABLISHED
    __u64 end_ns;           // at the move to TCP_CLOSE; 0 while open
    __u64 sent_bytes;       // sum of sock_send_length's ret > 0
    __u64 received_bytes;   // sum of sock_recv_length's ret > 0, MSG_PEEK excluded
    __u64 send_calls;
    __u64 recv_calls;
    __u8 saddr[16];         // local address; IPv4 in the first 4 bytes
    __u8 daddr[16];         // remote address; IPv4 in the first 4 bytes
    __u32 pid;              // connect() caller (active) or first sender/receiver (passive)
    __u16 sport;            // host byte order (the tracepoint converts)
    __u16 dport;
    __u16 family;           // AF_INET 2, AF_INET6 10
    __u8 direction;         // TCPBYTES_ACTIVE / TCPBYTES_PASSIVE
    __u8 established;       // 1 once the handshake completed and the tuple is known
    char comm[NETSPRINT_COMM_LEN];
};

// Key of the per-remote-IP map: the address and its family (so ::ffff:0:0/96 and IPv4
// never mix).
struct tcpbytes_ip_key {
    __u8 addr[16];
    __u16 family;
    __u16 pad;              // explicit, zeroed: hash keys compare every byte
};

struct tcpbytes_ip_totals {
    __u64 connections;      // handshakes completed with this remote address
    __u64 sent_bytes;
    __u64 received_bytes;
};

#endif
