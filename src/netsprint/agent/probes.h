// The map layouts the agent's probes (probes.bpf.c) share with user space (probes.py).
//
// Keys and values of four maps: `sockets` (one entry per TCP socket from its open until it
// reaches CLOSE, with where its byte counts start), `flows` (counters per flow key),
// `connect_hist` and `srtt_hist` (log2 histograms per flow key); and the record the
// `sockets` iterator writes for each entry (struct agent_live_socket). Only
// __u8/__u16/__u32/__u64 with the padding written out, largest fields first, so bcc and gcc
// lay them out alike (tests/test_agent_probes.py compares with a ctypes mirror).
#ifndef NETSPRINT_AGENT_PROBES_H
#define NETSPRINT_AGENT_PROBES_H

#include "netsprint_common.h"

// model.HISTOGRAM_SLOTS: slot 0 = [0, 2) us, slot k = [2^k, 2^(k+1)) us, the last open-ended.
#define AGENT_HISTOGRAM_SLOTS 27

#define AGENT_ACTIVE  1  // we saw connect(): CLOSE -> SYN_SENT
#define AGENT_PASSIVE 2  // accepted: LISTEN -> SYN_RECV
#define AGENT_ADOPTED 3  // first met at a received segment (established before we attached)

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

// A log2 histogram of microseconds and the exact sum of what went in.
struct agent_histogram {
    __u64 slots[AGENT_HISTOGRAM_SLOTS];
    __u64 sum_us;
};

// What the probes remember about one socket between its events (key: the struct sock
// address, the same pointer in every tracepoint used here).
//
// Bytes are the kernel's own per-socket counters (RFC 4898 as tcp_info reports them), read
// when a map read asks and once more at CLOSE: tcp_sock.bytes_acked (sent bytes the peer
// acknowledged) and tcp_sock.bytes_received (bytes received in sequence). Both also count
// the SYN and FIN sequence numbers, so the entry keeps where counting began and when our
// FIN was queued (probes.bpf.c, socket_bytes()). The bases are read when the entry begins,
// before any payload (TCP Fast Open carries some in the SYN).
struct agent_socket {
    struct agent_flow_key key;  // where this socket's bytes, retransmits and RTTs are counted
    __u64 connect_start_ns;     // bpf_ktime_get_ns() at SYN_SENT; 0 if not seen (passive)
    __u64 acked_base;           // tcp_sock.bytes_acked when the entry began, + 1 for our SYN
    __u64 received_base;        // tcp_sock.bytes_received then
    __u32 fin_seq;              // tcp_sock.write_seq when our FIN was queued: the FIN's number
    __u32 portpair;             // sock_common.skc_portpair once established: who the socket is
    __u8 direction;             // AGENT_ACTIVE / AGENT_PASSIVE / AGENT_ADOPTED
    __u8 opened;                // 1 from ESTABLISHED until CLOSE
    __u8 fin_queued;            // 1 once we queued our FIN (FIN_WAIT1 or LAST_ACK)
    __u8 pad[5];
    // This socket's RTT samples, added to its flow's at CLOSE: tcp_probe finds them in the
    // entry it looked up anyway, where a flow histogram would cost a second lookup with a
    // 48-byte key on every segment. No atomics: tcp_probe and CLOSE run under the socket lock.
    struct agent_histogram srtt;
};

// What a read learns of one `sockets` entry from its socket.
struct agent_reading {
    __u64 sk;                   // the entry's key: an iterator may show an entry twice
    __u64 sent_bytes;
    __u64 received_bytes;
    __u64 stale;                // 1: its socket is closed or is another connection now
};

// What the `sockets` iterator (bpf_iter__bpf_map_elem) writes for each entry: the flow, the
// reading, and the RTT samples so far (written in these three parts).
struct agent_live_socket {
    struct agent_flow_key key;
    struct agent_reading reading;
    struct agent_histogram srtt;
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

#endif
