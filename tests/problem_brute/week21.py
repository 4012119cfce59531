"""Brute forces for week 21's problems: correct, but one complexity class too slow.

Each passes the visible examples and must run out of time on the large input
(see solutions/week21/problems.ipynb)."""

from __future__ import annotations

from problem_brute import window_minimums


def longest_k_port_run(ports, k):
    # Every start, extended until a (k+1)-th port appears: O(n^2).
    best = 0
    for start in range(len(ports)):
        seen = set()
        for end in range(start, len(ports)):
            seen.add(ports[end])
            if len(seen) > k:
                break
            best = max(best, end - start + 1)
    return best


def longest_stable_stretch(samples, limit):
    # Every start, extended while stable: O(n^2).
    best = 0
    for start in range(len(samples)):
        low = high = samples[start]
        for end in range(start, len(samples)):
            low, high = min(low, samples[end]), max(high, samples[end])
            if high - low > limit:
                break
            best = max(best, end - start + 1)
    return best


def frames_for_packets(sizes, mtu):
    # Largest with smallest, but the smallest unused packet is found by scanning: O(n^2).
    ordered = sorted(sizes)
    used = [False] * len(ordered)
    frames = 0
    for hi in range(len(ordered) - 1, -1, -1):
        if used[hi]:
            continue
        used[hi] = True
        frames += 1
        for lo in range(hi):
            if not used[lo]:
                if ordered[lo] + ordered[hi] <= mtu:
                    used[lo] = True
                break
    return frames


def drop_blocked_port(queue, blocked):
    # list.remove scans from the front and shifts the tail each time: O(n^2).
    kept = len(queue)
    while blocked in queue:
        queue.remove(blocked)
        kept -= 1
    return kept


def peak_concurrent_sessions(sessions):
    # The peak is reached at some start: count the sessions covering each start, O(n^2).
    return max((sum(1 for s, e in sessions if s <= t < e) for t, _ in sessions), default=0)


def largest_bandwidth_block(bars):
    # Every start, extended with a running minimum: O(n^2).
    return max((low * length for length, low in window_minimums(bars)), default=0)


def fewest_mask_writes(bits, k):
    # Apply each forced write bit by bit: O(n * k).
    bits, writes = list(bits), 0
    for i in range(len(bits)):
        if bits[i] == 0:
            if i + k > len(bits):
                return -1
            for j in range(i, i + k):
                bits[j] ^= 1
            writes += 1
    return writes


def common_windows(a, b):
    # Compare every window of a with every window of b: O(n * m).
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            if max(s1, s2) <= min(e1, e2):
                out.append([max(s1, s2), min(e1, e2)])
    return sorted(out)


BRUTE = {
    "longest_k_port_run": longest_k_port_run,
    "fewest_mask_writes": fewest_mask_writes,
    "longest_stable_stretch": longest_stable_stretch,
    "common_free_windows": common_windows,
    "frames_for_packets": frames_for_packets,
    "drop_blocked_port": drop_blocked_port,
    "peak_concurrent_sessions": peak_concurrent_sessions,
    "largest_bandwidth_block": largest_bandwidth_block,
}
