"""Brute forces for week 23's problems: correct, but one complexity class too slow.

Each passes the visible examples and must run out of time on the large input
(see solutions/week23/problems.ipynb)."""

from __future__ import annotations


class SlidingLogLimiter:
    def __init__(self, limit, window):
        self.limit, self.window = limit, window
        self.logs = {}  # every admitted time ever, scanned on every call

    def allow(self, client, now):
        log = self.logs.setdefault(client, [])
        if sum(1 for t in log if t > now - self.window) >= self.limit:
            return False
        log.append(now)
        return True


class VersionedStore:
    def __init__(self):
        self.versions = {}  # key -> [(ts, value)], scanned on every get

    def put(self, key, value, ts):
        self.versions.setdefault(key, []).append((ts, value))

    def get(self, key, ts):
        best = None
        for t, v in self.versions.get(key, []):
            if t <= ts:
                best = v
        return best


class PacketRing:
    def __init__(self, capacity):
        self.capacity = capacity
        self.items = []  # reads pop from the front, shifting every stored item

    def write(self, items):
        stored = min(len(items), self.capacity - len(self.items))
        self.items.extend(items[:stored])
        return stored

    def read(self, n):
        out = []
        while self.items and len(out) < n:
            out.append(self.items.pop(0))
        return out

    def __len__(self):
        return len(self.items)


class ExtremesCounter:
    def __init__(self):
        self.count = {}  # max_key and min_key scan every key

    def inc(self, key):
        self.count[key] = self.count.get(key, 0) + 1

    def dec(self, key):
        self.count[key] -= 1
        if self.count[key] == 0:
            del self.count[key]

    def max_key(self):
        return max(self.count, key=self.count.get, default="")

    def min_key(self):
        return min(self.count, key=self.count.get, default="")


def zero_sum_picks(a, b, c, d):
    # Three nested loops and a lookup for the fourth: O(n^3).
    from collections import Counter
    last = Counter(d)
    return sum(last[-(x + y + z)] for x in a for y in b for z in c)


def shortest_cut_for_divisible(sizes, p):
    # Every stretch, by start and growing end: O(n^2).
    total = sum(sizes)
    if total % p == 0:
        return 0
    n, best = len(sizes), -1
    for i in range(n):
        removed = 0
        for j in range(i, n):
            removed += sizes[j]
            if j - i + 1 < n and (total - removed) % p == 0:
                if best < 0 or j - i + 1 < best:
                    best = j - i + 1
                break
    return best


def fewest_interrupted(rows):
    # Try every integer moment and walk every worker's jobs up to it: O(T * total jobs).
    total = sum(rows[0])
    best = len(rows)
    for t in range(1, total):
        cut = 0
        for durations in rows:
            end = 0
            for d in durations:
                end += d
                if end >= t:
                    break
            cut += end != t            # t is inside the job that ends at `end`
        best = min(best, cut)
    return best


def shortest_busiest_slice(flows):
    # O(n^2): from every start, extend the slice until some flow reaches the peak.
    counts = {}
    for f in flows:
        counts[f] = counts.get(f, 0) + 1
    peak = max(counts.values(), default=0)
    best = 0
    for start in range(len(flows)):
        seen = {}
        for end in range(start, len(flows)):
            seen[flows[end]] = seen.get(flows[end], 0) + 1
            if seen[flows[end]] == peak:
                if best == 0 or end - start + 1 < best:
                    best = end - start + 1
                break
    return best


BRUTE = {
    "sliding_log_limiter": SlidingLogLimiter,
    "versioned_config_store": VersionedStore,
    "packet_ring_buffer": PacketRing,
    "all_extremes_counter": ExtremesCounter,
    "four_feed_zero_sums": zero_sum_picks,
    "least_disruptive_checkpoint": fewest_interrupted,
    "shortest_busiest_slice": shortest_busiest_slice,
    "shortest_cut_for_divisible": shortest_cut_for_divisible,
}
