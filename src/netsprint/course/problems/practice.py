"""The mistakes queue (错题本): problems you failed come back after growing intervals.

Every grading of a problems notebook is an attempt at each of its `problem_*` cells. The rule
is spaced repetition in the style of Leitner's boxes (Leitner, *So lernt man lernen*, 1972;
the spacing effect Ebbinghaus measured in 1885): a review just before you would forget is
worth most, and each successful recall lets the next gap grow.

- **not attempted** (the cell failed with the release stub's `NotImplementedError`): nothing
  changes; an untouched problem is not a mistake.
- **failed**: the problem enters the queue (or stays in it), due tomorrow; its streak resets
  to 0 and its interval to 1 day.
- **passed while queued and due** (today >= its due date): streak + 1 and the interval
  doubles, so reviews come 1, 2, 4 (8, ...) days apart; after `PASSES_TO_CLEAR` = 3 passes
  in a row, each on a separate due date, it leaves the queue.
- **passed while queued but not yet due**: nothing changes. Recalling a solution minutes
  after writing it proves little; the gap is the point.
- **passed, not queued**: recorded as a pass; nothing to review.
- A notebook that could not be graded (an error for the whole notebook) says nothing about
  single problems and is skipped.

The core (`update`, `apply_attempts`, `todays_set`) is pure: `today` is passed in. The
history lives in `.netsprint/problems.json` (git-ignored, written atomically);
`record_attempts(course, results)` is what grading calls after recording grades.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from netsprint.course.paths import CourseRoot, read_json, week_number, write_json
from netsprint.course.problems.catalog import PROBLEM_PREFIX, Bank
from netsprint.errors import CourseError

HISTORY_VERSION = 1  # the format of .netsprint/problems.json
FIRST_INTERVAL_DAYS = 1
PASSES_TO_CLEAR = 3
STUB_MARK = "NotImplementedError"  # what the release's stubs raise: the learner has not tried

NOT_ATTEMPTED = "not attempted"
FAILED = "failed"
PASSED = "passed"
_EPS = 1e-9


@dataclass(frozen=True)
class Attempt:
    """One problem cell's outcome in one grading."""

    problem_id: str
    week: str
    notebook: str
    outcome: str
    message: str = ""


@dataclass(frozen=True)
class ProblemHistory:
    """What the queue remembers about one problem."""

    id: str
    week: str
    notebook: str
    attempts: int
    """Gradings that were a real attempt (pass or fail)."""
    failures: int
    last_outcome: str
    last_graded: date
    queued: bool
    streak: int
    """Passes in a row on due dates since the last failure."""
    interval_days: int
    due: date | None
    """The next review (None: not queued)."""
    last_failure: str = ""
    cleared: date | None = None
    """When it last left the queue."""


History = dict[str, ProblemHistory]


# --------------------------------------------------------------------------- the rule


def outcome_of(score: float, max_score: float, message: str | None) -> str:
    if max_score > 0 and score >= max_score - _EPS:
        return PASSED
    if STUB_MARK in (message or ""):
        return NOT_ATTEMPTED
    return FAILED


def attempts_from_results(results: Iterable[Any]) -> list[Attempt]:
    """Attempts from grading's NotebookResult list (week, notebook, error, cells with name,
    score, max_score, message)."""
    attempts = []
    for result in results:
        if result.error:
            continue  # the notebook as a whole could not be graded
        for cell in result.cells:
            if not cell.name.startswith(PROBLEM_PREFIX):
                continue
            attempts.append(Attempt(
                problem_id=cell.name.removeprefix(PROBLEM_PREFIX), week=result.week,
                notebook=result.notebook,
                outcome=outcome_of(cell.score, cell.max_score, cell.message),
                message=cell.message or ""))
    return attempts


def update(previous: ProblemHistory | None, attempt: Attempt,
           today: date) -> ProblemHistory | None:
    """The problem's history after one attempt graded `today` (None: still nothing known)."""
    if attempt.outcome == NOT_ATTEMPTED:
        return previous
    if previous is None:
        previous = ProblemHistory(
            id=attempt.problem_id, week=attempt.week, notebook=attempt.notebook, attempts=0,
            failures=0, last_outcome=attempt.outcome, last_graded=today, queued=False,
            streak=0, interval_days=FIRST_INTERVAL_DAYS, due=None)
    seen = dataclasses.replace(previous, week=attempt.week, notebook=attempt.notebook,
                               attempts=previous.attempts + 1, last_outcome=attempt.outcome,
                               last_graded=today)
    if attempt.outcome == FAILED:
        return dataclasses.replace(
            seen, failures=seen.failures + 1, queued=True, streak=0,
            interval_days=FIRST_INTERVAL_DAYS,
            due=today + timedelta(days=FIRST_INTERVAL_DAYS), last_failure=attempt.message)
    if not seen.queued or seen.due is None or today < seen.due:
        return seen  # a pass with nothing to review, or a review before it is due
    return _passed_review(seen, today)


def _passed_review(entry: ProblemHistory, today: date) -> ProblemHistory:
    streak = entry.streak + 1
    if streak >= PASSES_TO_CLEAR:
        return dataclasses.replace(entry, queued=False, streak=streak, due=None,
                                   interval_days=FIRST_INTERVAL_DAYS, cleared=today)
    interval = entry.interval_days * 2
    return dataclasses.replace(entry, streak=streak, interval_days=interval,
                               due=today + timedelta(days=interval))


def apply_attempts(history: Mapping[str, ProblemHistory], attempts: Iterable[Attempt],
                   today: date) -> History:
    """A new history with every attempt applied in order (the input is not changed)."""
    out = dict(history)
    for attempt in attempts:
        entry = update(out.get(attempt.problem_id), attempt, today)
        if entry is not None:
            out[attempt.problem_id] = entry
    return out


def queued(history: Mapping[str, ProblemHistory]) -> list[ProblemHistory]:
    """The queue, soonest due first."""
    return sorted((e for e in history.values() if e.queued), key=lambda e: (e.due, e.id))


def due_on(history: Mapping[str, ProblemHistory], today: date) -> list[ProblemHistory]:
    return [e for e in queued(history) if e.due <= today]


# --------------------------------------------------------------------------- today's set


@dataclass(frozen=True)
class Redo:
    """One problem of today's redo set, with what to do about it."""

    id: str
    title: str
    title_zh: str
    category: str
    difficulty: str
    week: str
    notebook: str
    function: str
    due: date
    days_overdue: int
    streak: int
    failures: int
    last_failure: str
    how: str


def todays_set(history: Mapping[str, ProblemHistory], today: date, bank: Bank,
               weakness: Mapping[str, float] | None = None,
               limit: int | None = None) -> list[Redo]:
    """Due problems, oldest due date first, then the weakest category first (`weakness`:
    category -> solved/due ratio as progress reports it, lower is weaker; a category with
    nothing due yet comes last), then week and id."""
    weakness = weakness or {}
    redo = [_redo(entry, today, bank) for entry in due_on(history, today)]
    redo.sort(key=lambda r: (r.due, weakness.get(r.category, float("inf")), r.week, r.id))
    return redo if limit is None else redo[:max(0, limit)]


def _redo(entry: ProblemHistory, today: date, bank: Bank) -> Redo:
    problem = bank.get(entry.id)
    function = problem.function if problem else entry.id
    return Redo(
        id=entry.id,
        title=problem.title if problem else entry.id,
        title_zh=problem.title_zh if problem else "",
        category=problem.category if problem else "",
        difficulty=problem.difficulty if problem else "",
        week=entry.week, notebook=entry.notebook, function=function, due=entry.due,
        days_overdue=(today - entry.due).days, streak=entry.streak, failures=entry.failures,
        last_failure=entry.last_failure,
        how=redo_instructions(entry.week, entry.notebook, function),
    )


def redo_instructions(week: str, notebook: str, function: str) -> str:
    # Not `netsprint release --force`: that would replace the whole notebook, other answers too.
    return (f"in notebooks/{week}/{notebook}, clear the body of `{function}` (keep the "
            f"signature), solve it again from the statement, run the cell under it, then "
            f"`netsprint grade {week}`")


# --------------------------------------------------------------------------- the file


def history_file(course: CourseRoot) -> Path:
    return course.state_dir / "problems.json"


def history_to_json(history: Mapping[str, ProblemHistory]) -> dict[str, Any]:
    def entry(e: ProblemHistory) -> dict[str, Any]:
        data = dataclasses.asdict(e)
        for key in ("last_graded", "due", "cleared"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    return {"version": HISTORY_VERSION,
            "problems": {pid: entry(e) for pid, e in sorted(history.items())}}


def parse_history(data: Any, source: str = "problems.json") -> History:
    """The history file's JSON, checked; CourseError says what is wrong and what to do."""
    try:
        return _parse_history(data)
    except (KeyError, TypeError, ValueError, CourseError) as exc:
        raise CourseError(f"{source} is corrupt ({exc}): move it aside; the next "
                          "`netsprint grade` starts a new mistakes queue") from None


def _parse_history(data: Any) -> History:
    if not isinstance(data, Mapping) or data.get("version") != HISTORY_VERSION:
        raise ValueError(f"expected an object with version {HISTORY_VERSION}")
    problems = data["problems"]
    if not isinstance(problems, Mapping):
        raise ValueError("'problems' must be an object")
    history: History = {}
    for pid, raw in problems.items():
        week_number(raw["week"])
        entry = ProblemHistory(
            id=str(pid), week=raw["week"], notebook=str(raw["notebook"]),
            attempts=_count(raw, "attempts"), failures=_count(raw, "failures"),
            last_outcome=_outcome(raw["last_outcome"]),
            last_graded=date.fromisoformat(raw["last_graded"]), queued=bool(raw["queued"]),
            streak=_count(raw, "streak"), interval_days=_count(raw, "interval_days"),
            due=_day(raw.get("due")), last_failure=str(raw.get("last_failure") or ""),
            cleared=_day(raw.get("cleared")))
        if entry.queued and entry.due is None:
            raise ValueError(f"{pid}: queued without a due date")
        history[entry.id] = entry
    return history


def _count(raw: Mapping[str, Any], field: str) -> int:
    value = raw[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{field} must be a whole number >= 0, got {value!r}")
    return value


def _outcome(value: Any) -> str:
    if value not in (PASSED, FAILED):
        raise ValueError(f"last_outcome must be {PASSED!r} or {FAILED!r}, got {value!r}")
    return value


def _day(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(value)


def read_history(path: Path) -> History:
    """The history file; missing means no problem was graded yet."""
    return parse_history(read_json(path, {"version": HISTORY_VERSION, "problems": {}}),
                         source=str(path))


def write_history(path: Path, history: Mapping[str, ProblemHistory]) -> None:
    write_json(path, history_to_json(history))


def record_attempts(course: CourseRoot, results: Iterable[Any],
                    today: date | None = None) -> History:
    """After a grading of the workbook's notebooks: update and save the mistakes queue."""
    path = history_file(course)
    history = apply_attempts(read_history(path), attempts_from_results(results),
                             today or date.today())
    write_history(path, history)
    return history

