"""Brute forces for week 20's problems: correct, but one complexity class too slow.

Each passes the visible examples and must run out of time on the large input
(see solutions/week20/problems.ipynb)."""

from __future__ import annotations

from problem_brute import node_at, twin_pairs

from netsprint.course.problems.structures import ListNode, list_values


class RouteCache:
    def __init__(self, capacity):
        self.capacity = capacity
        self.entries = []  # [dest, hop], least recent first: every call scans it

    def _find(self, dest):
        for i, entry in enumerate(self.entries):
            if entry[0] == dest:
                return i
        return -1

    def lookup(self, dest):
        i = self._find(dest)
        if i < 0:
            return -1
        entry = self.entries.pop(i)
        self.entries.append(entry)
        return entry[1]

    def learn(self, dest, hop):
        i = self._find(dest)
        if i >= 0:
            self.entries.pop(i)
        elif len(self.entries) == self.capacity:
            self.entries.pop(0)
        self.entries.append([dest, hop])


class FlowCache:
    def __init__(self, capacity):
        self.capacity = capacity
        self.entries = {}  # flow -> [value, count, last use]: eviction scans them all
        self.clock = 0

    def _use(self, flow):
        self.clock += 1
        entry = self.entries[flow]
        entry[1] += 1
        entry[2] = self.clock

    def get(self, flow):
        if flow not in self.entries:
            return -1
        self._use(flow)
        return self.entries[flow][0]

    def put(self, flow, value):
        if self.capacity == 0:
            return
        if flow in self.entries:
            self.entries[flow][0] = value
            self._use(flow)
            return
        if len(self.entries) == self.capacity:
            victim = None
            for f, (_, count, last) in self.entries.items():
                if victim is None or (count, last) < victim[0]:
                    victim = ((count, last), f)
            del self.entries[victim[1]]
        self.clock += 1
        self.entries[flow] = [value, 1, self.clock]


class TimerQueue:
    def __init__(self):
        self.pending = {}  # id -> deadline: expire scans every pending timer

    def add(self, timer_id, deadline):
        self.pending[timer_id] = deadline

    def cancel(self, timer_id):
        return self.pending.pop(timer_id, None) is not None

    def expire(self, now):
        due = sorted((d, i) for i, d in self.pending.items() if d <= now)
        for _, i in due:
            del self.pending[i]
        return [i for _, i in due]

    def __len__(self):
        return len(self.pending)


class CommandTrie:
    def __init__(self):
        self.words = []  # every query scans every stored word

    def add(self, word):
        self.words.append(word)

    def remove(self, word):
        if word in self.words:
            self.words.remove(word)
            return True
        return False

    def count_prefix(self, prefix):
        return sum(1 for w in self.words if w.startswith(prefix))

    def longest_match(self, text):
        best = ""
        for w in self.words:
            if text.startswith(w) and len(w) > len(best):
                best = w
        return best


def partition_queue(head, cut):
    # Append each node to its group by walking to the group's tail: O(n^2).
    groups = [ListNode(0), ListNode(0)]
    node = head
    while node is not None:
        nxt = node.next
        node.next = None
        tail = groups[node.val >= cut]
        while tail.next is not None:
            tail = tail.next
        tail.next = node
        node = nxt
    tail = groups[0]
    while tail.next is not None:
        tail = tail.next
    tail.next = groups[1].next
    return groups[0].next


def merge_point(a, b):
    # For every node of a, search b for the same object: O(n * m).
    node = a
    while node is not None:
        other = b
        while other is not None:
            if other is node:
                return node
            other = other.next
        node = node.next
    return None


def is_mirrored(head):
    # Walk to the k-th node from the end for every k: O(n^2).
    return all(near.val == far.val for near, far in twin_pairs(head))


def reverse_blocks(head, k):
    # Find the start of each block by walking from the head again: O(n^2 / k).
    dummy = ListNode(0, head)
    for block in range(len(list_values(head)) // k):
        before = node_at(dummy, block * k)
        first = before.next
        for _ in range(k - 1):      # move the node after `first` to the block's front
            moved = first.next
            first.next = moved.next
            moved.next = before.next
            before.next = moved
    return dummy.next


BRUTE = {
    "route_cache_lru": RouteCache,
    "flow_cache_lfu": FlowCache,
    "timer_queue_heap": TimerQueue,
    "command_trie": CommandTrie,
    "partition_send_queue": partition_queue,
    "shared_tail_node": merge_point,
    "mirrored_frame_chain": is_mirrored,
    "reverse_in_blocks": reverse_blocks,
}
