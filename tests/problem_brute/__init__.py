"""Brute-force solutions of the problem bank, and the in-process judge that runs them.

`weekNN.py` holds `BRUTE = {"<id>": callable}`: a correct solution of the wrong complexity
for every problem with `large_input: true`. `judge_problem` runs one problem the way the
grader would, without nbgrader or a kernel: the notebook's setup cells, then the reference
answer cell and the whole grade cell (must pass), then the brute force in place of the
function: the visible examples (must pass) and the whole cell (must stop with
`TimeLimitExceeded`). It runs in a worker process's main thread, where `within()`'s SIGPROF
can be delivered. The helpers at the end are the slow steps several brute forces share.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import traceback
from pathlib import Path
from typing import Any, Callable

import nbformat

from netsprint.course.problems.judge import TimeLimitExceeded
from netsprint.course.problems.structures import list_values

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"


def brute_forces(week: int) -> dict[str, Callable[..., Any]]:
    """`tests/problem_brute/weekNN.py`'s BRUTE ({} when the file does not exist)."""
    try:
        module = importlib.import_module(f"problem_brute.week{week:02d}")
    except ModuleNotFoundError as exc:
        if exc.name != f"problem_brute.week{week:02d}":
            raise
        return {}
    return dict(module.BRUTE)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def setup_cells(nb) -> list:
    """Code cells that are neither answers nor tests (imports, shared helpers)."""
    return [c for c in nb.cells if c.cell_type == "code"
            and not nbgrader_meta(c).get("solution") and not nbgrader_meta(c).get("grade")]


def cell_by_id(nb, cell_id: str):
    return next((c for c in nb.cells if c.get("id") == cell_id), None)


def grade_cell(nb, grade_id: str):
    return next((c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id), None)


def visible_part(source: str) -> str:
    """The grade cell as the learner sees it: everything before the hidden tests."""
    return source.split(HIDDEN_BEGIN, 1)[0]


def hidden_part(source: str) -> str:
    if HIDDEN_BEGIN not in source:
        return ""
    return source.split(HIDDEN_BEGIN, 1)[1].split(HIDDEN_END, 1)[0]


def _run(source: str, namespace: dict, label: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(source, label, "exec"), namespace)  # noqa: S102 - the notebook's own code


def _fresh(nb, where: str, replaced: dict | None = None) -> dict:
    """A namespace after the notebook's setup cells, with `replaced` names put in after."""
    namespace: dict = {"__name__": "__main__"}
    for cell in setup_cells(nb):
        _run(cell.source, namespace, f"{where}:{cell.get('id')}")
    namespace.update(replaced or {})  # in place: setup functions see it as a global
    return namespace


def _error(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc} (line {last.lineno} of {last.filename})"


def judge_problem(notebook: str, problem_id: str, function: str, large_input: bool,
                  week: int) -> list[str]:
    """Every way problem `problem_id` fails the bank's rules ([]: it passes)."""
    nb = nbformat.read(notebook, as_version=4)
    where = f"week{week:02d}/{Path(notebook).name}"
    answer = cell_by_id(nb, f"{problem_id}-answer")
    test = grade_cell(nb, f"problem_{problem_id}")
    if answer is None or test is None:
        return [f"{problem_id}: no {problem_id}-answer cell or problem_{problem_id} grade cell"]
    failures = []
    try:
        namespace = _fresh(nb, where)
        _run(answer.source, namespace, f"{where}:{problem_id}-answer")
        _run(test.source, namespace, f"{where}:problem_{problem_id}")
    except BaseException as exc:  # the report names it; one problem must not stop the others
        failures.append(f"{problem_id}: the reference solution fails: {_error(exc)}")
    if not large_input:
        return failures
    brute = brute_forces(week).get(problem_id)
    if brute is None:
        return failures + [f"{problem_id}: large_input but no BRUTE entry in "
                           f"tests/problem_brute/week{week:02d}.py"]
    return failures + _judge_brute(nb, where, problem_id, function, brute, test.source)


def _judge_brute(nb, where: str, problem_id: str, function: str, brute, source: str) -> list[str]:
    label = f"{where}:problem_{problem_id} (brute force)"
    try:
        _run(visible_part(source), _fresh(nb, where, {function: brute}), label)
    except BaseException as exc:
        return [f"{problem_id}: the brute force fails the visible examples: {_error(exc)}"]
    try:
        _run(source, _fresh(nb, where, {function: brute}), label)
    except TimeLimitExceeded:
        return []
    except BaseException as exc:
        return [f"{problem_id}: the brute force should hit the time limit, got {_error(exc)}"]
    return [f"{problem_id}: the brute force passed the hidden tests: the large input does not "
            "separate the complexities"]


# --------------------------------------------------------------------------- shared slow steps


def node_at(head, index):
    """The node `index` steps after `head`, walked to from `head`: O(index)."""
    for _ in range(index):
        head = head.next
    return head


def twin_pairs(head):
    """(node i, node n-1-i) for i < n // 2, each far node walked to from the head: O(n^2)."""
    n, near = len(list_values(head)), head
    for i in range(n // 2):
        yield near, node_at(head, n - 1 - i)
        near = near.next


def tree_parents(root):
    """Every node's parent (None for the root) and the nodes, parents before children."""
    parent, order = {root: None}, [root]
    for node in order:
        for child in (node.left, node.right):
            if child is not None:
                parent[child] = node
                order.append(child)
    return parent, order


def grid_area(grid, r, c):
    """The cells 4-connected to (r, c) that hold the same symbol as grid[r][c], as a set."""
    rows, cols, mark = len(grid), len(grid[0]), grid[r][c]
    area, stack = {(r, c)}, [(r, c)]
    while stack:
        y, x = stack.pop()
        for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
            if 0 <= ny < rows and 0 <= nx < cols and grid[ny][nx] == mark and (ny, nx) not in area:
                area.add((ny, nx))
                stack.append((ny, nx))
    return area


def window_minimums(values):
    """(length, minimum) of every window values[i..j], the minimum carried as j grows: O(n^2)."""
    for start in range(len(values)):
        low = values[start]
        for end in range(start, len(values)):
            low = min(low, values[end])
            yield end - start + 1, low
