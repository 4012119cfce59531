"""Brute forces for week 22's problems: correct, but one complexity class too slow.

Each passes the visible examples and must run out of time on the large input
(see solutions/week22/problems.ipynb)."""

from __future__ import annotations

from problem_brute import grid_area


def total_pair_hops(root):
    # A breadth-first search from every node: O(n^2).
    from collections import deque
    neighbours, stack = {}, [root] if root else []
    while stack:
        node = stack.pop()
        neighbours.setdefault(node, [])
        for child in (node.left, node.right):
            if child:
                neighbours[node].append(child)
                neighbours.setdefault(child, []).append(node)
                stack.append(child)
    total = 0
    for source in neighbours:
        dist, queue = {source: 0}, deque([source])
        while queue:
            node = queue.popleft()
            for nxt in neighbours[node]:
                if nxt not in dist:
                    dist[nxt] = dist[node] + 1
                    queue.append(nxt)
        total += sum(dist.values())
    return total // 2


def bst_range_counts(root, queries):
    # Walk the whole tree for every query: O(n q).
    def count(node, lo, hi):
        if node is None:
            return 0
        return (lo <= node.val <= hi) + count(node.left, lo, hi) + count(node.right, lo, hi)
    return [count(root, lo, hi) for lo, hi in queries]


def common_gateways(root, pairs):
    # Search the whole tree for both paths, for every pair: O(n q).
    def path(target):
        stack = [(root, [root.val])]
        while stack:
            node, trail = stack.pop()
            if node.val == target:
                return trail
            for child in (node.left, node.right):
                if child:
                    stack.append((child, trail + [child.val]))
        return []
    out = []
    for a, b in pairs:
        pa, pb = path(a), path(b)
        common = [x for x, y in zip(pa, pb) if x == y]
        out.append(common[-1])
    return out


def close_leaf_pairs(root, d):
    # Distance of every leaf pair through their paths from the root: O(L^2 * depth).
    if root is None:
        return 0
    paths, stack = [], [(root, (root,))]
    while stack:
        node, trail = stack.pop()
        if node.left is None and node.right is None:
            paths.append(trail)
        for child in (node.left, node.right):
            if child:
                stack.append((child, trail + (child,)))
    pairs = 0
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            a, b = paths[i], paths[j]
            common = 0
            while common < min(len(a), len(b)) and a[common] is b[common]:
                common += 1
            pairs += (len(a) - common) + (len(b) - common) <= d
    return pairs


def sealed_rooms(plan):
    # Explore the whole area again from every open cell; count it once, from its first cell:
    # O(cells * area).
    rows = len(plan)
    cols = len(plan[0]) if rows else 0
    rooms = 0
    for r in range(rows):
        for c in range(cols):
            if plan[r][c] != ".":
                continue
            area = grid_area(plan, r, c)
            if min(area) == (r, c) and all(0 < y < rows - 1 and 0 < x < cols - 1 for y, x in area):
                rooms += 1
    return rooms


def safe_services(n, calls):
    # A fresh search for a reachable cycle from every service: O(n * (n + e)).
    after = [[] for _ in range(n)]
    for a, b in calls:
        after[a].append(b)
    safe = []
    for start in range(n):
        state = {}
        stack = [(start, iter(after[start]))]
        state[start] = 1
        cycle = False
        while stack and not cycle:
            v, it = stack[-1]
            for w in it:
                if state.get(w) == 1:
                    cycle = True
                    break
                if w not in state:
                    state[w] = 1
                    stack.append((w, iter(after[w])))
                    break
            else:
                state[v] = 2
                stack.pop()
        if not cycle:
            safe.append(start)
    return safe


def gateway_distances(floor):
    # One breadth-first search per gateway, keeping the minimum: O(gateways * cells).
    from collections import deque
    rows = len(floor)
    cols = len(floor[0]) if rows else 0
    best = [[-1] * cols for _ in range(rows)]
    for gr in range(rows):
        for gc in range(cols):
            if floor[gr][gc] != "G":
                continue
            dist = {(gr, gc): 0}
            queue = deque([(gr, gc)])
            while queue:
                r, c = queue.popleft()
                d = dist[(r, c)]
                if best[r][c] < 0 or d < best[r][c]:
                    best[r][c] = d
                for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if 0 <= nr < rows and 0 <= nc < cols and floor[nr][nc] != "#" and (nr, nc) not in dist:
                        dist[(nr, nc)] = d + 1
                        queue.append((nr, nc))
    return best


def route_with_breaches(grid, k):
    # Bellman-Ford style: relax every state until nothing improves, O(steps * states).
    rows, cols = len(grid), len(grid[0])
    inf = float("inf")
    dist = {(r, c, u): inf for r in range(rows) for c in range(cols) for u in range(k + 1)}
    start_used = int(grid[0][0] == "#")
    if start_used > k:
        return -1
    dist[(0, 0, start_used)] = 0
    changed = True
    while changed:
        changed = False
        for (r, c, u), d in list(dist.items()):
            if d == inf:
                continue
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < rows and 0 <= nc < cols:
                    nu = u + (grid[nr][nc] == "#")
                    if nu <= k and d + 1 < dist[(nr, nc, nu)]:
                        dist[(nr, nc, nu)] = d + 1
                        changed = True
    best = min(dist[(rows - 1, cols - 1, u)] for u in range(k + 1))
    return -1 if best == inf else best


BRUTE = {
    "total_pair_hops": total_pair_hops,
    "bst_range_counts": bst_range_counts,
    "common_gateways": common_gateways,
    "close_leaf_pairs": close_leaf_pairs,
    "sealed_rooms": sealed_rooms,
    "safe_services": safe_services,
    "gateway_distances": gateway_distances,
    "route_with_breaches": route_with_breaches,
}
