"""The problem bank's catalog: one `data/weekNN.yaml` per week, loaded and validated.

`load_bank()` reads every `data/week*.yaml` into a frozen `Bank`; a file that is wrong is a
`CourseError` naming the file, the problem and the field. `check_against_plan(bank, plan)`
lists where the bank and `plan.yaml` disagree (per-week category counts, category totals,
the bank's size); an empty list means the bank is on the plan's pace.
The catalog owns what each problem *is* (id, titles, category, week, notebook, function);
statements, reference solutions and hidden tests live in `solutions/weekNN/<notebook>`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netsprint.course.paths import week_name
from netsprint.course.plan import LAST_WEEK, Plan, load_plan, read_yaml
from netsprint.errors import CourseError

DATA_DIR = Path(__file__).with_name("data")
PROBLEM_PREFIX = "problem_"  # the grade cell of problem <id> is problem_<id>
DIFFICULTIES = ("easy", "medium", "hard")
ID_PATTERN = re.compile(r"^[a-z0-9_]+$")
FUNCTION_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FILE_PATTERN = re.compile(r"^week(\d\d)\.yaml$")
NOTEBOOK_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*\.ipynb$")

_FILE_FIELDS = {"week", "notebook", "problems"}
_PROBLEM_FIELDS = {"id", "title", "title_zh", "category", "difficulty", "function",
                   "large_input"}


@dataclass(frozen=True)
class Problem:
    """One catalog entry: what the learner solves, where, and how it is graded."""

    id: str
    title: str
    title_zh: str
    category: str
    difficulty: str
    week: int
    notebook: str
    function: str
    large_input: bool

    @property
    def grade_id(self) -> str:
        return PROBLEM_PREFIX + self.id

    @property
    def week_name(self) -> str:
        return week_name(self.week)


@dataclass(frozen=True)
class Bank:
    """Every problem of the catalog, in week order then file order."""

    problems: tuple[Problem, ...]

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def by_week(self, week: int) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.week == week)

    def category_counts(self, week: int | None = None) -> dict[str, int]:
        """Problems per category, for one week or (None) the whole bank."""
        chosen = self.problems if week is None else self.by_week(week)
        return dict(Counter(p.category for p in chosen))

    def find(self, problem_id: str) -> Problem:
        """The problem with this id (or its grade id `problem_<id>`)."""
        wanted = problem_id.removeprefix(PROBLEM_PREFIX)
        for problem in self.problems:
            if problem.id == wanted:
                return problem
        raise CourseError(f"there is no problem {problem_id!r} in the bank: "
                          "`netsprint problems` lists them")

    def get(self, problem_id: str) -> Problem | None:
        """Like find(), None for an id the bank does not have (a cell from elsewhere)."""
        try:
            return self.find(problem_id)
        except CourseError:
            return None


# --------------------------------------------------------------------------- loading


def load_bank(data_dir: Path | None = None, plan: Plan | None = None) -> Bank:
    """Every `weekNN.yaml` in `data_dir` (default: the package's), validated."""
    folder = Path(data_dir) if data_dir is not None else DATA_DIR
    categories = {c.id for c in (plan or load_plan()).categories}
    problems: list[Problem] = []
    seen: dict[str, str] = {}  # id -> the file that defined it first
    for path in sorted(folder.glob("week*.yaml")):
        for problem in read_week_file(path, categories):
            if problem.id in seen:
                raise CourseError(f"{path.name}: problem {problem.id!r}: field 'id': already "
                                  f"defined in {seen[problem.id]} (ids are unique across the "
                                  "bank)")
            seen[problem.id] = path.name
            problems.append(problem)
    return Bank(tuple(sorted(problems, key=lambda p: p.week)))


def read_week_file(path: Path, categories: set[str]) -> list[Problem]:
    match = FILE_PATTERN.match(path.name)
    if not match or not 1 <= int(match.group(1)) <= LAST_WEEK:
        raise CourseError(f"{path.name}: catalog files are named week01.yaml .. "
                          f"week{LAST_WEEK}.yaml")
    return validate_week(read_yaml(path, "the catalog file"), path.name, int(match.group(1)),
                         categories)


def validate_week(data: Any, source: str, file_week: int, categories: set[str]) -> list[Problem]:
    """One week file's problems; CourseError names `source`, the problem and the field."""
    top = _mapping(data, source, "(top level)", _FILE_FIELDS)
    week = top["week"]
    if week != file_week or isinstance(week, bool):
        raise CourseError(f"{source}: field 'week': is {week!r} but the file name says "
                          f"week {file_week}")
    notebook = top["notebook"]
    if not isinstance(notebook, str) or not NOTEBOOK_PATTERN.match(notebook):
        raise CourseError(f"{source}: field 'notebook': {notebook!r} is not a notebook file "
                          "name like problems.ipynb")
    items = top["problems"]
    if not isinstance(items, list) or not items:
        raise CourseError(f"{source}: field 'problems': expected a non-empty list")
    problems, ids = [], set()
    for i, item in enumerate(items):
        problem = _problem(item, source, i, week, notebook, categories)
        if problem.id in ids:
            raise CourseError(f"{source}: problem {problem.id!r}: field 'id': appears twice")
        ids.add(problem.id)
        problems.append(problem)
    return problems


def _problem(item: Any, source: str, index: int, week: int, notebook: str,
             categories: set[str]) -> Problem:
    where = f"{source}: problems[{index}]"
    m = _mapping(item, where, "(problem)", _PROBLEM_FIELDS)
    pid = _text(m, "id", where)
    if not ID_PATTERN.match(pid):
        raise CourseError(f"{where}: field 'id': {pid!r} must match [a-z0-9_]+")
    where = f"{source}: problem {pid!r}"
    category = _text(m, "category", where)
    if category not in categories:
        raise CourseError(f"{where}: field 'category': unknown category {category!r}; known: "
                          + ", ".join(sorted(categories)))
    difficulty = _text(m, "difficulty", where)
    if difficulty not in DIFFICULTIES:
        raise CourseError(f"{where}: field 'difficulty': {difficulty!r} is not one of "
                          + ", ".join(DIFFICULTIES))
    function = _text(m, "function", where)
    if not FUNCTION_PATTERN.match(function):
        raise CourseError(f"{where}: field 'function': {function!r} is not a Python name")
    large_input = m["large_input"]
    if not isinstance(large_input, bool):
        raise CourseError(f"{where}: field 'large_input': expected true or false, "
                          f"got {large_input!r}")
    return Problem(id=pid, title=_text(m, "title", where), title_zh=_text(m, "title_zh", where),
                   category=category, difficulty=difficulty, week=week, notebook=notebook,
                   function=function, large_input=large_input)


def _mapping(value: Any, where: str, what: str, fields: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CourseError(f"{where}: {what}: expected a mapping, got {type(value).__name__}")
    missing = sorted(fields - value.keys())
    if missing:
        raise CourseError(f"{where}: field {missing[0]!r}: is missing")
    unknown = sorted(str(k) for k in value.keys() - fields)
    if unknown:
        raise CourseError(f"{where}: field {unknown[0]!r}: is not a known field (a typo?)")
    return value


def _text(m: Mapping[str, Any], field: str, where: str) -> str:
    value = m[field]
    if not isinstance(value, str) or not value.strip():
        raise CourseError(f"{where}: field {field!r}: expected non-blank text, got {value!r}")
    return value


# --------------------------------------------------------------------------- the plan


def planned_categories(plan: Plan, through_week: int) -> dict[str, int]:
    """Problems per category the plan schedules in weeks 1..through_week together."""
    totals = {c.id: 0 for c in plan.categories}
    for week in plan.weeks[1: max(0, through_week) + 1]:
        for category, count in week.problems.categories:
            totals[category] += count
    return totals


def check_against_plan(bank: Bank, plan: Plan) -> list[str]:
    """Every way the bank differs from plan.yaml's pace, one sentence each ([] = matches)."""
    mismatches = []
    for week in plan.weeks[1:]:
        want = week.problems.by_category()
        got = bank.category_counts(week.number)
        for category in sorted(want.keys() | got.keys()):
            if want.get(category, 0) != got.get(category, 0):
                mismatches.append(f"week {week.number}: {category}: the plan has "
                                  f"{want.get(category, 0)}, the bank {got.get(category, 0)}")
    got_totals = bank.category_counts()
    for category in plan.categories:
        if got_totals.get(category.id, 0) != category.total:
            mismatches.append(f"{category.id}: the plan's total is {category.total}, the bank "
                              f"has {got_totals.get(category.id, 0)}")
    if len(bank) < plan.problem_pace.total:
        mismatches.append(f"the bank has {len(bank)} problems, the plan {plan.problem_pace.total}")
    return mismatches


CATEGORY_SHORT = {"linked_list": "LL", "hash_table": "HT", "binary_tree": "BT", "dp": "DP",
                  "sliding_window": "SW", "two_pointers": "TP", "bfs_dfs": "BFS",
                  "binary_search": "BS", "greedy_stack_heap": "GSH", "design": "DES"}


def pace_table(plan: Plan) -> str:
    """The plan's problems as a markdown table, weeks x categories (docs/problems.md holds it;
    a test keeps the two in step)."""
    ids = [c.id for c in plan.categories]
    heads = [CATEGORY_SHORT.get(c, c) for c in ids]
    lines = ["| week | " + " | ".join(heads) + " | week | Σ |",
             "| ---: | " + " | ".join("---:" for _ in ids) + " | ---: | ---: |"]
    for week in plan.weeks[1:]:
        counts = week.problems.by_category()
        lines.append(f"| {week.number} | " + " | ".join(str(counts.get(c, "")) for c in ids)
                     + f" | {week.problems.count} | {plan.cumulative_problems(week.number)} |")
    lines.append("| **total** | " + " | ".join(f"**{c.total}**" for c in plan.categories)
                 + f" | **{plan.total_problems}** | |")
    lines.append("")
    lines += [f"- {CATEGORY_SHORT.get(c.id, c.id)} = `{c.id}`: {c.name} ({c.name_zh})"
              for c in plan.categories]
    return "\n".join(lines)
