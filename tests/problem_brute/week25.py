"""Brute forces for week 25's problems: correct, but one complexity class too slow.

Each passes the visible examples and must run out of time on the large input
(see solutions/week25/problems.ipynb)."""

from __future__ import annotations


def ring_pick(caps):
    # best[i] = caps[i] + the best over every compatible earlier pick: O(n^2).
    def line(values):
        best = []
        for i, v in enumerate(values):
            best.append(v + max(best[:max(i - 1, 0)], default=0))
        return max(best, default=0)
    if len(caps) == 1:
        return caps[0]
    return max(line(caps[:-1]), line(caps[1:]), 0)


def cheapest_merge(sizes):
    # Try every merge order: exponential.
    if len(sizes) <= 1:
        return 0
    best = None
    for i in range(len(sizes) - 1):
        merged = sizes[i] + sizes[i + 1]
        cost = merged + cheapest_merge(sizes[:i] + [merged] + sizes[i + 2:])
        if best is None or cost < best:
            best = cost
    return best


def first_bad_build(n, is_bad):
    # Test every build in order: O(n) calls.
    for b in range(1, n + 1):
        if is_bad(b):
            return b
    return -1


def wrap_index(ring):
    # Scan for the first drop: O(n) reads.
    for i in range(1, len(ring)):
        if ring[i] < ring[i - 1]:
            return i
    return 0


def median_of_two(a, b):
    # Merge until the middle: O(m + n) reads.
    total = len(a) + len(b)
    i = j = 0
    prev = cur = None
    for _ in range(total // 2 + 1):
        prev = cur
        if j >= len(b) or (i < len(a) and a[i] <= b[j]):
            cur = a[i]
            i += 1
        else:
            cur = b[j]
            j += 1
    return float(cur) if total % 2 else (prev + cur) / 2


def best_distinct_window(flows, k):
    # Check every window with a fresh set: O(n * k).
    best = 0
    for i in range(len(flows) - k + 1):
        window = flows[i:i + k]
        if len(set(window)) == k:
            best = max(best, sum(window))
    return best


def partition_classes(queue):
    # Insertion sort: O(n^2) moves.
    for i in range(1, len(queue)):
        j = i
        while j > 0 and queue[j - 1] > queue[j]:
            queue[j - 1], queue[j] = queue[j], queue[j - 1]
            j -= 1


def closest_cross_gap(a, b):
    # Every pair: O(n * m).
    return min(abs(x - y) for x in a for y in b)


def fewest_swaps_to_gather(ring):
    # O(n * k): count the zeros of every length-k block around the ring from scratch.
    n, k = len(ring), sum(ring)
    if k == 0:
        return 0
    return min(sum(1 for j in range(start, start + k) if ring[j % n] == 0) for start in range(n))


def cheapest_passes(days, passes):
    # O(n^2 * p): a pass bought on days[i] may be followed by a pass on any later job day j
    # whose earlier days it covers; every such j is tried.
    n = len(days)
    cost = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        best = None
        for length, price in passes:
            for j in range(i + 1, n + 1):
                if days[j - 1] < days[i] + length and (best is None or price + cost[j] < best):
                    best = price + cost[j]
        cost[i] = best
    return cost[0]


BRUTE = {
    "cheapest_reservation_passes": cheapest_passes,
    "ring_pick_capacity": ring_pick,
    "cheapest_segment_merge": cheapest_merge,
    "first_bad_build": first_bad_build,
    "rotation_point_probe": wrap_index,
    "median_of_two_feeds": median_of_two,
    "best_distinct_window": best_distinct_window,
    "gather_tenant_on_ring": fewest_swaps_to_gather,
    "three_class_partition": partition_classes,
    "closest_cross_pair": closest_cross_gap,
}
