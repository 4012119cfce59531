// Map types side by side: one tracepoint program that, per getsid(2) call of ONE process,
// bumps the same key in four kinds of hash map two ways, and sends one record to a ring
// buffer and one to a perf buffer.
//
// Compiled by loader.py with:
//   -DNETSPRINT_TGID=<pid>            the only process counted (the test / notebook itself)
//   -DNETSPRINT_RINGBUF_PAGES=<2^k>   ring buffer size in pages (power of two, kernel rule)
//   -DNETSPRINT_FLOOD_ENTRIES=<K>     max_entries of the LRU map flooded with one key per call
//
// Why getsid(2): nothing else in a Python process calls it. ipykernel calls getppid() every
// second (its parent poller) and getpid() on every output write, which would add calls the
// test did not make.
#include "maps.h"

#define NETSPRINT_MAP_KEYS 64

// --- the same counter, keyed by tgid, in four map types --------------------------------------
// "inc_*" are bumped with bcc's map.increment(key); "ok_*" with the pattern that works on
// every hash type: lookup_or_try_init(key, &zero) (= update(BPF_NOEXIST) then lookup), then an
// atomic add on shared maps or a plain += on per-CPU maps (each CPU owns its own slot).
BPF_HASH(inc_hash, u32, u64, NETSPRINT_MAP_KEYS);
BPF_PERCPU_HASH(inc_percpu_hash, u32, u64, NETSPRINT_MAP_KEYS);
BPF_TABLE("lru_hash", u32, u64, inc_lru_hash, NETSPRINT_MAP_KEYS);
BPF_TABLE("lru_percpu_hash", u32, u64, inc_lru_percpu_hash, NETSPRINT_MAP_KEYS);

BPF_HASH(ok_hash, u32, u64, NETSPRINT_MAP_KEYS);
BPF_PERCPU_HASH(ok_percpu_hash, u32, u64, NETSPRINT_MAP_KEYS);
BPF_TABLE("lru_hash", u32, u64, ok_lru_hash, NETSPRINT_MAP_KEYS);
BPF_TABLE("lru_percpu_hash", u32, u64, ok_lru_percpu_hash, NETSPRINT_MAP_KEYS);

// An LRU map of K entries that gets a NEW key (the call's sequence number) on every call:
// the flood. The kernel evicts old keys instead of failing the insert.
BPF_TABLE("lru_hash", u64, u64, lru_flood, NETSPRINT_FLOOD_ENTRIES);

// Slot 0: next sequence number; 1: ring-buffer reserves that failed (buffer full);
// 2: perf outputs that failed (the kernel also counts these and reports them as "lost").
BPF_ARRAY(counters, u64, 3);
#define SLOT_SEQ 0
#define SLOT_RING_FULL 1
#define SLOT_PERF_FAILED 2

BPF_RINGBUF_OUTPUT(ring, NETSPRINT_RINGBUF_PAGES);
BPF_PERF_OUTPUT(perf);

static __always_inline void bump_counter(u32 slot)
{
    u64 *value = counters.lookup(&slot);
    if (value)
        __sync_fetch_and_add(value, 1);
}

static __always_inline u64 next_seq(void)
{
    u32 slot = SLOT_SEQ;
    u64 *value = counters.lookup(&slot);
    // An atomic fetch-and-add (BPF_FETCH, kernel >= 5.12): two CPUs never get the same number.
    return value ? __sync_fetch_and_add(value, 1) : 0;
}

static __always_inline void count_with_increment(u32 key)
{
    inc_hash.increment(key);
    inc_percpu_hash.increment(key);
    inc_lru_hash.increment(key);
    inc_lru_percpu_hash.increment(key);
}

static __always_inline void count_correctly(u32 key)
{
    u64 zero = 0;
    u64 *value;

    // Shared value: several CPUs may add at once, so the add must be atomic.
    value = ok_hash.lookup_or_try_init(&key, &zero);
    if (value)
        __sync_fetch_and_add(value, 1);
    value = ok_lru_hash.lookup_or_try_init(&key, &zero);
    if (value)
        __sync_fetch_and_add(value, 1);
    // Per-CPU value: lookup returns THIS CPU's slot and a tracepoint program is not migrated
    // while it runs, so nobody else writes it: a plain add is enough (and cheaper).
    value = ok_percpu_hash.lookup_or_try_init(&key, &zero);
    if (value)
        *value += 1;
    value = ok_lru_percpu_hash.lookup_or_try_init(&key, &zero);
    if (value)
        *value += 1;
}

static __always_inline void emit_ring(struct map_record *rec)
{
    // reserve/commit: the record is written in place in the ring, no extra copy; a full
    // ring makes the reserve fail, and nothing reports that unless we count it.
    struct map_record *slot = ring.ringbuf_reserve(sizeof(*slot));
    if (!slot) {
        bump_counter(SLOT_RING_FULL);
        return;
    }
    __builtin_memcpy(slot, rec, sizeof(*slot));
    ring.ringbuf_submit(slot, 0);
}

static __always_inline void emit_perf(void *ctx, struct map_record *rec)
{
    // Copies the record into this CPU's perf buffer; fails (-ENOSPC) when that one is full.
    if (perf.perf_submit(ctx, rec, sizeof(*rec)) < 0)
        bump_counter(SLOT_PERF_FAILED);
}

int ns_maps_getsid(void *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid != NETSPRINT_TGID)
        return 0;

    count_with_increment(tgid);
    count_correctly(tgid);

    struct map_record rec = {};
    rec.seq = next_seq();
    rec.ts_ns = bpf_ktime_get_ns();
    rec.tgid = tgid;
    rec.cpu = bpf_get_smp_processor_id();

    u64 one = 1;
    lru_flood.update(&rec.seq, &one);

    emit_ring(&rec);
    emit_perf(ctx, &rec);
    return 0;
}
