"""Brute forces for week 12's problems: correct answers of the wrong complexity.

Each one passes the visible examples and must exceed the large input's time limit
(see solutions/week12/problems.ipynb)."""

from __future__ import annotations

from collections import Counter

from problem_brute import tree_parents


def _all_nodes(root):
    """Every node, iteratively (the large trees are too deep for recursion)."""
    return tree_parents(root)[1] if root is not None else []


def level_totals(root):
    # O(n * height): one full traversal per level.
    totals, depth = [], 0
    while True:
        stack, total, found = ([(root, 0)] if root else []), 0, False
        while stack:
            node, d = stack.pop()
            if d == depth:
                total += node.val
                found = True
                continue
            stack.extend((child, d + 1) for child in (node.left, node.right) if child)
        if not found:
            return totals
        totals.append(total)
        depth += 1


def column_totals(root):
    # O(n * columns): one full traversal per column.
    if root is None:
        return []
    columns = {}
    stack = [(root, 0)]
    while stack:
        node, c = stack.pop()
        columns[id(node)] = c
        stack.extend((child, c + step) for child, step in ((node.left, -1), (node.right, 1)) if child)
    totals = []
    for column in range(min(columns.values()), max(columns.values()) + 1):
        totals.append(sum(n.val for n in _all_nodes(root) if columns[id(n)] == column))
    return totals


def bst_pair_sum(root, target):
    # O(n^2): pairs every node with every other node.
    nodes = _all_nodes(root)
    for a in nodes:
        for b in nodes:
            if a is not b and a.val + b.val == target:
                return True
    return False


def common_subtree_sums(root):
    # O(n * height): recomputes every node's total by walking its whole subtree.
    counts = Counter(sum(n.val for n in _all_nodes(node)) for node in _all_nodes(root))
    if not counts:
        return []
    top = max(counts.values())
    return sorted(s for s, c in counts.items() if c == top)


def widest_ancestor_gap(root):
    # O(n x height): compares every node with each of its ancestors, found via parent links.
    if root is None:
        return 0
    parent, order = tree_parents(root)
    best = 0
    for node in order:
        up = parent[node]
        while up is not None:
            best = max(best, abs(up.val - node.val))
            up = parent[up]
    return best


def _down_gain(node):
    """Best downward path sum from `node`, by walking its whole subtree."""
    best, stack = node.val, [(node, 0)]
    while stack:
        n, above = stack.pop()
        here = above + n.val
        best = max(best, here)
        stack.extend((c, here) for c in (n.left, n.right) if c)
    return best


def best_route_value(root):
    # O(n * height): every node recomputes its children's gains from scratch.
    best = root.val
    for node in _all_nodes(root):
        left = max(_down_gain(node.left), 0) if node.left else 0
        right = max(_down_gain(node.right), 0) if node.right else 0
        best = max(best, node.val + left + right)
    return best


BRUTE = {
    "level_totals": level_totals,
    "column_totals": column_totals,
    "bst_pair_sum": bst_pair_sum,
    "common_subtree_sums": common_subtree_sums,
    "widest_ancestor_gap": widest_ancestor_gap,
    "best_route_value": best_route_value,
}
