"""Autograde one notebook in a prepared temporary course (run as a child process).

`python -m netsprint.course.autograde_worker COURSE WEEK NOTEBOOK [--cell-timeout S]
[--gradebook DB]` (grading passes each notebook its own copy of the gradebook)

The grader runs each notebook in its own process so that a notebook that hangs its kernel
can be stopped from outside without losing the other notebooks' grades.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netsprint.course.nbconfig import LEARNER, course_config, sqlite_url
from netsprint.course.timeouts import cell_timeout as requested_or_default
from netsprint.course.workspace import ensure_venv_on_path, run_converter
from netsprint.errors import CourseError


def autograde(course_dir: Path, week: str, notebook_id: str, cell_timeout: int | None,
              gradebook: Path | None = None) -> None:
    from nbgrader.converters import Autograde

    config = course_config(course_dir)
    if gradebook:
        config.CourseDirectory.db_url = sqlite_url(gradebook)
    if cell_timeout:
        # A cap on every cell's limit (tests use it to see a hung cell reported quickly).
        config.Execute.timeout_func = lambda cell: min(requested_or_default(cell), cell_timeout)
    run_converter(Autograde, course_dir, f"grading {week}/{notebook_id}.ipynb", config,
                  assignment_id=week, student_id=LEARNER, notebook_id=notebook_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("course_dir", type=Path)
    parser.add_argument("week")
    parser.add_argument("notebook_id")
    parser.add_argument("--cell-timeout", type=int, default=None)
    parser.add_argument("--gradebook", type=Path, default=None,
                        help="this notebook's own copy of the gradebook")
    args = parser.parse_args(argv)
    ensure_venv_on_path()
    try:
        autograde(args.course_dir, args.week, args.notebook_id, args.cell_timeout,
                  args.gradebook)
    except CourseError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
