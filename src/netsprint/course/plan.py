"""The 26-week plan: `plan.yaml` loaded, validated and frozen.

`load_plan()` returns the one `Plan` (cached); `validate_plan(data)` turns an already-parsed
mapping into a `Plan` or raises `CourseError` naming the week and the field that is wrong.
The plan owns what each week is (titles, tasks, notebooks, checkpoints, problem pace); it
does not know about grades or dates (that is `progress.py`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from netsprint.course.paths import week_name
from netsprint.errors import CourseError

PLAN_FILE = Path(__file__).with_name("plan.yaml")

FIRST_WEEK = 0
LAST_WEEK = 26
CHECKPOINT_WEEKS = (7, 19, 26)
PROBLEMS_NOTEBOOK = "problems.ipynb"
NOTEBOOK_PATTERN = re.compile(r"^\d\d-[a-z0-9][a-z0-9-]*\.ipynb$")


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Term:
    """An English phrase and the plan's Chinese wording for it (None: the plan has none)."""

    en: str
    zh: str | None


@dataclass(frozen=True)
class TimeBlock:
    time: str
    what: str
    what_zh: str | None
    minutes: int


@dataclass(frozen=True)
class Schedule:
    """The plan's weekly time budget: stated hours and the time-slot tables."""

    weekday_hours: float
    weekdays: int
    weekend_hours: float
    weekend_days: int
    weekly_hours: float
    note: str
    weekday_blocks: tuple[TimeBlock, ...]
    weekend_blocks: tuple[TimeBlock, ...]

    @property
    def table_weekly_hours(self) -> float:
        """What the time-slot tables add up to (more than the stated total: reading slots)."""
        minutes = (sum(b.minutes for b in self.weekday_blocks) * self.weekdays
                   + sum(b.minutes for b in self.weekend_blocks) * self.weekend_days)
        return minutes / 60


@dataclass(frozen=True)
class Reading:
    books: tuple[Term, ...]
    focus: str
    focus_zh: str | None


@dataclass(frozen=True)
class Phase:
    id: str
    name: str
    name_zh: str | None
    first_week: int
    last_week: int
    goal: str
    goal_zh: str | None
    reading: Reading | None

    def __contains__(self, week: int) -> bool:
        return self.first_week <= week <= self.last_week


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    name_zh: str
    total: int
    examples: tuple[str, ...]
    examples_zh: tuple[str, ...]


@dataclass(frozen=True)
class PaceRule:
    first_week: int
    last_week: int
    count: int


@dataclass(frozen=True)
class ProblemPace:
    """The plan's weekly problem counts (weeks 1..25); the last week makes up the total."""

    per_week: tuple[PaceRule, ...]
    total: int
    """The category table's total, which the weekly counts fall short of."""
    note: str

    @property
    def plan_weekly_sum(self) -> int:
        """What the weekly counts add up to by week 25 (166: 14 short of 180)."""
        return sum(r.count * (r.last_week - r.first_week + 1) for r in self.per_week)

    def expected_count(self, week: int) -> int:
        if week == LAST_WEEK:
            return self.total - self.plan_weekly_sum
        for rule in self.per_week:
            if rule.first_week <= week <= rule.last_week:
                return rule.count
        return 0


@dataclass(frozen=True)
class Task:
    """One row of the plan's weekly table; `output`/`output_zh` are its 产出 (None: "-")."""

    text: str
    text_zh: str | None
    output: str | None
    output_zh: str | None
    module: str | None


@dataclass(frozen=True)
class Problems:
    count: int
    focus: str
    focus_zh: str | None
    categories: tuple[tuple[str, int], ...]
    note: str | None

    def by_category(self) -> dict[str, int]:
        return dict(self.categories)


@dataclass(frozen=True)
class Checkpoint:
    number: int
    week: int
    title: str
    title_zh: str
    problems_target: int
    goals: tuple[Term, ...]


@dataclass(frozen=True)
class Week:
    number: int
    phase: str
    title: str
    title_zh: str
    summary: str
    hours: float
    topics: tuple[Term, ...]
    tasks: tuple[Task, ...]
    focus: Term | None
    notebooks: tuple[str, ...]
    problems: Problems
    checkpoint: Checkpoint | None

    @property
    def name(self) -> str:
        """The folder name, `week07`."""
        return week_name(self.number)

    @property
    def problems_notebook(self) -> str | None:
        """The week's problem-bank notebook, None in a week without problems. It is not among
        `notebooks` (the lessons a week's status is judged on): problems count against the
        pace instead (progress, docs/problems.md)."""
        return PROBLEMS_NOTEBOOK if self.problems.count else None


@dataclass(frozen=True)
class Plan:
    version: int
    title: str
    title_zh: str
    goal: str
    goal_zh: str | None
    schedule: Schedule
    phases: tuple[Phase, ...]
    categories: tuple[Category, ...]
    problem_pace: ProblemPace
    weeks: tuple[Week, ...]

    def week(self, number: int) -> Week:
        if not isinstance(number, int) or not FIRST_WEEK <= number <= LAST_WEEK:
            raise CourseError(f"there is no week {number!r}: weeks are {FIRST_WEEK}..{LAST_WEEK}")
        return self.weeks[number]

    def phase(self, phase_id: str) -> Phase:
        for phase in self.phases:
            if phase.id == phase_id:
                return phase
        raise CourseError(f"there is no phase {phase_id!r}")

    @property
    def checkpoints(self) -> tuple[Checkpoint, ...]:
        return tuple(w.checkpoint for w in self.weeks if w.checkpoint is not None)

    @property
    def total_problems(self) -> int:
        return sum(w.problems.count for w in self.weeks)

    def cumulative_problems(self, week: int) -> int:
        """Problems planned in weeks 0..week together (42 at 7, 114 at 19, 180 at 26)."""
        return sum(w.problems.count for w in self.weeks[: self.week(week).number + 1])


# --------------------------------------------------------------------------- loading


@functools.cache
def load_plan() -> Plan:
    """The workbook's plan (parsed and validated once per process)."""
    return read_plan(PLAN_FILE)


def read_plan(path: Path) -> Plan:
    return validate_plan(read_yaml(path, "the plan"), source=path.name)


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's data (unchecked); CourseError for a file missing or not YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CourseError(f"cannot read {what} {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CourseError(f"{path.name} is not valid YAML: {exc}") from exc


def validate_plan(data: Any, source: str = "plan.yaml") -> Plan:
    """Check a parsed plan and freeze it; CourseError names the week and field at fault."""
    return _Validator(source).plan(data)


# --------------------------------------------------------------------------- validation

_Types = type | tuple[type, ...]
_TYPE_NAMES = {str: "text", int: "a whole number", (int, float): "a number", list: "a list",
               Mapping: "a mapping"}


class _Validator:
    def __init__(self, source: str) -> None:
        self.source = source

    # -- helpers -------------------------------------------------------------------------

    def fail(self, where: str, field: str, message: str) -> CourseError:
        return CourseError(f"{self.source}: {where}: field {field!r}: {message}")

    def mapping(self, value: Any, where: str, field: str, required: set[str],
                optional: set[str] = frozenset()) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, field or "(top level)",
                            f"expected a mapping, got {type(value).__name__}")
        missing = sorted(required - value.keys())
        if missing:
            raise self.fail(where, _join(field, missing[0]), "is missing")
        unknown = sorted(str(k) for k in value.keys() - required - optional)
        if unknown:
            raise self.fail(where, _join(field, unknown[0]),
                            "is not a known field (a typo?)")
        return value

    def get(self, m: Mapping[str, Any], key: str, types: _Types, where: str, field: str,
            nullable: bool = False) -> Any:
        value = m.get(key)
        name = _join(field, key)
        if value is None:
            if nullable:
                return None
            raise self.fail(where, name, "must not be empty")
        if isinstance(value, bool) or not isinstance(value, types):
            raise self.fail(where, name,
                            f"expected {_TYPE_NAMES[types]}, got {type(value).__name__}")
        if isinstance(value, str) and not value.strip():
            raise self.fail(where, name, "must not be blank")
        return value

    def number(self, m: Mapping[str, Any], key: str, where: str, field: str,
               minimum: int = 0, types: _Types = int) -> int | float:
        """A whole number (or, with `types=(int, float)`, any number) >= `minimum`."""
        value = self.get(m, key, types, where, field)
        if value < minimum:
            raise self.fail(where, _join(field, key), f"must be >= {minimum}, got {value}")
        return value

    def items(self, m: Mapping[str, Any], key: str, where: str, field: str) -> list[Any]:
        value = self.get(m, key, list, where, field)
        if not value:
            raise self.fail(where, _join(field, key), "must not be an empty list")
        return value

    def strings(self, m: Mapping[str, Any], key: str, where: str, field: str) -> tuple[str, ...]:
        values = self.items(m, key, where, field)
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                raise self.fail(where, f"{_join(field, key)}[{i}]", "expected a non-blank string")
        return tuple(values)

    def term(self, value: Any, where: str, field: str) -> Term:
        m = self.mapping(value, where, field, {"en", "zh"})
        return Term(self.get(m, "en", str, where, field),
                    self.get(m, "zh", str, where, field, nullable=True))

    def range_of_weeks(self, m: Mapping[str, Any], where: str, field: str) -> tuple[int, int]:
        value = self.get(m, "weeks", list, where, field)
        name = _join(field, "weeks")
        if (len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value)):
            raise self.fail(where, name, f"expected [first, last] week numbers, got {value!r}")
        first, last = value
        if not FIRST_WEEK <= first <= last <= LAST_WEEK:
            raise self.fail(where, name,
                            f"expected {FIRST_WEEK} <= first <= last <= {LAST_WEEK}, got {value!r}")
        return first, last

    # -- sections ------------------------------------------------------------------------

    def plan(self, data: Any) -> Plan:
        top = "plan"
        m = self.mapping(data, top, "", {"version", "title", "title_zh", "goal", "goal_zh",
                                         "schedule", "phases", "categories", "problem_pace",
                                         "weeks"})
        version = self.get(m, "version", int, top, "")
        if version != 1:
            raise self.fail(top, "version", f"expected 1, got {version}")
        schedule = self.schedule(m["schedule"])
        phases = self.phases(self.items(m, "phases", top, ""))
        categories = self.categories(self.items(m, "categories", top, ""))
        pace = self.pace(m["problem_pace"], categories)
        weeks = self.weeks(self.items(m, "weeks", top, ""), schedule, phases, categories, pace)
        plan = Plan(
            version=version,
            title=self.get(m, "title", str, top, ""),
            title_zh=self.get(m, "title_zh", str, top, ""),
            goal=self.get(m, "goal", str, top, ""),
            goal_zh=self.get(m, "goal_zh", str, top, "", nullable=True),
            schedule=schedule, phases=phases, categories=categories, problem_pace=pace,
            weeks=weeks,
        )
        self.cross_check(plan)
        return plan

    def schedule(self, value: Any) -> Schedule:
        where, f = "plan", "schedule"
        m = self.mapping(value, where, f, {"weekday_hours", "weekdays", "weekend_hours",
                                           "weekend_days", "weekly_hours", "note",
                                           "weekday_blocks", "weekend_blocks"})
        schedule = Schedule(
            weekday_hours=self.number(m, "weekday_hours", where, f, types=(int, float)),
            weekdays=self.number(m, "weekdays", where, f),
            weekend_hours=self.number(m, "weekend_hours", where, f, types=(int, float)),
            weekend_days=self.number(m, "weekend_days", where, f),
            weekly_hours=self.number(m, "weekly_hours", where, f, minimum=1, types=(int, float)),
            note=self.get(m, "note", str, where, f),
            weekday_blocks=self.blocks(m, "weekday_blocks"),
            weekend_blocks=self.blocks(m, "weekend_blocks"),
        )
        if schedule.weekdays + schedule.weekend_days != 7:
            raise self.fail(where, "schedule.weekdays",
                            "weekdays + weekend_days must be 7")
        stated = (schedule.weekday_hours * schedule.weekdays
                  + schedule.weekend_hours * schedule.weekend_days)
        if abs(stated - schedule.weekly_hours) > 1e-9:
            raise self.fail(where, "schedule.weekly_hours",
                            f"{schedule.weekly_hours} differs from weekday_hours x weekdays + "
                            f"weekend_hours x weekend_days = {stated}")
        return schedule

    def blocks(self, m: Mapping[str, Any], key: str) -> tuple[TimeBlock, ...]:
        where = "plan"
        out = []
        for i, item in enumerate(self.items(m, key, where, "schedule")):
            f = f"schedule.{key}[{i}]"
            b = self.mapping(item, where, f, {"time", "what", "what_zh", "minutes"})
            out.append(TimeBlock(self.get(b, "time", str, where, f),
                                 self.get(b, "what", str, where, f),
                                 self.get(b, "what_zh", str, where, f, nullable=True),
                                 self.number(b, "minutes", where, f, minimum=1)))
        return tuple(out)

    def phases(self, items: list[Any]) -> tuple[Phase, ...]:
        where = "plan"
        phases: list[Phase] = []
        for i, item in enumerate(items):
            f = f"phases[{i}]"
            m = self.mapping(item, where, f, {"id", "name", "name_zh", "weeks", "goal",
                                              "goal_zh", "reading"})
            first, last = self.range_of_weeks(m, where, f)
            reading = None
            if m.get("reading") is not None:
                rf = f"{f}.reading"
                r = self.mapping(m["reading"], where, rf, {"books", "focus", "focus_zh"})
                reading = Reading(
                    books=tuple(self.term(b, where, f"{rf}.books[{j}]")
                                for j, b in enumerate(self.items(r, "books", where, rf))),
                    focus=self.get(r, "focus", str, where, rf),
                    focus_zh=self.get(r, "focus_zh", str, where, rf, nullable=True),
                )
            phase = Phase(
                id=self.get(m, "id", str, where, f),
                name=self.get(m, "name", str, where, f),
                name_zh=self.get(m, "name_zh", str, where, f, nullable=True),
                first_week=first, last_week=last,
                goal=self.get(m, "goal", str, where, f),
                goal_zh=self.get(m, "goal_zh", str, where, f, nullable=True),
                reading=reading,
            )
            if any(p.id == phase.id for p in phases):
                raise self.fail(where, f"{f}.id", f"phase {phase.id!r} appears twice")
            expected_first = phases[-1].last_week + 1 if phases else FIRST_WEEK
            if first != expected_first:
                raise self.fail(where, f"{f}.weeks",
                                f"phases must cover the weeks in order: expected the phase "
                                f"to start at week {expected_first}, got {first}")
            phases.append(phase)
        if phases[-1].last_week != LAST_WEEK:
            raise self.fail(where, f"phases[{len(phases) - 1}].weeks",
                            f"the last phase must end at week {LAST_WEEK}")
        return tuple(phases)

    def categories(self, items: list[Any]) -> tuple[Category, ...]:
        where = "plan"
        out: list[Category] = []
        for i, item in enumerate(items):
            f = f"categories[{i}]"
            m = self.mapping(item, where, f, {"id", "name", "name_zh", "total", "examples",
                                              "examples_zh"})
            category = Category(
                id=self.get(m, "id", str, where, f),
                name=self.get(m, "name", str, where, f),
                name_zh=self.get(m, "name_zh", str, where, f),
                total=self.number(m, "total", where, f, minimum=1),
                examples=self.strings(m, "examples", where, f),
                examples_zh=self.strings(m, "examples_zh", where, f),
            )
            if any(c.id == category.id for c in out):
                raise self.fail(where, f"{f}.id", f"category {category.id!r} appears twice")
            out.append(category)
        return tuple(out)

    def pace(self, value: Any, categories: tuple[Category, ...]) -> ProblemPace:
        where, f = "plan", "problem_pace"
        m = self.mapping(value, where, f, {"per_week", "note"})
        rules: list[PaceRule] = []
        for i, item in enumerate(self.items(m, "per_week", where, f)):
            rf = f"{f}.per_week[{i}]"
            r = self.mapping(item, where, rf, {"weeks", "count"})
            first, last = self.range_of_weeks(r, where, rf)
            expected_first = rules[-1].last_week + 1 if rules else 1
            if first != expected_first:
                raise self.fail(where, f"{rf}.weeks",
                                f"expected the rule to start at week {expected_first}, got {first}")
            rules.append(PaceRule(first, last, self.number(r, "count", where, rf, minimum=1)))
        if rules[-1].last_week != LAST_WEEK - 1:
            raise self.fail(where, f"{f}.per_week",
                            f"the rules must cover weeks 1..{LAST_WEEK - 1}: week {LAST_WEEK} "
                            f"carries the remainder")
        pace = ProblemPace(per_week=tuple(rules), total=sum(c.total for c in categories),
                           note=self.get(m, "note", str, where, f))
        if pace.total < pace.plan_weekly_sum:
            raise self.fail(where, f"{f}.per_week",
                            f"the rules add up to {pace.plan_weekly_sum}, more than the category "
                            f"table's total {pace.total}")
        return pace

    def weeks(self, items: list[Any], schedule: Schedule, phases: tuple[Phase, ...],
              categories: tuple[Category, ...], pace: ProblemPace) -> tuple[Week, ...]:
        expected = LAST_WEEK - FIRST_WEEK + 1
        if len(items) != expected:
            raise self.fail("plan", "weeks",
                            f"expected {expected} weeks ({FIRST_WEEK}..{LAST_WEEK}), "
                            f"got {len(items)}")
        weeks = []
        for i, item in enumerate(items):
            number = item.get("number") if isinstance(item, Mapping) else None
            if number != FIRST_WEEK + i or isinstance(number, bool):
                raise self.fail(f"weeks[{i}]", "number",
                                f"expected week {FIRST_WEEK + i} here (weeks in order), "
                                f"got {number!r}")
            weeks.append(self.week(item, number, schedule, phases, categories, pace))
        return tuple(weeks)

    def week(self, value: Any, number: int, schedule: Schedule, phases: tuple[Phase, ...],
             categories: tuple[Category, ...], pace: ProblemPace) -> Week:
        where = f"week {number}"
        m = self.mapping(value, where, "", {"number", "phase", "title", "title_zh", "summary",
                                            "topics", "tasks", "focus", "notebooks",
                                            "problems", "checkpoint"}, {"hours"})
        phase_id = self.get(m, "phase", str, where, "")
        phase = next((p for p in phases if p.id == phase_id), None)
        if phase is None:
            raise self.fail(where, "phase", f"unknown phase {phase_id!r}; known: "
                            + ", ".join(p.id for p in phases))
        if number not in phase:
            raise self.fail(where, "phase", f"phase {phase_id!r} covers weeks "
                            f"{phase.first_week}..{phase.last_week}, not {number}")
        hours = schedule.weekly_hours
        if "hours" in m:
            hours = self.number(m, "hours", where, "", types=(int, float))

        tasks = []
        for i, item in enumerate(self.items(m, "tasks", where, "")):
            f = f"tasks[{i}]"
            t = self.mapping(item, where, f, {"text", "text_zh", "output", "output_zh",
                                              "module"})
            task = Task(self.get(t, "text", str, where, f),
                        self.get(t, "text_zh", str, where, f, nullable=True),
                        self.get(t, "output", str, where, f, nullable=True),
                        self.get(t, "output_zh", str, where, f, nullable=True),
                        self.get(t, "module", str, where, f, nullable=True))
            if (task.output is None) != (task.output_zh is None):
                raise self.fail(where, f"{f}.output",
                                "output and output_zh must both be set or both be null")
            tasks.append(task)

        notebooks = self.strings(m, "notebooks", where, "")
        for i, name in enumerate(notebooks):
            if not NOTEBOOK_PATTERN.match(name):
                raise self.fail(where, f"notebooks[{i}]",
                                f"{name!r} is not a notebook name like 01-event-loop.ipynb")
        if len(set(notebooks)) != len(notebooks):
            raise self.fail(where, "notebooks", "lists a notebook twice")

        return Week(
            number=number,
            phase=phase_id,
            title=self.get(m, "title", str, where, ""),
            title_zh=self.get(m, "title_zh", str, where, ""),
            summary=self.get(m, "summary", str, where, ""),
            hours=hours,
            topics=tuple(self.term(t, where, f"topics[{i}]")
                         for i, t in enumerate(self.items(m, "topics", where, ""))),
            tasks=tuple(tasks),
            focus=(self.term(m["focus"], where, "focus") if m.get("focus") is not None
                   else None),
            notebooks=notebooks,
            problems=self.problems(m["problems"], number, categories, pace),
            checkpoint=self.checkpoint(m.get("checkpoint"), number),
        )

    def problems(self, value: Any, week: int, categories: tuple[Category, ...],
                 pace: ProblemPace) -> Problems:
        where, f = f"week {week}", "problems"
        m = self.mapping(value, where, f, {"count", "focus", "focus_zh", "categories"},
                         {"note"})
        count = self.number(m, "count", where, f)
        expected = pace.expected_count(week)
        if count != expected:
            if week == LAST_WEEK:
                why = (f"week {week} carries the remainder: the category table's {pace.total} - "
                       f"{pace.plan_weekly_sum} planned in weeks 1..{week - 1}")
            elif week == FIRST_WEEK:
                why = "the orientation week has no problems"
            else:
                why = f"the plan's pace for week {week}"
            raise self.fail(where, "problems.count", f"expected {expected} ({why}), got {count}")
        allocation = self.get(m, "categories", Mapping, where, f)
        known = {c.id for c in categories}
        pairs = []
        for key, n in allocation.items():
            name = f"problems.categories.{key}"
            if key not in known:
                raise self.fail(where, name, "unknown category; known: " + ", ".join(sorted(known)))
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise self.fail(where, name, f"expected a positive whole number, got {n!r}")
            pairs.append((key, n))
        allocated = sum(n for _, n in pairs)
        if allocated != count:
            raise self.fail(where, "problems.categories",
                            f"the categories add up to {allocated}, not the week's count {count}")
        return Problems(
            count=count,
            focus=self.get(m, "focus", str, where, f),
            focus_zh=self.get(m, "focus_zh", str, where, f, nullable=True),
            categories=tuple(pairs),
            note=self.get(m, "note", str, where, f, nullable=True),
        )

    def checkpoint(self, value: Any, week: int) -> Checkpoint | None:
        where, f = f"week {week}", "checkpoint"
        if week not in CHECKPOINT_WEEKS:
            if value is not None:
                raise self.fail(where, f, "checkpoints are only at weeks "
                                + ", ".join(map(str, CHECKPOINT_WEEKS)))
            return None
        if value is None:
            raise self.fail(where, f, f"week {week} must have a checkpoint")
        m = self.mapping(value, where, f, {"number", "title", "title_zh", "problems_target",
                                           "goals"})
        number = self.number(m, "number", where, f, minimum=1)
        expected_number = CHECKPOINT_WEEKS.index(week) + 1
        if number != expected_number:
            raise self.fail(where, "checkpoint.number",
                            f"expected checkpoint {expected_number}, got {number}")
        return Checkpoint(
            number=number,
            week=week,
            title=self.get(m, "title", str, where, f),
            title_zh=self.get(m, "title_zh", str, where, f),
            problems_target=self.number(m, "problems_target", where, f),
            goals=tuple(self.term(g, where, f"checkpoint.goals[{i}]")
                        for i, g in enumerate(self.items(m, "goals", where, f))),
        )

    def cross_check(self, plan: Plan) -> None:
        for checkpoint in plan.checkpoints:
            cumulative = plan.cumulative_problems(checkpoint.week)
            if checkpoint.problems_target != cumulative:
                raise self.fail(f"week {checkpoint.week}", "checkpoint.problems_target",
                                f"is {checkpoint.problems_target} but weeks 0..{checkpoint.week} "
                                f"plan {cumulative} problems")
        for category in plan.categories:
            allocated = sum(w.problems.by_category().get(category.id, 0) for w in plan.weeks)
            if allocated != category.total:
                raise self.fail("plan", f"categories.{category.id}.total",
                                f"the weeks allocate {allocated} {category.id} problems, "
                                f"the category table says {category.total}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
