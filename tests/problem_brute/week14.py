"""Brute forces for week 14's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week14/problems.ipynb)."""

from __future__ import annotations


def brackets_to_add(stream):
    # O(n^2): deletes one matched "()" at a time, rescanning from the start each time.
    chars = list(stream)
    i = 0
    while i + 1 < len(chars):
        if chars[i] == "(" and chars[i + 1] == ")":
            del chars[i:i + 2]
            i = 0
        else:
            i += 1
    return len(chars)


def wait_for_higher(loads):
    # O(n^2): scans forward from every minute.
    waits = []
    for i, load in enumerate(loads):
        wait = 0
        for j in range(i + 1, len(loads)):
            if loads[j] > load:
                wait = j - i
                break
        waits.append(wait)
    return waits


def surviving_bursts(bursts):
    # O(n^2): resolves the leftmost collision, then rescans from the start.
    bus = list(bursts)
    i = 0
    while i + 1 < len(bus):
        if bus[i] > 0 and bus[i + 1] < 0:
            if bus[i] < -bus[i + 1]:
                del bus[i]
            elif bus[i] > -bus[i + 1]:
                del bus[i + 1]
            else:
                del bus[i:i + 2]
            i = 0
        else:
            i += 1
    return bus


def fewest_relays(reach):
    # O(n * reach): relaxes every jump from every station.
    inf = float("inf")
    best = [0] + [inf] * (len(reach) - 1)
    for i, r in enumerate(reach):
        if best[i] == inf:
            continue
        for j in range(i + 1, min(i + r, len(reach) - 1) + 1):
            best[j] = min(best[j], best[i] + 1)
    return -1 if best[-1] == inf else best[-1]


def grow_capital(k, capital, projects):
    # O(k x n): scans every project for the best affordable one in each round.
    done = [False] * len(projects)
    for _ in range(k):
        best = -1
        for i, (cost, profit) in enumerate(projects):
            if not done[i] and cost <= capital and (best < 0 or profit > projects[best][1]):
                best = i
        if best < 0:
            break
        done[best] = True
        capital += projects[best][1]
    return capital


def merge_cost(sizes):
    # O(n^2): finds the two smallest segments by scanning the whole list each time.
    pool = list(sizes)
    total = 0
    while len(pool) > 1:
        a = min(pool)
        pool.remove(a)
        b = min(pool)
        pool.remove(b)
        total += a + b
        pool.append(a + b)
    return total


BRUTE = {
    "brackets_to_add": brackets_to_add,
    "wait_for_higher": wait_for_higher,
    "surviving_bursts": surviving_bursts,
    "fewest_relays": fewest_relays,
    "grow_capital": grow_capital,
    "merge_cost": merge_cost,
}
