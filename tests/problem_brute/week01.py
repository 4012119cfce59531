"""Correct but wrong-complexity solutions for week 1's problems: each must fail its large input.

Each one passes the visible examples and is quadratic (or O(N k)) where the reference is linear
(or O(N log k)); tests check that the large input's time limit stops it.
"""

from __future__ import annotations

from netsprint.course.problems.structures import ListNode, list_values


def _detach_last(head):
    """Unlink the last node of a list of at least one node: (remaining head, last node). O(n)."""
    if head.next is None:
        return None, head
    before = head
    while before.next.next is not None:
        before = before.next
    last, before.next = before.next, None
    return head, last


def reverse_packet_chain(head):
    # O(n^2): walk to the tail again for every node moved.
    new_head = tail = None
    while head is not None:
        head, last = _detach_last(head)
        if new_head is None:
            new_head = tail = last
        else:
            tail.next = last
            tail = last
    return new_head


def drop_repeated_readings(head):
    # O(n^2): look every value up in the kept prefix instead of comparing neighbours.
    dummy = tail = ListNode()
    node = head
    while node is not None:
        following = node.next
        kept, present = dummy.next, False
        while kept is not None:
            if kept.val == node.val:
                present = True
                break
            kept = kept.next
        if not present:
            tail.next = node
            tail = node
            node.next = None
        node = following
    return dummy.next


def merge_capture_streams(heads):
    # O(N k): scan every head for the minimum at each step.
    heads = list(heads)
    dummy = tail = ListNode()
    while True:
        best = -1
        for i, node in enumerate(heads):
            if node is not None and (best < 0 or node.val < heads[best].val):
                best = i
        if best < 0:
            break
        node = heads[best]
        heads[best] = node.next
        tail.next = node
        tail = node
    tail.next = None
    return dummy.next


def weave_from_both_ends(head):
    # O(n^2): detach the current tail and insert it after each front node.
    node = head
    while node is not None and node.next is not None and node.next.next is not None:
        rest, last = _detach_last(node.next)
        node.next = last
        last.next = rest
        node = rest
    return head


def rotate_ring_right(head, k):
    # O(n * (k mod n)): one single-step rotation (walk to the tail) at a time.
    if head is None:
        return None
    for _ in range(k % len(list_values(head))):
        rest, last = _detach_last(head)
        if rest is not None:
            last.next = rest
        head = last
    return head


def cycle_start_position(head):
    # O(n^2): a list of visited nodes searched by identity.
    seen = []
    node = head
    while node is not None:
        for position, earlier in enumerate(seen):
            if earlier is node:
                return position
        seen.append(node)
        node = node.next
    return -1


BRUTE = {
    "reverse_packet_chain": reverse_packet_chain,
    "drop_repeated_readings": drop_repeated_readings,
    "merge_capture_streams": merge_capture_streams,
    "weave_from_both_ends": weave_from_both_ends,
    "rotate_ring_right": rotate_ring_right,
    "cycle_start_position": cycle_start_position,
}
