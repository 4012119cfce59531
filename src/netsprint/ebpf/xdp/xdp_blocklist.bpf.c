// XDP source-address blocklist: drop IPv4 packets whose source falls in a blocked prefix.
//
// Runs on the receive path of one interface before the kernel builds an skb (native mode)
// or right after (generic mode). Every packet is counted under the action returned; a
// packet decided by a trie entry is also counted in that entry.

#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include "xdp_blocklist.h"

// Longest-prefix match on the source address. BPF_F_NO_PREALLOC is mandatory for LPM tries
// (bcc's BPF_LPM_TRIE sets it).
BPF_LPM_TRIE(blocklist, struct xdp_lpm_key, struct xdp_rule, 1024);

// Per-CPU: each CPU adds to its own copy without atomics; user space sums the copies.
BPF_PERCPU_ARRAY(action_counts, struct xdp_counter, XDP_ACTION_SLOTS);

static __always_inline int count(int action, __u64 len)
{
    __u32 slot = action;
    struct xdp_counter *counter = action_counts.lookup(&slot);
    if (counter) {  // the verifier insists: a lookup may return NULL
        counter->packets += 1;
        counter->bytes += len;
    }
    return action;
}

static __always_inline int verdict(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    // Every read of packet memory must be proven in bounds against data_end first.
    if ((void *)(eth + 1) > data_end)
        return XDP_PASS;
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;  // ARP, IPv6...: not ours to judge
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return XDP_PASS;

    struct xdp_lpm_key key = {.prefixlen = 32};
    __builtin_memcpy(key.addr, &ip->saddr, sizeof(key.addr));
    struct xdp_rule *rule = blocklist.lookup(&key);
    if (!rule)
        return XDP_PASS;
    // Trie values are shared by all CPUs: add atomically.
    __sync_fetch_and_add(&rule->packets, 1);
    __sync_fetch_and_add(&rule->bytes, (__u64)(data_end - data));
    return rule->action == XDP_RULE_DROP ? XDP_DROP : XDP_PASS;
}

int ns_xdp_blocklist(struct xdp_md *ctx)
{
    __u64 len = (__u64)(ctx->data_end - ctx->data);
    return count(verdict(ctx), len);
}
