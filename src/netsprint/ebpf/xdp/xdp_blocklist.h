// Structs shared by xdp_blocklist.bpf.c and its loader (ctypes mirrors in loader.py,
// checked by tests/test_ebpf_xdp.py with gcc). Only <linux/types.h> types.
#ifndef NETSPRINT_XDP_BLOCKLIST_H
#define NETSPRINT_XDP_BLOCKLIST_H

#include "netsprint_common.h"

// Key of a BPF_MAP_TYPE_LPM_TRIE: the kernel requires the prefix length in bits as the first
// 32-bit field, then the data bytes, most significant first (kernel/bpf/lpm_trie.c, struct
// bpf_lpm_trie_key). So the address is kept in network byte order, as bytes.
struct xdp_lpm_key {
    __u32 prefixlen;
    __u8 addr[4];
};

// What a trie entry says about the sources it covers, and how often it decided.
#define XDP_RULE_DROP 0
#define XDP_RULE_ALLOW 1  // an exception carved out of a shorter DROP prefix

struct xdp_rule {
    __u64 packets;  // packets whose longest matching prefix was this entry
    __u64 bytes;    // their frame lengths (Ethernet header included)
    __u32 action;   // XDP_RULE_DROP or XDP_RULE_ALLOW
    __u32 pad;
};

// One slot per XDP action (XDP_ABORTED=0 .. XDP_REDIRECT=4), in a per-CPU array.
#define XDP_ACTION_SLOTS 5

struct xdp_counter {
    __u64 packets;
    __u64 bytes;
};

#endif
