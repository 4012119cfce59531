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


def longest_port_sequence(ports):
    # Count upwards from every number, not only from run starts: O(n^2) on one long run.
    present = set(ports)
    best = 0
    for x in present:
        end = x
        while end + 1 in present:
            end += 1
        best = max(best, end - x + 1)
    return best


def same_shape(a, b):
    # Compare first-occurrence positions with list.index: O(n^2) for distinct tokens.
    return len(a) == len(b) and all(a.index(x) == b.index(y) for x, y in zip(a, b))


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


BRUTE = {
    "sliding_log_limiter": SlidingLogLimiter,
    "versioned_config_store": VersionedStore,
    "packet_ring_buffer": PacketRing,
    "all_extremes_counter": ExtremesCounter,
    "four_feed_zero_sums": zero_sum_picks,
    "longest_port_sequence": longest_port_sequence,
    "same_shape_templates": same_shape,
    "shortest_cut_for_divisible": shortest_cut_for_divisible,
}
