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


def largest_clear_square(floor):
    # O(rows x cols x side^2): grows a square from every tile, rechecking its new border.
    rows = len(floor)
    cols = len(floor[0]) if rows else 0
    best = 0
    for r in range(rows):
        for c in range(cols):
            side = 0
            while r + side < rows and c + side < cols and all(
                    floor[r + side][c + k] == "1" and floor[r + k][c + side] == "1" for k in range(side + 1)):
                side += 1
            best = max(best, side)
    return best * best


def sync_deletions(a, b):
    # Exponential: tries both deletions at every mismatch, with no memo.
    if not a or not b:
        return len(a) + len(b)
    if a[0] == b[0]:
        return sync_deletions(a[1:], b[1:])
    return 1 + min(sync_deletions(a[1:], b), sync_deletions(a, b[1:]))


def is_interleaving(a, b, merged):
    # Exponential: tries both streams at every step, with no memo.
    if len(a) + len(b) != len(merged):
        return False
    if not merged:
        return True
    return bool((a and a[0] == merged[0] and is_interleaving(a[1:], b, merged[1:]))
                or (b and b[0] == merged[0] and is_interleaving(a, b[1:], merged[1:])))


BRUTE = {
    "max_quiet_slots": max_quiet_slots,
    "strongest_gain_span": strongest_gain_span,
    "longest_zigzag_subsequence": longest_zigzag_subsequence,
    "largest_clear_square": largest_clear_square,
    "sync_deletions": sync_deletions,
    "is_interleaving": is_interleaving,
}
