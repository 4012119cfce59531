// TC egress classifier: count packets and bytes per destination port, and rate-limit one
// port with a token bucket.
//
// Attached to a clsact qdisc's egress hook in direct-action mode, so the return value is the
// verdict: TC_ACT_OK lets the packet leave, TC_ACT_SHOT drops it. At egress the skb already
// carries its Ethernet header, so skb->len counts it.

#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include "tc_egress.h"

BPF_HASH(port_counts, struct tc_port_key, struct tc_port_counter, 1024);
BPF_ARRAY(bucket, struct tc_bucket, 1);

// Refill, then take a token if there is one. Not atomic across CPUs: two packets racing on
// two CPUs can both take the last token (one extra packet). A strict limiter would wrap this
// in bpf_spin_lock; a counter of drops is enough here.
static __always_inline int take_token(struct tc_bucket *b)
{
    __u64 now = bpf_ktime_get_ns();
    if (b->ns_per_token) {
        __u64 earned = (now - b->last_refill_ns) / b->ns_per_token;
        if (b->tokens + earned >= b->burst) {
            b->tokens = b->burst;
            b->last_refill_ns = now;  // a full bucket does not save up for later
        } else if (earned) {
            b->tokens += earned;
            b->last_refill_ns += earned * b->ns_per_token;  // keep the fraction of a token
        }
    }
    if (b->tokens == 0)
        return 0;
    b->tokens -= 1;
    return 1;
}

static __always_inline int limited(struct tc_port_key *key)
{
    __u32 zero = 0;
    struct tc_bucket *b = bucket.lookup(&zero);
    if (!b || b->port == 0 || b->port != key->port || b->protocol != key->protocol)
        return 0;
    return !take_token(b);
}

int ns_tc_egress(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return TC_ACT_OK;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return TC_ACT_OK;
    if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP)
        return TC_ACT_OK;
    // The ports are the first 4 bytes of both the UDP and the TCP header; skip IP options.
    struct udphdr *l4 = (void *)ip + ip->ihl * 4;
    if ((void *)(l4 + 1) > data_end)
        return TC_ACT_OK;

    struct tc_port_key key = {.port = bpf_ntohs(l4->dest), .protocol = ip->protocol};
    struct tc_port_counter zero = {};
    struct tc_port_counter *counter = port_counts.lookup_or_try_init(&key, &zero);
    int drop = limited(&key);
    if (counter) {
        if (drop) {
            __sync_fetch_and_add(&counter->dropped_packets, 1);
            __sync_fetch_and_add(&counter->dropped_bytes, skb->len);
        } else {
            __sync_fetch_and_add(&counter->packets, 1);
            __sync_fetch_and_add(&counter->bytes, skb->len);
        }
    }
    return drop ? TC_ACT_SHOT : TC_ACT_OK;
}
