// The map layouts the agent's probes (probes.bpf.c) share with user space (probes.py).
//
// Keys and values of four maps: `sockets` (one entry per TCP socket seen opening, with its
// bytes not yet moved to its flow),
// `flows` (counters per flow key), `connect_hist` and `srtt_hist` (log2 histograms per flow
// key). Only __u8/__u16/__u64 with the padding written out, largest fields first, so bcc
// and gcc lay them out alike (tests/test_agent_probes.py compares with a ctypes mirror).
#ifndef NETSPRINT_AGENT_PROBES_H
#define NETSPRINT_AGENT_PROBES_H

#include "netsprint_common.h"

// model.HISTOGRAM_SLOTS: slot 0 = [0, 2) us, slot k = [2^k, 2^(k+1)) us, the last open-ended.
#define AGENT_HISTOGRAM_SLOTS 27

#define AGENT_ACTIVE  1  // we saw connect(): CLOSE -> SYN_SENT
#define AGENT_PASSIVE 2  // accepted: LISTEN -> SYN_RECV

// Indexes of the per-CPU `lost` array: which map refused an insert because it was full.
#define AGENT_LOST_SOCKETS      0
#define AGENT_LOST_FLOWS        1
#define AGENT_LOST_CONNECT_HIST 2
#define AGENT_LOST_SRTT_HIST    3
#define AGENT_LOST_SLOTS        4

// One local identity talking to one peer address; ports are deliberately left out so the
// number of keys grows with peers, not with connections. `family` 0 means "addresses
// unknown" (a socket that opened before the agent attached): local and peer are zero.
struct agent_flow_key {
    __u64 cgroup_id;        // cgroup v2 id (inode of the cgroup's directory); 0 = not known
    __u8 local[16];         // IPv4 in the first 4 bytes, network byte order
    __u8 peer[16];
    __u16 family;           // AF_INET 2, AF_INET6 10, or 0
    __u16 pad[3];           // explicit and zeroed: hash keys compare every byte
};

// What the probes remember about one socket between its events (key: the struct sock
// address, the same pointer in every tracepoint used here).
struct agent_socket {
    struct agent_flow_key key;  // where this socket's bytes, retransmits and RTTs are counted
    __u64 connect_start_ns;     // bpf_ktime_get_ns() at SYN_SENT; 0 if not seen (passive)
    __u64 opened_cgroup_id;     // key.cgroup_id when the open was counted: CLOSE counts there
    // Payload bytes not yet in `flows`: added here on the hot path (one lookup), moved into
    // the flow's counters when the socket is destroyed; user space adds the live ones.
    __u64 sent_bytes;
    __u64 received_bytes;
    __u8 direction;             // AGENT_ACTIVE / AGENT_PASSIVE
    __u8 opened;                // 1 from ESTABLISHED until CLOSE
    __u8 cgroup_known;          // 1 once a process-context event set key.cgroup_id
    __u8 pad[5];
};

// Counters per flow key; the value of a per-CPU hash, so user space sums the CPUs.
struct agent_flow_counters {
    __u64 opened_outbound;
    __u64 opened_inbound;
    __u64 closed;
    __u64 connect_failures;
    __u64 sent_bytes;
    __u64 received_bytes;
    __u64 retransmitted_segments;
};

// A log2 histogram of microseconds and the exact sum of what went in.
struct agent_histogram {
    __u64 slots[AGENT_HISTOGRAM_SLOTS];
    __u64 sum_us;
};

#endif
