// Structs shared by tc_egress.bpf.c and its loader (ctypes mirrors in loader.py, checked by
// tests/test_ebpf_tc.py with gcc). Only <linux/types.h> types.
#ifndef NETSPRINT_TC_EGRESS_H
#define NETSPRINT_TC_EGRESS_H

#include "netsprint_common.h"

// One traffic class: destination port (host byte order) and IP protocol (6 TCP, 17 UDP).
struct tc_port_key {
    __u16 port;
    __u8 protocol;
    __u8 pad;
};

struct tc_port_counter {
    __u64 packets;          // packets that left (TC_ACT_OK)
    __u64 bytes;            // their lengths at egress, Ethernet header included
    __u64 dropped_packets;  // packets the rate limit dropped (TC_ACT_SHOT)
    __u64 dropped_bytes;
};

// A token bucket for one destination port: each packet to `port` takes a token, a packet
// finding none is dropped; one token comes back every `ns_per_token` (0: never), at most
// `burst` are kept.
struct tc_bucket {
    __u64 ns_per_token;    // config
    __u64 burst;           // config
    __u64 tokens;          // state
    __u64 last_refill_ns;  // state: bpf_ktime_get_ns() of the last refill (CLOCK_MONOTONIC)
    __u16 port;            // config: limited destination port, host order; 0 = no limit
    __u8 protocol;         // config: IPPROTO_UDP or IPPROTO_TCP
    __u8 pad[5];
};

#endif
