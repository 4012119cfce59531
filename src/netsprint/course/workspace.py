"""A throwaway nbgrader course directory, laid out like the checkout.

Releasing and grading both run nbgrader in one of these so nbgrader's `--force` deletions and
its gradebook never touch the learner's files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from netsprint.course.nbconfig import LEARNER, RELEASE, SOURCE, course_config
from netsprint.course.paths import CourseRoot
from netsprint.errors import CourseError

IGNORED = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc")


def ensure_venv_on_path() -> None:
    """nbgrader runs `alembic` (and kernels) from PATH: make this interpreter's bin dir first,
    so `.venv/bin/netsprint` works without activating the venv."""
    bindir = os.path.dirname(sys.executable)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


@contextlib.contextmanager
def temporary_course(course: CourseRoot, weeks: list[str]) -> Iterator[Path]:
    ensure_venv_on_path()
    with tempfile.TemporaryDirectory(prefix="netsprint-course-") as tmp:
        root = Path(tmp)
        for week in weeks:
            source = course.solutions / week
            if not source.is_dir():
                raise CourseError(f"no {source}: the weeks with material are {course.weeks()}")
            shutil.copytree(source, root / SOURCE / week, ignore=IGNORED)
        (root / ".netsprint").mkdir()
        yield root


def run_converter(converter, root: Path, what: str, config=None, **coursedir_ids) -> None:
    """Run an nbgrader converter (GenerateAssignment, Autograde) on the temporary course.

    `coursedir_ids` picks what it works on: assignment_id, student_id, notebook_id.
    """
    from nbgrader.coursedir import CourseDirectory

    config = config or course_config(root)
    coursedir = CourseDirectory(config=config)
    for name, value in coursedir_ids.items():
        setattr(coursedir, name, value)
    app = converter(coursedir=coursedir, config=config)
    app.force = True  # redo the work even if an earlier run left output behind
    run_quietly(app, what)


def generate_release(root: Path, week: str) -> Path:
    """nbgrader generate_assignment for one week; returns the release folder."""
    from nbgrader.converters import GenerateAssignment

    run_converter(GenerateAssignment, root, f"generating the release of {week}",
                  assignment_id=week)
    return root / RELEASE / week


def submission_dir(root: Path, week: str) -> Path:
    return root / "submitted" / LEARNER / week


def run_quietly(app, what: str) -> None:
    """Run an nbgrader converter, turning its failure into a CourseError with its log."""
    from nbgrader.converters.base import NbGraderException

    records: list[str] = []
    handler = _ListHandler(records)
    app.log.addHandler(handler)
    app.log.propagate = False
    try:
        app.start()
    except NbGraderException as exc:
        detail = "\n".join(records[-15:]) or str(exc)
        raise CourseError(f"nbgrader failed {what}:\n{detail}") from exc
    finally:
        app.log.removeHandler(handler)


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))
