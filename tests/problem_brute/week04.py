"""Correct but slow solutions for week 4's problems: each must fail its large input.

Tree brutes cost O(n * height) (quadratic on the deep test trees); grid brutes relax or
simulate the whole grid once per step (O(cells * path length)).
"""

from __future__ import annotations

from collections import deque

from problem_brute import tree_parents


def count_unshadowed_hops(root):
    # O(n * h): walk up to the root from every node.
    if root is None:
        return 0
    parent, order = tree_parents(root)
    count = 0
    for node in order:
        above, shadowed = parent[node], False
        while above is not None:
            if above.val > node.val:
                shadowed = True
                break
            above = parent[above]
        count += not shadowed
    return count


def _depth(node, parent):
    depth = 0
    while parent[node] is not None:
        node, depth = parent[node], depth + 1
    return depth


def zigzag_levels(root):
    # O(n * h): compute each node's depth by walking up, then one full scan per level.
    if root is None:
        return []
    parent, _ = tree_parents(root)
    levels, depth = [], 0
    while True:
        values, queue = [], deque([root])
        while queue:
            node = queue.popleft()
            if _depth(node, parent) == depth:
                values.append(node.val)
            for child in (node.left, node.right):
                if child is not None:
                    queue.append(child)
        if not values:
            return levels
        levels.append(values if depth % 2 == 0 else values[::-1])
        depth += 1


def _height(node):
    """Edges from node to its deepest descendant, by a fresh traversal."""
    best, stack = 0, [(node, 0)]
    while stack:
        cur, depth = stack.pop()
        best = max(best, depth)
        for child in (cur.left, cur.right):
            if child is not None:
                stack.append((child, depth + 1))
    return best


def longest_hop_path(root):
    # O(n * h): recompute both children's heights at every node.
    if root is None:
        return 0
    _, order = tree_parents(root)
    best = 0
    for node in order:
        left = _height(node.left) + 1 if node.left is not None else 0
        right = _height(node.right) + 1 if node.right is not None else 0
        best = max(best, left + right)
    return best


def count_paths_with_total(root, target):
    # O(n * h): a fresh downward walk from every start node.
    if root is None:
        return 0
    _, order = tree_parents(root)
    found = 0
    for start in order:
        stack = [(start, start.val)]
        while stack:
            node, total = stack.pop()
            found += total == target
            for child in (node.left, node.right):
                if child is not None:
                    stack.append((child, total + child.val))
    return found


def fewest_hops_in_maze(grid):
    # O(cells * path length): relax all cells in row order until nothing changes.
    if not grid or grid[0][0] == "#" or grid[-1][-1] == "#":
        return -1
    rows, cols = len(grid), len(grid[0])
    infinity = rows * cols + 1
    dist = [[infinity] * cols for _ in range(rows)]
    dist[0][0] = 0
    changed = True
    while changed:
        changed = False
        for r in range(rows):
            for c in range(cols):
                if grid[r][c] != "." or (r, c) == (0, 0):
                    continue
                best = dist[r][c]
                for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if 0 <= nr < rows and 0 <= nc < cols and dist[nr][nc] + 1 < best:
                        best = dist[nr][nc] + 1
                if best < dist[r][c]:
                    dist[r][c], changed = best, True
    return -1 if dist[-1][-1] == infinity else dist[-1][-1]


def config_push_rounds(grid):
    # O(cells * rounds): simulate round by round over the whole grid.
    cells = [list(row) for row in grid]
    rounds = 0
    while True:
        fresh = [(r, c) for r, row in enumerate(cells) for c, slot in enumerate(row)
                 if slot == "0" and any(0 <= nr < len(cells) and 0 <= nc < len(row) and cells[nr][nc] == "1"
                                        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)))]
        if not fresh:
            break
        for r, c in fresh:
            cells[r][c] = "1"
        rounds += 1
    if any("0" in row for row in cells):
        return -1
    return rounds


BRUTE = {
    "count_unshadowed_hops": count_unshadowed_hops,
    "zigzag_levels": zigzag_levels,
    "longest_hop_path": longest_hop_path,
    "count_paths_with_total": count_paths_with_total,
    "fewest_hops_in_maze": fewest_hops_in_maze,
    "config_push_rounds": config_push_rounds,
}
