"""Brute forces for week 16's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week16/problems.ipynb)."""

from __future__ import annotations

import heapq

from problem_brute import grid_area


def reach_idle_port(hops, start):
    # O(n^2): left-to-right sweeps that mark reachable slots until nothing changes.
    reached = [False] * len(hops)
    reached[start] = True
    changed = True
    while changed:
        changed = False
        for i in range(len(hops)):
            if not reached[i]:
                continue
            if hops[i] == 0:
                return True
            for j in (i + hops[i], i - hops[i]):
                if 0 <= j < len(hops) and not reached[j]:
                    reached[j] = changed = True
    return False


def largest_cluster(grid):
    # O(cells x cluster size): floods the whole cluster again from every hot tile.
    return max((len(grid_area(grid, r, c)) for r in range(len(grid))
                for c in range(len(grid[0])) if grid[r][c] == "1"), default=0)


def longest_chain(n, deps):
    # O(n x edges): Bellman-Ford style rounds over every edge until lengths settle.
    length = [1] * n
    for _ in range(n + 1):
        changed = False
        for a, b in deps:
            if length[a] + 1 > length[b]:
                length[b] = length[a] + 1
                changed = True
        if not changed:
            return max(length, default=0)
    return -1  # still growing after n rounds: a cycle


def target_span(n, probe, target):
    # O(n) probes: scans from the start.
    first = last = -1
    for i in range(n):
        key = probe(i)
        if key == target:
            first = i if first < 0 else first
            last = i
        elif key > target:
            break
    return (first, last)


def kth_in_product_table(rows, cols, k):
    # O(k log rows): merges the sorted rows with a heap and pops k entries.
    heap = [(i, i, 1) for i in range(1, rows + 1)]  # (value, row, column)
    heapq.heapify(heap)
    for _ in range(k - 1):
        value, row, col = heapq.heappop(heap)
        if col < cols:
            heapq.heappush(heap, (row * (col + 1), row, col + 1))
    return heap[0][0]


def kth_lost(log, k):
    # O(n) reads: walk the log and count the numbers each gap skips.
    expected = 1
    for i in range(len(log)):
        gap = log[i] - expected
        if k <= gap:
            return expected + k - 1
        k -= gap
        expected = log[i] + 1
    return expected + k - 1


BRUTE = {
    "reach_idle_port": reach_idle_port,
    "largest_cluster": largest_cluster,
    "longest_chain": longest_chain,
    "target_span": target_span,
    "kth_lost_sequence_number": kth_lost,
    "kth_in_product_table": kth_in_product_table,
}
