"""Correct but slow solutions for week 5's dynamic-programming problems.

Each passes the visible examples and misses the target complexity: quadratic tables where a
linear or O(n log n) pass exists, and plain exponential recursion for the edit distance.
"""

from __future__ import annotations


def best_burst_gain(deltas):
    # O(n^2): every start, every end.
    best = deltas[0] if deltas else 0
    for i in range(len(deltas)):
        total = 0
        for j in range(i, len(deltas)):
            total += deltas[j]
            best = max(best, total)
    return best


def longest_rising_trend(rtts):
    # O(n^2): the textbook table over every earlier sample.
    best = [1] * len(rtts)
    for i in range(len(rtts)):
        for j in range(i):
            if rtts[j] < rtts[i] and best[j] + 1 > best[i]:
                best[i] = best[j] + 1
    return max(best, default=0)


def fewest_frames(sizes, total):
    # O(total^2): best[a] from every split a = b + (a - b).
    unreachable = total + 1
    best = [0] + [unreachable] * total
    for amount in range(1, total + 1):
        if amount in sizes:
            best[amount] = 1
        for part in range(1, amount):
            if best[part] + best[amount - part] < best[amount]:
                best[amount] = best[part] + best[amount - part]
    return best[total] if best[total] != unreachable else -1


def config_edit_distance(a, b):
    # Exponential: three recursive branches at every step, no memo.
    if not a:
        return len(b)
    if not b:
        return len(a)
    return min(config_edit_distance(a[1:], b) + 1,
               config_edit_distance(a, b[1:]) + 1,
               config_edit_distance(a[1:], b[1:]) + (a[0] != b[0]))


def max_gain_k_trades(prices, k):
    # O(k n^2): for every day, try every earlier buy day.
    n = len(prices)
    k = min(k, n // 2)
    previous = [0] * n
    for _ in range(k):
        current = [0] * n
        for i in range(1, n):
            current[i] = current[i - 1]
            for j in range(i):
                gain = prices[i] - prices[j] + previous[j]
                if gain > current[i]:
                    current[i] = gain
        previous = current
    return previous[-1] if n else 0


def split_into_tokens(stream, tokens):
    # O(n^2): every earlier cut point for every end.
    vocabulary = set(tokens)
    ok = [True] + [False] * len(stream)
    for end in range(1, len(stream) + 1):
        for start in range(end):
            if ok[start] and stream[start:end] in vocabulary:
                ok[end] = True
                break
    return ok[-1]


BRUTE = {
    "best_burst_gain": best_burst_gain,
    "longest_rising_trend": longest_rising_trend,
    "fewest_frames": fewest_frames,
    "config_edit_distance": config_edit_distance,
    "max_gain_k_trades": max_gain_k_trades,
    "split_into_tokens": split_into_tokens,
}
