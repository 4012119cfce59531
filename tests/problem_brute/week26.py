"""Brute forces for week 26's problems: correct, but one complexity class too slow.

Each passes the visible examples and must run out of time on the large input
(see solutions/week26/problems.ipynb)."""

from __future__ import annotations

from netsprint.course.problems.structures import TreeNode


def odd_even_positions(head):
    # Append each even-position node to a second chain by walking to its tail: O(n^2).
    if head is None:
        return None
    even_head = None
    odd = head
    while odd is not None and odd.next is not None:
        moved = odd.next
        odd.next = moved.next
        moved.next = None
        if even_head is None:
            even_head = moved
        else:
            tail = even_head
            while tail.next is not None:
                tail = tail.next
            tail.next = moved
        if odd.next is None:
            break
        odd = odd.next
    odd.next = even_head
    return head


def first_single_flows(flows):
    # Recount from the first packet after every arrival: O(n^2).
    out, counts, order = [], {}, []
    for f in flows:
        if f not in counts:
            order.append(f)
        counts[f] = counts.get(f, 0) + 1
        out.append(next((g for g in order if counts[g] == 1), -1))
    return out


def bst_from_preorder(keys):
    # Insert each key from the root: O(n * depth), O(n^2) for a chain.
    if not keys:
        return None
    root = TreeNode(keys[0])
    for key in keys[1:]:
        node = root
        while True:
            side = "left" if key < node.val else "right"
            child = getattr(node, side)
            if child is None:
                setattr(node, side, TreeNode(key))
                break
            node = child
    return root


def almost_palindrome(label):
    # Try every single deletion: O(n^2).
    if label == label[::-1]:
        return True
    for i in range(len(label)):
        rest = label[:i] + label[i + 1:]
        if rest == rest[::-1]:
            return True
    return False


def can_open_all(keys):
    # Sweep over all racks until no new rack opens: O(n * keys) when keys point backwards.
    opened = [False] * len(keys)
    opened[0] = True
    changed = True
    while changed:
        changed = False
        for i, found in enumerate(keys):
            if opened[i]:
                for r in found:
                    if not opened[r]:
                        opened[r] = changed = True
    return all(opened)


def unreachable_pairs(n, links):
    # A search from every host, counting the hosts it cannot reach: O(n * (n + e)).
    adjacent = [[] for _ in range(n)]
    for u, v in links:
        adjacent[u].append(v)
        adjacent[v].append(u)
    missing = 0
    for start in range(n):
        seen, stack = {start}, [start]
        while stack:
            for v in adjacent[stack.pop()]:
                if v not in seen:
                    seen.add(v)
                    stack.append(v)
        missing += n - len(seen)
    return missing // 2


def first_nesting_error(text):
    # For each closer, search left for the nearest unmatched opener: O(n^2) when deep.
    pairs = {")": "(", "]": "[", "}": "{"}
    matched = [False] * len(text)
    for i, ch in enumerate(text):
        if ch in pairs:
            j = i - 1
            while j >= 0 and (matched[j] or text[j] not in "([{"):
                j -= 1
            if j < 0 or text[j] != pairs[ch]:
                return i
            matched[i] = matched[j] = True
    for i, ch in enumerate(text):
        if ch in "([{" and not matched[i]:
            return i
    return -1


def drop_digits(ticket, k):
    # Delete one digit at a time: the first one followed by a smaller digit (else the last),
    # rescanning from the start after every deletion: O(n * k).
    digits = list(ticket)
    for _ in range(k):
        i = 0
        while i + 1 < len(digits) and digits[i] <= digits[i + 1]:
            i += 1
        del digits[i]
    return "".join(digits).lstrip("0") or "0"


def most_jobs(jobs):
    # least[k] = least total time of k on-time jobs among those seen (deadline order): O(n^2).
    inf = float("inf")
    least = [0]
    for duration, deadline in sorted(jobs, key=lambda job: job[1]):
        least.append(inf)
        for k in range(len(least) - 1, 0, -1):
            if least[k - 1] + duration <= deadline:
                least[k] = min(least[k], least[k - 1] + duration)
    return max(k for k, t in enumerate(least) if t < inf)


class LatencyMedian:
    def __init__(self):
        self.samples = []  # sorted again for every median

    def add(self, sample):
        self.samples.append(sample)

    def median(self):
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        k = len(ordered)
        return float(ordered[k // 2]) if k % 2 else (ordered[k // 2 - 1] + ordered[k // 2]) / 2


class SnapshotTable:
    def __init__(self, size):
        self.log = []  # every set as (snapshot id, index, value); get scans it backwards
        self.snap_id = 0

    def set(self, index, value):
        self.log.append((self.snap_id, index, value))

    def snap(self):
        self.snap_id += 1
        return self.snap_id - 1

    def get(self, index, snap_id):
        for s, i, v in reversed(self.log):
            if i == index and s <= snap_id:
                return v
        return 0


def most_at_one_speed(speeds, k):
    # O(n^2): for every target speed, walk down the slower links until k runs out.
    ordered, best = sorted(speeds), 0
    for i, top in enumerate(ordered):
        steps = count = 0
        for j in range(i, -1, -1):
            steps += top - ordered[j]
            if steps > k:
                break
            count += 1
        best = max(best, count)
    return best


def count_switches(root):
    # Visit every switch: O(n) child reads.
    count, stack = 0, [root] if root is not None else []
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(c for c in (node.left, node.right) if c is not None)
    return count


def heights_after_loss(root, queries):
    # Walk the whole tree again for every query, skipping the lost subtree: O(n * q).
    answers = []
    for q in queries:
        best, stack = 0, [(root, 0)]
        while stack:
            node, depth = stack.pop()
            if node is None or node.val == q:
                continue
            best = max(best, depth)
            stack.append((node.left, depth + 1))
            stack.append((node.right, depth + 1))
        answers.append(best)
    return answers


BRUTE = {
    "odd_even_positions": odd_even_positions,
    "first_single_flow": first_single_flows,
    "count_fabric_switches": count_switches,
    "bst_from_preorder": bst_from_preorder,
    "height_after_subtree_loss": heights_after_loss,
    "most_links_at_one_speed": most_at_one_speed,
    "almost_palindrome_label": almost_palindrome,
    "unlock_all_racks": can_open_all,
    "unreachable_host_pairs": unreachable_pairs,
    "first_nesting_error": first_nesting_error,
    "smallest_after_drops": drop_digits,
    "most_jobs_by_deadline": most_jobs,
    "running_latency_median": LatencyMedian,
    "snapshot_port_table": SnapshotTable,
}
