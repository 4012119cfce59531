"""Brute forces for week 24's problems: correct, but one complexity class too slow.

Each passes the visible examples and must run out of time on the large input
(see solutions/week24/problems.ipynb)."""

from __future__ import annotations

from problem_brute import window_minimums


def count_opcode_splits(digits):
    # Enumerate every split with an explicit stack: exponential.
    count, stack = 0, [0]
    while stack:
        i = stack.pop()
        if i == len(digits):
            count += 1
            continue
        if digits[i] == "0":
            continue
        stack.append(i + 1)
        if i + 1 < len(digits) and int(digits[i:i + 2]) <= 26:
            stack.append(i + 2)
    return count % 1_000_000_007


def longest_common_block(a, b):
    # Extend a match from every pair of starting positions: O(n * m * min(n, m)).
    best = 0
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                k += 1
            best = max(best, k)
    return best


def profit_with_cooldown(prices):
    # free[j] = best with no unit held after day j; try every buy day i for a sale on day j: O(n^2).
    n = len(prices)
    free = [0] * (n + 1)          # free[j]: after the first j days
    for j in range(1, n + 1):
        free[j] = free[j - 1]
        for i in range(j - 1):    # buy on day i (0-based), sell on day j - 1
            before = free[i - 1] if i >= 1 else 0   # a sale on day i - 1 forbids buying on day i
            free[j] = max(free[j], before + prices[j - 1] - prices[i])
    return free[n]


def count_hidden_copies(payload, signature):
    # Enumerate every choice of positions with an explicit stack: exponential.
    count, stack = 0, [(0, 0)]
    while stack:
        i, j = stack.pop()
        if j == len(signature):
            count += 1
        elif len(payload) - i >= len(signature) - j:
            stack.append((i + 1, j))
            if payload[i] == signature[j]:
                stack.append((i + 1, j + 1))
    return count


def find_in_rotated(ring, targets):
    # A linear scan per target: O(n) each.
    out = []
    for x in targets:
        found = -1
        for i, v in enumerate(ring):
            if v == x:
                found = i
                break
        out.append(found)
    return out


def in_sorted_table(table, keys):
    # Scan every row and key for each lookup: O(rows * cols) per key.
    out = []
    for key in keys:
        found = False
        for row in table:
            for v in row:
                if v == key:
                    found = True
                    break
            if found:
                break
        out.append(found)
    return out


def kth_smallest_gap(samples, k):
    # Binary search as well, but count pairs by checking every pair: O(n^2 log W).
    lo, hi = 0, max(samples) - min(samples)
    n = len(samples)
    while lo < hi:
        mid = (lo + hi) // 2
        count = sum(1 for i in range(n) for j in range(i + 1, n) if abs(samples[i] - samples[j]) <= mid)
        if count >= k:
            hi = mid
        else:
            lo = mid + 1
    return lo


def sum_of_window_floors(samples):
    # Every start, extended with a running minimum: O(n^2).
    return sum(low for _, low in window_minimums(samples)) % 1_000_000_007


def schedule_length(jobs, gap):
    # Simulate tick by tick, picking the ready kind with most jobs left: O(ticks * kinds).
    from collections import Counter
    left = Counter(jobs)
    ready_at = {kind: 0 for kind in left}
    tick = 0
    while left:
        ready = [k for k in left if ready_at[k] <= tick]
        if ready:
            kind = max(ready, key=lambda k: left[k])
            left[kind] -= 1
            if left[kind] == 0:
                del left[kind]
            ready_at[kind] = tick + gap + 1
        tick += 1
    return tick


def relay_loop_start(power, cost):
    # Simulate the loop from every start: O(n^2).
    n = len(power)
    for start in range(n):
        balance = 0
        for step in range(n):
            i = (start + step) % n
            balance += power[i] - cost[i]
            if balance < 0:
                break
        else:
            return start
    return -1


BRUTE = {
    "count_opcode_splits": count_opcode_splits,
    "longest_common_block": longest_common_block,
    "trading_with_cooldown": profit_with_cooldown,
    "count_hidden_signatures": count_hidden_copies,
    "find_in_rotated_ring": find_in_rotated,
    "lookup_sorted_table": in_sorted_table,
    "kth_smallest_latency_gap": kth_smallest_gap,
    "sum_of_window_floors": sum_of_window_floors,
    "cooldown_schedule_length": schedule_length,
    "relay_loop_start": relay_loop_start,
}
