"""The one nbgrader configuration of the workbook.

`nbgrader_config.py` at the checkout's top applies it for Jupyter's nbgrader panels; `release`
and `grade` apply it to a temporary course directory laid out the same way, so the panels,
the CLI and the tests all grade with the same rules.
"""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from netsprint.course.timeouts import DEFAULT_CELL_TIMEOUT, cell_timeout

COURSE_ID = "netsprint"
SOURCE = "solutions"
RELEASE = "notebooks"
LEARNER = "learner"


def gradebook_path(root: Path) -> Path:
    """nbgrader's database for the course at `root` (the panels', or a temporary course's)."""
    return root / ".netsprint" / "gradebook.db"


def sqlite_url(database: Path) -> str:
    """The SQLAlchemy URL nbgrader's `db_url` takes for an SQLite file."""
    return f"sqlite:///{database}"


def configure(c: Config, root: Path) -> Config:
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.source_directory = SOURCE
    c.CourseDirectory.release_directory = RELEASE
    c.CourseDirectory.db_url = sqlite_url(gradebook_path(root))
    c.Exchange.root = str(root / ".netsprint" / "exchange")
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

    c.Execute.timeout = DEFAULT_CELL_TIMEOUT
    c.Execute.timeout_func = cell_timeout
    c.Execute.interrupt_on_timeout = True

    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute

    from netsprint.course.preprocessors import StderrIsNotFailure

    # nbgrader's own list with one addition right after execution: warnings that clang, bcc
    # or a library print on stderr must not zero a passing test cell.
    steps = list(Autograde.class_traits()["autograde_preprocessors"].default())
    steps.insert(steps.index(Execute) + 1, StderrIsNotFailure)
    c.Autograde.autograde_preprocessors = steps
    return c


def course_config(root: Path) -> Config:
    return configure(Config(), root)
