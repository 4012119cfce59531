"""Brute forces for week 25's problems: correct, but one complexity class too slow.

Each passes the visible examples and must run out of time on the large input
(see solutions/week25/problems.ipynb)."""

from __future__ import annotations


def cheapest_trim(a, b):
    # The recursion without memoisation: exponential.
    if not a or not b:
        return sum(map(ord, a + b))
    if a[0] == b[0]:
        return cheapest_trim(a[1:], b[1:])
    return min(ord(a[0]) + cheapest_trim(a[1:], b), ord(b[0]) + cheapest_trim(a, b[1:]))


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


def first_anagram_window(stream, signature):
    # Sort every window: O(n * m log m).
    m, key = len(signature), sorted(signature)
    for i in range(len(stream) - m + 1):
        if sorted(stream[i:i + m]) == key:
            return i
    return -1


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


BRUTE = {
    "cheapest_trim_to_match": cheapest_trim,
    "ring_pick_capacity": ring_pick,
    "cheapest_segment_merge": cheapest_merge,
    "first_bad_build": first_bad_build,
    "rotation_point_probe": wrap_index,
    "median_of_two_feeds": median_of_two,
    "best_distinct_window": best_distinct_window,
    "first_anagram_window": first_anagram_window,
    "three_class_partition": partition_classes,
    "closest_cross_pair": closest_cross_gap,
}
