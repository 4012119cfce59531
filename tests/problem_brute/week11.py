"""Brute forces for week 11's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week11/problems.ipynb)."""

from __future__ import annotations

from collections import Counter


def busiest_window(deltas, k):
    # O(n * k): sums every window from scratch.
    if len(deltas) < k:
        return None
    return max(sum(deltas[i:i + k]) for i in range(len(deltas) - k + 1))


def longest_uniform_after_edits(states, k):
    # O(n^2): every start, extended while the window needs at most k rewrites.
    best = 0
    for start in range(len(states)):
        counts, top = {}, 0
        for end in range(start, len(states)):
            counts[states[end]] = counts.get(states[end], 0) + 1
            top = max(top, counts[states[end]])
            if end - start + 1 - top > k:
                break
            best = max(best, end - start + 1)
    return best


def shortest_burst(sent, threshold):
    # O(n * answer): grows a fresh window from every start.
    best = 0
    for start in range(len(sent)):
        total = 0
        for end in range(start, len(sent)):
            total += sent[end]
            if total >= threshold:
                if best == 0 or end - start + 1 < best:
                    best = end - start + 1
                break
    return best


def scrambled_matches(stream, signature):
    # O(n * m): counts every window from scratch.
    m = len(signature)
    need = Counter(signature)
    return [i for i in range(len(stream) - m + 1) if Counter(stream[i:i + m]) == need]


def longest_clean_run(frames, k):
    # O(n * answer): extends a fresh window from every start.
    best = 0
    for start in range(len(frames)):
        zeros = 0
        for end in range(start, len(frames)):
            zeros += frames[end] == 0
            if zeros > k:
                break
            best = max(best, end - start + 1)
    return best


def count_exact_mix(flows, k):
    # O(n^2): every start, extended until more than k ids.
    total = 0
    for start in range(len(flows)):
        seen = set()
        for end in range(start, len(flows)):
            seen.add(flows[end])
            if len(seen) > k:
                break
            total += len(seen) == k
    return total


BRUTE = {
    "busiest_window": busiest_window,
    "longest_uniform_after_edits": longest_uniform_after_edits,
    "shortest_burst": shortest_burst,
    "scrambled_matches": scrambled_matches,
    "longest_clean_run": longest_clean_run,
    "count_exact_mix": count_exact_mix,
}
