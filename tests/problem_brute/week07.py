"""Correct but slow solutions for week 7's graph problems: each must fail its large input."""

from __future__ import annotations


def count_network_segments(n, links):
    # O(n * links): quick-find, relabelling every host on each merge.
    label = list(range(n))
    for a, b in links:
        old, new = label[a], label[b]
        if old != new:
            for host in range(n):
                if label[host] == old:
                    label[host] = new
    return len(set(label))


def boot_order(n, deps):
    # O(n^2 + pairs): list every ready service at each step, then take the smallest.
    waiting = [0] * n
    after = [[] for _ in range(n)]
    for a, b in deps:
        after[a].append(b)
        waiting[b] += 1
    started, order = [False] * n, []
    for _ in range(n):
        candidates = [s for s in range(n) if not started[s] and waiting[s] == 0]
        if not candidates:
            return []
        ready = min(candidates)
        started[ready] = True
        order.append(ready)
        for later in after[ready]:
            waiting[later] -= 1
    return order


def two_vlan_split(n, links):
    # O(n * links): sweep the whole link list until the colouring stops changing.
    colour = [None] * n
    for start in range(n):
        if colour[start] is not None:
            continue
        colour[start] = 0
        changed = True
        while changed:
            changed = False
            for a, b in links:
                if colour[a] is not None and colour[a] == colour[b]:
                    return False
                if colour[a] is not None and colour[b] is None:
                    colour[b], changed = 1 - colour[a], True
                elif colour[b] is not None and colour[a] is None:
                    colour[a], changed = 1 - colour[b], True
    return True


def redundant_uplink(n, links):
    # O(n^2): for each link, search the links before it for a path between its ends.
    for index, (a, b) in enumerate(links):
        neighbours = {}
        for x, y in links[:index]:
            neighbours.setdefault(x, []).append(y)
            neighbours.setdefault(y, []).append(x)
        seen, stack = {a}, [a]
        while stack:
            for other in neighbours.get(stack.pop(), ()):
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        if b in seen:
            return (a, b)
    return None


def signal_settle_time(n, links, source):
    # O(n * links): Bellman-Ford, relaxing every link until nothing improves.
    infinity = float("inf")
    heard = [infinity] * n
    heard[source] = 0
    for _ in range(n):
        changed = False
        for u, v, delay in links:
            if heard[u] + delay < heard[v]:
                heard[v], changed = heard[u] + delay, True
        if not changed:
            break
    latest = max(heard)
    return -1 if latest == infinity else latest


def fewest_hostname_morphs(start, goal, names):
    # O(n^2 L): compare every pair of names to build the graph, then BFS.
    if start == goal:
        return 0
    approved = list(dict.fromkeys(names))
    if goal not in approved:
        return -1
    nodes = [start] + [name for name in approved if name != start]

    def one_apart(x, y):
        return sum(a != b for a, b in zip(x, y)) == 1

    neighbours = {x: [y for y in nodes if one_apart(x, y)] for x in nodes}
    distance, frontier = {start: 0}, [start]
    while frontier:
        following = []
        for name in frontier:
            for other in neighbours[name]:
                if other not in distance:
                    distance[other] = distance[name] + 1
                    following.append(other)
        frontier = following
    return distance.get(goal, -1)


BRUTE = {
    "count_network_segments": count_network_segments,
    "boot_order": boot_order,
    "two_vlan_split": two_vlan_split,
    "redundant_uplink": redundant_uplink,
    "signal_settle_time": signal_settle_time,
    "fewest_hostname_morphs": fewest_hostname_morphs,
}
