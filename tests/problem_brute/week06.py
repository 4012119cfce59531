"""Correct but slow solutions for week 6's problems (backtracking, greedy, stack, heap).

restore_dotted_quads has no large input (at most 20 digits), so it has no brute force here.
"""

from __future__ import annotations

import itertools


def pick_probe_sets(costs, budget):
    # O(2^n * n): every subset of indices, deduplicated afterwards.
    found = set()
    for size in range(1, len(costs) + 1):
        for subset in itertools.combinations(costs, size):
            if sum(subset) == budget:
                found.add(tuple(sorted(subset)))
    return sorted(list(combo) for combo in found)


def count_probe_layouts(n):
    # O(n! * n^2): every column permutation, checked pair by pair.
    layouts = 0
    for columns in itertools.permutations(range(n)):
        if all(abs(columns[a] - columns[b]) != b - a for a in range(n) for b in range(a + 1, n)):
            layouts += 1
    return layouts


def brackets_balanced(text):
    # O(n^2): delete innermost pairs until nothing changes.
    text = "".join(char for char in text if char in "()[]{}")
    while True:
        shorter = text.replace("()", "").replace("[]", "").replace("{}", "")
        if shorter == text:
            return not text
        text = shorter


def merge_lease_ranges(ranges):
    # O(n * m): absorb each range into every merged range it touches, by scanning them all.
    merged = []
    for first, last in ranges:
        kept = []
        for other in merged:
            if other[0] <= last and first <= other[1]:
                first, last = min(first, other[0]), max(last, other[1])
            else:
                kept.append(other)
        kept.append([first, last])
        merged = kept
    return sorted(merged)


def fewest_recharge_stops(target, charge, pads):
    # O(n^2): farthest[t] = farthest reach with t stops, updated for every pad.
    farthest = [charge] + [0] * len(pads)
    for i, (position, gain) in enumerate(pads):
        for stops in range(i, -1, -1):
            if farthest[stops] >= position:
                farthest[stops + 1] = max(farthest[stops + 1], farthest[stops] + gain)
    for stops, reach in enumerate(farthest):
        if reach >= target:
            return stops
    return -1


BRUTE = {
    "pick_probe_sets": pick_probe_sets,
    "count_probe_layouts": count_probe_layouts,
    "brackets_balanced": brackets_balanced,
    "merge_lease_ranges": merge_lease_ranges,
    "fewest_recharge_stops": fewest_recharge_stops,
}
