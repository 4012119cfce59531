"""Brute forces for week 18's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week18/problems.ipynb)."""

from __future__ import annotations

from problem_brute import node_at, tree_parents

from netsprint.course.problems.structures import ListNode, TreeNode, list_values


def rebuild_tree(preorder, inorder):
    # O(n^2): finds every node's in-order position by scanning the in-order list.
    def position(value):
        for i, other in enumerate(inorder):
            if other == value:
                return i

    if not preorder:
        return None
    root = TreeNode(preorder[0])
    path = [(root, position(root.val))]
    for value in preorder[1:]:
        node, pos = TreeNode(value), position(value)
        if pos < path[-1][1]:
            path[-1][0].left = node
        else:
            parent = None
            while path and path[-1][1] < pos:
                parent = path.pop()[0]
            parent.right = node
        path.append((node, pos))
    return root


def nodes_at_distance(root, target, k):
    # O(n x height): climbs from every node to its common ancestor with the target.
    parent, order = tree_parents(root)
    depth = {root: 0}
    for node in order[1:]:
        depth[node] = depth[parent[node]] + 1
    start = next(node for node in order if node.val == target)

    def distance(a, b):
        steps = 0
        while a is not b:
            if depth[a] >= depth[b]:
                a = parent[a]
            else:
                b = parent[b]
            steps += 1
        return steps

    return sorted(node.val for node in order if distance(node, start) == k)


def _with_monitor(node):
    if node is None:
        return float("inf")
    return 1 + sum(min(_with_monitor(c), _watched(c), _open(c)) for c in (node.left, node.right))


def _watched(node):
    """Watched by a child's monitor, without one of its own."""
    if node is None:
        return 0
    kids = [c for c in (node.left, node.right) if c]
    best = float("inf")
    for chosen in kids:
        rest = sum(min(_with_monitor(c), _watched(c)) for c in kids if c is not chosen)
        best = min(best, _with_monitor(chosen) + rest)
    return best


def _open(node):
    """Not watched yet: the parent must hold a monitor."""
    if node is None:
        return 0
    return sum(_watched(c) for c in (node.left, node.right) if c)


def min_monitors(root):
    # Exponential: the three states are recomputed for every subtree, with no memo.
    if root is None:
        return 0
    return min(_with_monitor(root), _watched(root))


def swap_frame_pairs(head):
    # O(n^2): reaches the k-th node by walking from the head every time, then relinks.
    n = len(list_values(head))
    order = [node_at(head, k ^ 1) if (k ^ 1) < n else node_at(head, k) for k in range(n)]
    for a, b in zip(order, order[1:]):
        a.next = b
    if order:
        order[-1].next = None
    return order[0] if order else None


def add_digit_lists(a, b):
    # O(n^2): reaches the k-th digit from the end by walking from the head every time.
    def digit_from_end(node, n, k):
        return node_at(node, n - 1 - k).val if k < n else 0

    na, nb = len(list_values(a)), len(list_values(b))
    head, carry, k = None, 0, 0
    while k < max(na, nb) or carry:
        carry, digit = divmod(carry + digit_from_end(a, na, k) + digit_from_end(b, nb, k), 10)
        head = ListNode(digit, head)
        k += 1
    return head or ListNode(0)


def drop_blocked_nodes(head, blocked):
    # O(n x m): looks every value up in the blocked list by scanning it.
    dummy = ListNode(0, head)
    keep = dummy
    while keep.next:
        if any(b == keep.next.val for b in blocked):
            keep.next = keep.next.next
        else:
            keep = keep.next
    return dummy.next


BRUTE = {
    "rebuild_tree": rebuild_tree,
    "nodes_at_distance": nodes_at_distance,
    "min_monitors": min_monitors,
    "swap_frame_pairs": swap_frame_pairs,
    "add_digit_lists": add_digit_lists,
    "drop_blocked_nodes": drop_blocked_nodes,
}
