"""Correct but quadratic solutions for week 2's problems: each must fail its large input."""

from __future__ import annotations


def pair_for_budget(sizes, budget):
    # O(n^2): try every earlier index for each j.
    for j in range(len(sizes)):
        for i in range(j):
            if sizes[i] + sizes[j] == budget:
                return (i, j)
    return None


def first_lone_client(ids):
    # O(n^2): count every id by scanning the whole list again.
    for index, client in enumerate(ids):
        occurrences = 0
        for other in ids:
            if other == client:
                occurrences += 1
        if occurrences == 1:
            return index
    return -1


def bucket_scrambled_tags(tags):
    # O(n * buckets): compare each tag with every bucket's first tag.
    buckets = []
    for tag in tags:
        key = sorted(tag)
        for bucket in buckets:
            if sorted(bucket[0]) == key:
                bucket.append(tag)
                break
        else:
            buckets.append([tag])
    return buckets


def longest_port_streak(values):
    # O(n^2) on one long run: counts upward from every value, not only from run starts.
    present = set(values)
    best = 0
    for start in present:
        end = start
        while end + 1 in present:
            end += 1
        best = max(best, end - start + 1)
    return best


def count_windows_with_drift(corrections, k):
    # O(n^2): every start, running sum to every end.
    windows = 0
    for i in range(len(corrections)):
        total = 0
        for j in range(i, len(corrections)):
            total += corrections[j]
            if total == k:
                windows += 1
    return windows


def count_gap_pairs(rtts, k):
    # O(n^2): every pair.
    pairs = 0
    for i in range(len(rtts)):
        for j in range(i + 1, len(rtts)):
            if abs(rtts[i] - rtts[j]) == k:
                pairs += 1
    return pairs


BRUTE = {
    "pair_for_budget": pair_for_budget,
    "first_lone_client": first_lone_client,
    "bucket_scrambled_tags": bucket_scrambled_tags,
    "longest_port_streak": longest_port_streak,
    "count_drift_windows": count_windows_with_drift,
    "count_gap_pairs": count_gap_pairs,
}
