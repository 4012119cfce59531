"""Brute forces for week 17's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week17/problems.ipynb)."""

from __future__ import annotations


def count_cable_routes(grid):
    # Exponential: follows every route one by one, with no memo.
    rows, cols = len(grid), len(grid[0])

    def routes(r, c):
        if r >= rows or c >= cols or grid[r][c] == "#":
            return 0
        if (r, c) == (rows - 1, cols - 1):
            return 1
        return routes(r + 1, c) + routes(r, c + 1)

    return routes(0, 0) % 1_000_000_007


def best_job_value(jobs, budget):
    # Exponential: takes or skips every job, with no memo.
    def best(i, left):
        if i == len(jobs):
            return 0
        cost, value = jobs[i]
        skip = best(i + 1, left)
        return max(skip, value + best(i + 1, left - cost)) if cost <= left else skip

    return best(0, budget)


from itertools import product


def count_sign_patterns(sizes, target):
    # O(2^n): tries every sign assignment.
    return sum(1 for signs in product((1, -1), repeat=len(sizes))
               if sum(s * v for s, v in zip(signs, sizes)) == target)


def longest_mirror_subsequence(trace):
    # Exponential: drops one end or the other at every mismatch, with no memo.
    if len(trace) <= 1:
        return len(trace)
    if trace[0] == trace[-1]:
        return 2 + longest_mirror_subsequence(trace[1:-1])
    return max(longest_mirror_subsequence(trace[1:]), longest_mirror_subsequence(trace[:-1]))


def host_matches(name, rule):
    # Exponential: tries every length for every '*', with no memo.
    if not rule:
        return not name
    if rule[0] == "*":
        return any(host_matches(name[k:], rule[1:]) for k in range(len(name) + 1))
    return bool(name) and rule[0] in ("?", name[0]) and host_matches(name[1:], rule[1:])


def best_windows(rates, k, m):
    # O(n^2 * m): best[j][i] tries every first start s >= i instead of reusing best[j][i + 1].
    n = len(rates)
    window = [sum(rates[i:i + k]) for i in range(n - k + 1)] + [0] * (k + 1)
    best = [[0] * (n + k + 1)]
    for j in range(1, m + 1):
        row = [float("-inf")] * (n + k + 1)
        for i in range(n - k, -1, -1):
            row[i] = max(window[s] + best[j - 1][s + k] for s in range(i, n - k + 1))
        best.append(row)
    starts, i = [], 0
    for j in range(m, 0, -1):
        while window[i] + best[j - 1][i + k] != best[j][i]:
            i += 1
        starts.append(i)
        i += k
    return starts


BRUTE = {
    "count_cable_routes": count_cable_routes,
    "best_job_value": best_job_value,
    "count_sign_patterns": count_sign_patterns,
    "longest_mirror_subsequence": longest_mirror_subsequence,
    "best_capture_windows": best_windows,
    "host_matches": host_matches,
}
