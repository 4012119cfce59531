"""Correct but quadratic solutions for week 9's linked-list problems (each walks the list again
for every node); each must fail its large input."""

from __future__ import annotations

from problem_brute import twin_pairs

from netsprint.course.problems.structures import ListNode


def max_twin_load(head):
    # O(n^2): walk to node n-1-i for every i.
    return max((near.val + far.val for near, far in twin_pairs(head)), default=None)


def purge_repeated_values(head):
    # O(n^2): count every value by scanning the whole list again.
    dummy = tail = ListNode()
    node = head
    while node is not None:
        following, count, other = node.next, 0, head
        while other is not None:
            count += other.val == node.val
            other = other.next
        if count == 1:
            tail.next = node
            tail = node
        node = following
    tail.next = None
    return dummy.next


def sort_packet_chain(head):
    # O(n^2): insertion into a growing sorted list.
    dummy = ListNode()
    while head is not None:
        following = head.next
        spot = dummy
        while spot.next is not None and spot.next.val <= head.val:
            spot = spot.next
        head.next, spot.next = spot.next, head
        head = following
    return dummy.next


def copy_with_backup_links(head):
    # O(n^2): find each backup's position by walking from the head.
    originals, node = [], head
    while node is not None:
        originals.append(node)
        node = node.next
    copies = [ListNode(node.val) for node in originals]
    for i, node in enumerate(originals):
        copies[i].next = copies[i + 1] if i + 1 < len(copies) else None
        target, position, walk = node.backup, 0, head
        while target is not None and walk is not target:
            walk, position = walk.next, position + 1
        copies[i].backup = None if target is None else copies[position]
    return copies[0] if copies else None


def next_louder_hop(head):
    # O(n^2): scan forward from every node.
    answers = []
    while head is not None:
        later = head.next
        while later is not None and later.val <= head.val:
            later = later.next
        answers.append(later.val if later is not None else 0)
        head = head.next
    return answers


def purge_zero_sum_runs(head):
    # O(n^2): after each entry, sum the survivors backwards looking for a zero suffix.
    survivors, node = [], head
    while node is not None:
        following = node.next
        survivors.append(node)
        total = 0
        for cut in range(len(survivors) - 1, -1, -1):
            total += survivors[cut].val
            if total == 0:
                del survivors[cut:]
                break
        node = following
    for earlier, later in zip(survivors, survivors[1:]):
        earlier.next = later
    if survivors:
        survivors[-1].next = None
    return survivors[0] if survivors else None


BRUTE = {
    "max_twin_load": max_twin_load,
    "purge_repeated_values": purge_repeated_values,
    "sort_packet_chain": sort_packet_chain,
    "copy_with_backup_links": copy_with_backup_links,
    "next_louder_hop": next_louder_hop,
    "purge_zero_sum_runs": purge_zero_sum_runs,
}
