"""Per-cell execution timeouts for nbgrader (nbclient's `timeout_func`).

A cell asks for more time with a comment in its first five lines:
`# netsprint: timeout=120`. Everything else gets the default, so an infinite loop in a
learner's cell is interrupted after a minute instead of hanging grading.
"""

from __future__ import annotations

import re

# Most cells run in milliseconds; graded cells that start servers, drive 1,000 clients or load
# BPF programs ask for more.
DEFAULT_CELL_TIMEOUT = 60
_MARK = re.compile(r"^#\s*netsprint:\s*timeout\s*=\s*(\d+)\s*$", re.MULTILINE)
MAX_CELL_TIMEOUT = 600


def requested_timeout(source: str | list[str]) -> int | None:
    if isinstance(source, list):  # raw .ipynb JSON may store source as a list of lines
        source = "".join(source)
    head = "\n".join(source.splitlines()[:5])
    match = _MARK.search(head)
    return min(int(match.group(1)), MAX_CELL_TIMEOUT) if match else None


def cell_timeout(cell) -> int:
    return requested_timeout(cell.get("source", "")) or DEFAULT_CELL_TIMEOUT
