"""Correct but quadratic solutions for week 3's problems: each must fail its large input."""

from __future__ import annotations


def pairs_under_cap(draws, cap):
    # O(n^2): every pair.
    return sum(1 for i in range(len(draws)) for j in range(i + 1, len(draws))
               if draws[i] + draws[j] <= cap)


def widest_buffer_pair(heights):
    # O(n^2): every pair.
    best = 0
    for i in range(len(heights)):
        for j in range(i + 1, len(heights)):
            best = max(best, min(heights[i], heights[j]) * (j - i))
    return best


def backlog_between_spikes(levels):
    # O(n^2): scan left and right for the maxima of every bar.
    held = 0
    for i, level in enumerate(levels):
        left = max(levels[j] for j in range(i + 1))
        right = max(levels[j] for j in range(i, len(levels)))
        held += min(left, right) - level
    return held


def longest_distinct_flow_run(flows):
    # O(n * answer): grow a fresh window from every start.
    best = 0
    for start in range(len(flows)):
        seen = set()
        for end in range(start, len(flows)):
            if flows[end] in seen:
                break
            seen.add(flows[end])
        best = max(best, len(seen))
    return best


def shortest_covering_window(log, need):
    # O(n^2): from every start, extend until the window covers `need`.
    if not need:
        return ""
    wanted = {}
    for char in need:
        wanted[char] = wanted.get(char, 0) + 1
    best = ""
    for start in range(len(log)):
        missing, counts = len(need), dict(wanted)
        for end in range(start, len(log)):
            char = log[end]
            if counts.get(char, 0) > 0:
                missing -= 1
            counts[char] = counts.get(char, 0) - 1
            if missing == 0:
                if not best or end - start + 1 < len(best):
                    best = log[start:end + 1]
                break
    return best


def window_peak_rates(rates, k):
    # O(n k): recompute every window's maximum.
    peaks = []
    for i in range(len(rates) - k + 1):
        peak = rates[i]
        for j in range(i + 1, i + k):
            if rates[j] > peak:
                peak = rates[j]
        peaks.append(peak)
    return peaks


BRUTE = {
    "pairs_under_cap": pairs_under_cap,
    "widest_buffer_pair": widest_buffer_pair,
    "backlog_between_spikes": backlog_between_spikes,
    "longest_distinct_flow_run": longest_distinct_flow_run,
    "shortest_covering_window": shortest_covering_window,
    "window_peak_rates": window_peak_rates,
}
