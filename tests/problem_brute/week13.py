"""Brute forces for week 13's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week13/problems.ipynb)."""

from __future__ import annotations


def max_quiet_slots(gains):
    # O(n^2): each slot looks back over every compatible earlier slot.
    best = []
    for i, gain in enumerate(gains):
        best.append(gain + max(best[:i - 1], default=0))
    return max(best, default=0)


def strongest_gain_span(factors):
    # O(n^2): every start, every end.
    best = factors[0]
    for start in range(len(factors)):
        product = 1
        for end in range(start, len(factors)):
            product *= factors[end]
            best = max(best, product)
    return best


def longest_zigzag_subsequence(trace):
    # O(n^2): for every element, the best zigzag over every earlier element.
    up, down = [], []
    for i, value in enumerate(trace):
        up.append(1 + max((down[j] for j in range(i) if trace[j] < value), default=0))
        down.append(1 + max((up[j] for j in range(i) if trace[j] > value), default=0))
    return max(up + down, default=0)


def count_digit_decodings(digits):
    # Exponential: enumerates every decoding one by one, with no memo.
    def ways(i):
        if i == len(digits):
            return 1
        if digits[i] == "0":
            return 0
        total = ways(i + 1)
        if i + 1 < len(digits) and int(digits[i:i + 2]) <= 26:
            total += ways(i + 2)
        return total

    return ways(0) % 1_000_000_007


def sync_deletions(a, b):
    # Exponential: tries both deletions at every mismatch, with no memo.
    if not a or not b:
        return len(a) + len(b)
    if a[0] == b[0]:
        return sync_deletions(a[1:], b[1:])
    return 1 + min(sync_deletions(a[1:], b), sync_deletions(a, b[1:]))


def count_embeddings(stream, pattern):
    # Exponential: extends every partial match one index at a time, with no memo.
    def count(i, j):
        if j == len(pattern):
            return 1
        return sum(count(k + 1, j + 1) for k in range(i, len(stream)) if stream[k] == pattern[j])

    return count(0, 0)


BRUTE = {
    "max_quiet_slots": max_quiet_slots,
    "strongest_gain_span": strongest_gain_span,
    "longest_zigzag_subsequence": longest_zigzag_subsequence,
    "count_digit_decodings": count_digit_decodings,
    "sync_deletions": sync_deletions,
    "count_embeddings": count_embeddings,
}
