"""Brute forces for week 10's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week10/problems.ipynb)."""

from __future__ import annotations


def can_print_banner(banner, glyphs):
    # O(len(banner) x len(glyphs)): looks for an unused glyph by scanning the bag each time.
    used = [False] * len(glyphs)
    for ch in banner:
        for i, glyph in enumerate(glyphs):
            if not used[i] and glyph == ch:
                used[i] = True
                break
        else:
            return False
    return True


def count_on_schedule_pairs(ticks):
    # O(n^2): checks every pair.
    return sum(1 for i in range(len(ticks)) for j in range(i + 1, len(ticks))
               if ticks[j] - ticks[i] == j - i)


def score_code_guess(code, guess):
    # O(n^2): pairs each misplaced guess symbol with an unused code symbol by scanning.
    exact = sum(c == g for c, g in zip(code, guess))
    pool = [c for c, g in zip(code, guess) if c != g]
    used = [False] * len(pool)
    misplaced = 0
    for c, g in zip(code, guess):
        if c == g:
            continue
        for i, symbol in enumerate(pool):
            if not used[i] and symbol == g:
                used[i] = True
                misplaced += 1
                break
    return (exact, misplaced)


def _same_shape(a, b):
    if len(a) != len(b):
        return False
    forward, backward = {}, {}
    for x, y in zip(a, b):
        if forward.setdefault(x, y) != y or backward.setdefault(y, x) != x:
            return False
    return True


def group_by_shape(labels):
    # O(n * groups): compares each label with every existing group's first label.
    groups = []
    for label in labels:
        for group in groups:
            if _same_shape(group[0], label):
                group.append(label)
                break
        else:
            groups.append([label])
    return groups


def count_divisible_pairs(sizes, k):
    # O(n^2): every pair.
    pairs = 0
    for i in range(len(sizes)):
        for j in range(i + 1, len(sizes)):
            if (sizes[i] + sizes[j]) % k == 0:
                pairs += 1
    return pairs


def longest_healthy_stretch(probes):
    # O(n^2): every start, every end.
    best = 0
    for start in range(len(probes)):
        balance = 0
        for end in range(start, len(probes)):
            balance += 1 if probes[end] == "U" else -1
            if balance > 0:
                best = max(best, end - start + 1)
    return best


BRUTE = {
    "can_print_banner": can_print_banner,
    "count_on_schedule_pairs": count_on_schedule_pairs,
    "score_code_guess": score_code_guess,
    "group_by_shape": group_by_shape,
    "count_divisible_pairs": count_divisible_pairs,
    "longest_healthy_stretch": longest_healthy_stretch,
}
