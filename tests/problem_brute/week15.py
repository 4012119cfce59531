"""Brute forces for week 15's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week15/problems.ipynb)."""

from __future__ import annotations


def has_gap_pair(stamps, gap):
    # O(n^2): every pair.
    for i in range(len(stamps)):
        for j in range(len(stamps)):
            if i != j and stamps[j] - stamps[i] == gap:
                return True
    return False


def count_low_product_runs(factors, limit):
    # O(n^2): every start, extended while the product stays below the limit.
    count = 0
    for start in range(len(factors)):
        product = 1
        for end in range(start, len(factors)):
            product *= factors[end]
            if product >= limit:
                break
            count += 1
    return count


def longest_ridge(samples):
    # O(n^2): climbs and descends from every start.
    best = 0
    for start in range(len(samples)):
        end = start
        while end + 1 < len(samples) and samples[end] < samples[end + 1]:
            end += 1
        peak = end
        while end + 1 < len(samples) and samples[end] > samples[end + 1]:
            end += 1
        if start < peak < end:
            best = max(best, end - start + 1)
    return best


from bisect import bisect_left


def tightest_triple(a, b, c):
    # O(len(a) x len(b) x log len(c)): every (x, y) pair, then the best z by binary search.
    best = float("inf")
    for x in a:
        for y in b:
            low, high = min(x, y), max(x, y)
            k = bisect_left(c, low)
            for z in c[max(k - 1, 0):k + 2]:
                best = min(best, max(high, z) - min(low, z))
    return best


def shortest_cut(log):
    # O(n^2): for every sorted prefix, scans for the first suffix start that fits after it.
    n = len(log)
    suffix = n - 1
    while suffix > 0 and log[suffix - 1] <= log[suffix]:
        suffix -= 1
    if suffix <= 0:
        return 0
    best = suffix
    for keep in range(1, n + 1):  # keep log[:keep]
        if keep > 1 and log[keep - 2] > log[keep - 1]:
            break
        for start in range(max(keep, suffix), n + 1):
            if start == n or log[start] >= log[keep - 1]:
                best = min(best, start - keep)
                break
    return best


def best_merged_route(ring_a, ring_b):
    # O(n * shared): sums every segment by rescanning both rings from the start.
    shared = sorted(set(ring_a) & set(ring_b))
    bounds = [float("-inf")] + shared + [float("inf")]
    total = 0
    for low, high in zip(bounds, bounds[1:]):
        seg_a = sum(x for x in ring_a if low < x < high)
        seg_b = sum(x for x in ring_b if low < x < high)
        total += max(seg_a, seg_b) + (high if high != float("inf") else 0)
    return total


BRUTE = {
    "has_gap_pair": has_gap_pair,
    "count_low_product_runs": count_low_product_runs,
    "longest_ridge": longest_ridge,
    "tightest_triple": tightest_triple,
    "shortest_cut": shortest_cut,
    "best_merged_route": best_merged_route,
}
