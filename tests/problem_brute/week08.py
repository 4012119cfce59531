"""Correct but linear or quadratic solutions for week 8's binary-search problems."""

from __future__ import annotations


def count_in_time_window(stamps, windows):
    # O(n q): scan all stamps for every window.
    return [sum(1 for t in stamps if lo <= t <= hi) for lo, hi in windows]


def peak_in_probe_table(table):
    # O(n) reads: walk until the table stops rising.
    i = 0
    while i + 1 < len(table) and table[i] < table[i + 1]:
        i += 1
    return i



def slowest_safe_drain_rate(queues, ticks):
    # O(n * answer): try rates 1, 2, 3, ...
    rate = 1
    while sum((q + rate - 1) // rate for q in queues) > ticks:
        rate += 1
    return rate


def earliest_day_links_up(up_day, spans, k):
    # O(n^2): check every distinct day in order.
    if spans * k > len(up_day):
        return -1
    for day in sorted(set(up_day)):
        formed = run = 0
        for d in up_day:
            run = run + 1 if d <= day else 0
            if run == k:
                formed, run = formed + 1, 0
        if formed >= spans:
            return day
    return -1


def split_batches_min_peak(sizes, batches):
    # O(batches * n^2): best[i] = smallest peak for the first i packets in the batches so far.
    n = len(sizes)
    prefix = [0]
    for size in sizes:
        prefix.append(prefix[-1] + size)
    infinity = float("inf")
    best = [0] + [infinity] * n
    for _ in range(min(batches, n)):
        following = [0] + [infinity] * n
        for i in range(1, n + 1):
            for j in range(i):
                peak = max(best[j], prefix[i] - prefix[j])
                if peak < following[i]:
                    following[i] = peak
        best = following
    return best[n]



def lone_sequence(log):
    # O(n) reads: walk the pairs until one is broken.
    for i in range(0, len(log) - 1, 2):
        if log[i] != log[i + 1]:
            return log[i]
    return log[len(log) - 1]


BRUTE = {
    "count_in_time_window": count_in_time_window,
    "peak_in_probe_table": peak_in_probe_table,
    "lone_sequence_number": lone_sequence,
    "slowest_safe_drain_rate": slowest_safe_drain_rate,
    "earliest_day_links_up": earliest_day_links_up,
    "split_batches_min_peak": split_batches_min_peak,
}
