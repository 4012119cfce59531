"""The shapes linked-list and tree problems share, and converters to and from Python lists.

Trees use the level-order list form with None for a missing child
([1, None, 2] is a root 1 with only a right child 2), as most problem sites print them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable


@dataclass(eq=False)
class ListNode:
    val: int = 0
    next: "ListNode | None" = None

    def __repr__(self) -> str:
        return f"ListNode({list_values(self)})"


@dataclass(eq=False)
class TreeNode:
    val: int = 0
    left: "TreeNode | None" = None
    right: "TreeNode | None" = None

    def __repr__(self) -> str:
        return f"TreeNode({tree_values(self)})"


def linked_list(values: Iterable[int]) -> ListNode | None:
    head = tail = None
    for v in values:
        node = ListNode(v)
        if tail is None:
            head = tail = node
        else:
            tail.next = node
            tail = node
    return head


def list_values(head: ListNode | None, limit: int = 10_000_000) -> list[int]:
    """The values from `head` on; raises ValueError on a cycle (more than `limit` nodes)."""
    out = []
    while head is not None:
        out.append(head.val)
        if len(out) > limit:
            raise ValueError("the list does not end: it has a cycle")
        head = head.next
    return out


def tree(values: Iterable[int | None]) -> TreeNode | None:
    items = list(values)
    if not items or items[0] is None:
        return None
    root = TreeNode(items[0])
    queue, i = deque([root]), 1
    while queue and i < len(items):
        node = queue.popleft()
        for side in ("left", "right"):
            if i < len(items) and items[i] is not None:
                child = TreeNode(items[i])
                setattr(node, side, child)
                queue.append(child)
            i += 1
    return root


def tree_values(root: TreeNode | None) -> list[int | None]:
    """Level order with None for missing children, trailing Nones dropped."""
    out: list[int | None] = []
    queue = deque([root])
    while queue:
        node = queue.popleft()
        if node is None:
            out.append(None)
            continue
        out.append(node.val)
        queue.append(node.left)
        queue.append(node.right)
    while out and out[-1] is None:
        out.pop()
    return out
