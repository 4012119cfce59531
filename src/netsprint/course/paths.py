"""Where the workbook's parts live on disk.

The course root is the checkout that holds `nbgrader_config.py`; learner state (grades,
start date) lives in its git-ignored `.netsprint/` folder, never in `notebooks/`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netsprint.errors import CourseError

GRADES_VERSION = 1  # the format of .netsprint/grades.json
WEEK_PATTERN = re.compile(r"^week(\d\d)$")
ROOT_ENV = "NETSPRINT_ROOT"  # set by the grader for the notebooks it runs


def week_name(number: int) -> str:
    return f"week{number:02d}"


def week_number(name: str) -> int:
    match = WEEK_PATTERN.match(name)
    if not match or int(match.group(1)) > 26:
        raise CourseError(f"{name!r} is not a week: use week00 .. week26")
    return int(match.group(1))


@dataclass(frozen=True)
class CourseRoot:
    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> "CourseRoot":
        """The checkout at or above `start` (default: the current directory). Without
        `start`, $NETSPRINT_ROOT wins: the grader sets it, because a notebook being graded
        runs in a temporary copy, where a cell asking for the learner's progress would
        find no workbook."""
        pinned = os.environ.get(ROOT_ENV)
        if start is None and pinned:
            return cls._at(Path(pinned), f"${ROOT_ENV}={pinned}")
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
                return cls(folder)
        raise CourseError(
            f"no workbook found at or above {here}: run this inside the netsprint checkout "
            "or pass --root"
        )

    @classmethod
    def _at(cls, folder: Path, named_by: str) -> "CourseRoot":
        if (folder / "nbgrader_config.py").is_file() and (folder / "solutions").is_dir():
            return cls(folder.resolve())
        raise CourseError(f"{named_by} is not a netsprint checkout (no nbgrader_config.py "
                          "and solutions/ there)")

    @property
    def solutions(self) -> Path:
        return self.root / "solutions"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def state_dir(self) -> Path:
        return self.root / ".netsprint"

    @property
    def grades_file(self) -> Path:
        return self.state_dir / "grades.json"

    @property
    def settings_file(self) -> Path:
        return self.state_dir / "settings.json"

    def weeks(self) -> list[str]:
        """Week folders present in solutions/, in order."""
        return sorted(p.name for p in self.solutions.iterdir()
                      if p.is_dir() and WEEK_PATTERN.match(p.name))

    def select_weeks(self, weeks: list[str]) -> list[str]:
        """The weeks a command asked for, checked, sorted and once each; none means all."""
        for week in weeks:
            week_number(week)
        return sorted(set(weeks)) if weeks else self.weeks()


def read_json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CourseError(f"{path} is not valid JSON ({exc}); move it aside and retry") from exc


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a crash mid-write must not lose the learner's grades."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
