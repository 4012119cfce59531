"""Brute forces for week 19's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week19/problems.ipynb)."""

from __future__ import annotations


def collapse_runs(text, k):
    # O(n^2 / k): finds the first run of k by scanning from the start, deletes it, repeats.
    chars = list(text)
    i = 0
    while i + k <= len(chars):
        if all(chars[i + j] == chars[i] for j in range(1, k)):
            del chars[i:i + k]
            i = 0
        else:
            i += 1
    return "".join(chars)


import heapq


def cheapest_pairs(up, down, k):
    # O(n x m x log k): looks at every bundle, keeping the k cheapest in a bounded heap.
    worst = []  # max-heap (negated) of the k cheapest so far
    for a in up:
        for b in down:
            if len(worst) < k:
                heapq.heappush(worst, -(a + b))
            elif a + b < -worst[0]:
                heapq.heapreplace(worst, -(a + b))
    return sorted(-x for x in worst)


def max_sessions_attended(windows):
    # O(n x days): earliest-ending first, each takes the first free day by scanning forward.
    taken = set()
    attended = 0
    for first, last in sorted(windows, key=lambda w: w[1]):
        day = first
        while day <= last and day in taken:
            day += 1
        if day <= last:
            taken.add(day)
            attended += 1
    return attended


def closest_repeat(ids):
    # O(n^2): compares every pair.
    best = -1
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            if ids[i] == ids[j] and (best == -1 or j - i < best):
                best = j - i
    return best


def repeated_windows(payload, size):
    # O(n^2): compares every window with every later window.
    found = set()
    count = len(payload) - size + 1
    for i in range(count):
        for j in range(i + 1, count):
            if payload[i:i + size] == payload[j:j + size]:
                found.add(payload[i:i + size])
                break
    return sorted(found)


def longest_even_vowels(line):
    # O(n^2): every start, every end.
    bit = {"a": 1, "e": 2, "i": 4, "o": 8, "u": 16}
    best = 0
    for start in range(len(line)):
        mask = 0
        for end in range(start, len(line)):
            mask ^= bit.get(line[end], 0)
            if mask == 0:
                best = max(best, end - start + 1)
    return best


BRUTE = {
    "collapse_runs": collapse_runs,
    "cheapest_pairs": cheapest_pairs,
    "max_sessions_attended": max_sessions_attended,
    "closest_repeat": closest_repeat,
    "repeated_windows": repeated_windows,
    "longest_even_vowels": longest_even_vowels,
}
