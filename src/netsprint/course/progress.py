"""Where the learner stands against the 26-week plan: `netsprint progress`.

`build_report(plan, grades, start_date, today)` is the pure core: it reads no files and no
clock. `main()` is the shell: it finds the course root, reads `.netsprint/grades.json`
(written by the grader) and the remembered start date, prints a table or JSON and writes a
PNG chart (`render_chart`; `progress_figure` returns the Figure for inline display,
`chart_png` the PNG bytes; `load_report` builds the report from the course's files).

Rules
- A notebook *passes* when it was graded without error and scored its maximum; a notebook
  with no graded cells passes once graded.
- A week is `done` when every notebook the plan lists for it, and every other notebook
  graded under that week except its problem bank (`problems.ipynb`, which counts against
  the pace instead), passes. Otherwise it is `behind` when the calendar says the week
  has ended, `in progress` when something in it has scored or passed, else `not started`.
- Week N (1..26) spans start + 7(N-1) days .. start + 7N - 1; week 0 (orientation) is the
  7 days before the start. Without a start date there is no calendar: no week is `behind`.
- A problem is a graded cell named `problem_*`; it is solved when its score equals its max.
- By category (docs/problems.md): each category's solved problems (those the bank knows)
  against the plan's per-week categories cumulated to the current calendar week
  (`planned_to_date`) and to the last week that has ended (`due`). Without a start date both
  run to the latest week you have graded. A category is *weak* when something is due in it
  and you solved less than `WEAK_BELOW` (60 %) of it; the weakest come first.
- The mistakes queue (错题) is `netsprint.course.problems.practice`'s: its size, what is due
  today, and every queued problem with its due date.
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netsprint.course.paths import GRADES_VERSION, CourseRoot, read_json, week_name, week_number, write_json
from netsprint.course.plan import LAST_WEEK, Plan, Week, load_plan
from netsprint.course.problems import practice
from netsprint.course.problems.catalog import PROBLEM_PREFIX, Bank, load_bank, planned_categories
from netsprint.errors import CourseError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WEAK_BELOW = 0.6  # solved / due under this marks a weak category

DONE = "done"
IN_PROGRESS = "in progress"
BEHIND = "behind"
NOT_STARTED = "not started"
STATUSES = (DONE, IN_PROGRESS, BEHIND, NOT_STARTED)

_EPS = 1e-9
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --------------------------------------------------------------------------- grades


@dataclass(frozen=True)
class NotebookGrade:
    """One notebook's entry in grades.json, as far as progress needs it."""

    week: int
    notebook: str
    score: float
    max_score: float
    error: str | None
    problems_solved: int
    solved_ids: tuple[str, ...] = ()
    """Grade ids (`problem_<id>`) of the problem cells at full marks."""

    @property
    def passed(self) -> bool:
        return self.error is None and (self.max_score <= 0 or self.score >= self.max_score - _EPS)


Grades = dict[str, NotebookGrade]
"""Keyed by "weekNN/notebook.ipynb"."""


class _Corrupt(Exception):
    """What is wrong with the grades data; parse_grades turns it into a CourseError."""


def parse_grades(data: Any, source: str = "grades.json") -> Grades:
    """Check the grader's JSON (`{"version": 1, "notebooks": {key: entry}}`, each entry with
    week, notebook, score, max_score, error and cells: name, score, max_score)."""
    try:
        return _parse_grades(data)
    except _Corrupt as exc:
        raise CourseError(f"{source} is corrupt ({exc}): run `netsprint grade` to rebuild it, "
                          "or move it aside") from None


def _parse_grades(data: Any) -> Grades:
    if not isinstance(data, Mapping):
        raise _Corrupt("expected a JSON object")
    if data.get("version") != GRADES_VERSION:
        raise _Corrupt(f"version is {data.get('version')!r}, expected {GRADES_VERSION}")
    notebooks = data.get("notebooks")
    if not isinstance(notebooks, Mapping):
        raise _Corrupt("'notebooks' must be an object")
    grades: Grades = {}
    for key, entry in notebooks.items():
        if not isinstance(entry, Mapping):
            raise _Corrupt(f"{key}: expected an object")
        try:
            week = week_number(str(entry.get("week")))
        except CourseError as exc:
            raise _Corrupt(f"{key}: week: {exc}") from None
        notebook = entry.get("notebook")
        if not isinstance(notebook, str) or not notebook:
            raise _Corrupt(f"{key}: notebook must be a file name")
        cells = entry.get("cells", [])
        if not isinstance(cells, list):
            raise _Corrupt(f"{key}: cells must be a list")
        solved: list[str] = []
        for i, cell in enumerate(cells):
            if not isinstance(cell, Mapping) or not isinstance(cell.get("name"), str):
                raise _Corrupt(f"{key}: cells[{i}] needs a name")
            score = _number(cell, "score", f"{key}: cells[{i}]")
            max_score = _number(cell, "max_score", f"{key}: cells[{i}]")
            # a problem is solved at full marks; a cell worth nothing solves nothing
            if (cell["name"].startswith(PROBLEM_PREFIX) and max_score > 0
                    and abs(score - max_score) < _EPS):
                solved.append(cell["name"])
        error = entry.get("error")
        grades[f"{week_name(week)}/{notebook}"] = NotebookGrade(
            week=week, notebook=notebook,
            score=_number(entry, "score", key), max_score=_number(entry, "max_score", key),
            error=None if error is None else str(error), problems_solved=len(solved),
            solved_ids=tuple(solved),
        )
    return grades


def _number(entry: Mapping[str, Any], field: str, where: str) -> float:
    value = entry.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Corrupt(f"{where}: {field} must be a number, got {value!r}")
    if value < 0:
        raise _Corrupt(f"{where}: {field} must not be negative, got {value!r}")
    return float(value)


def read_grades(path: Path) -> Grades:
    """The grades file; missing means nothing graded yet."""
    try:
        data = read_json(path, {"version": GRADES_VERSION, "notebooks": {}})
    except CourseError as exc:
        raise CourseError(f"{exc}, or run `netsprint grade` to rebuild it") from None
    return parse_grades(data, source=str(path))


# --------------------------------------------------------------------------- start date


def parse_start(text: str) -> date:
    """`2026-11-23` -> date; anything else is a CourseError saying the expected form."""
    try:
        if not _DATE.match(text.strip()):
            raise ValueError
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CourseError(f"start date {text!r} is not a date: use YYYY-MM-DD, "
                          "e.g. `netsprint progress --start 2026-11-23`") from None


def stored_start(course: CourseRoot) -> date | None:
    settings = read_json(course.settings_file, {})
    if not isinstance(settings, Mapping):
        raise CourseError(f"{course.settings_file} should be a JSON object; move it aside and "
                          "set the start again with `netsprint progress --start YYYY-MM-DD`")
    value = settings.get("start")
    if value is None:
        return None
    if not isinstance(value, str):
        raise CourseError(f"{course.settings_file}: start is {value!r}, not a date; set it again "
                          "with `netsprint progress --start YYYY-MM-DD`")
    return parse_start(value)


def remember_start(course: CourseRoot, start: date) -> None:
    """Store the start date, keeping any other settings in the file."""
    settings = read_json(course.settings_file, {})
    if not isinstance(settings, Mapping):
        settings = {}
    write_json(course.settings_file, {**settings, "start": start.isoformat()})


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class NotebookProgress:
    notebook: str
    planned: bool
    graded: bool
    score: float
    max_score: float
    passed: bool
    error: str | None
    problems_solved: int


@dataclass(frozen=True)
class WeekProgress:
    week: int
    title: str
    title_zh: str
    phase: str
    status: str
    score: float
    max_score: float
    checkpoint: int | None
    """The checkpoint's number (1..3), None for other weeks."""
    starts: date | None
    ends: date | None
    notebooks: tuple[NotebookProgress, ...]
    problems_planned: int
    problems_planned_cumulative: int
    problems_solved: int

    @property
    def fraction(self) -> float:
        return self.score / self.max_score if self.max_score > 0 else 0.0


@dataclass(frozen=True)
class CategoryProgress:
    """One problem category: solved against the plan's schedule so far."""

    name: str
    name_zh: str
    solved: int
    planned_to_date: int
    """Planned in this category through the current week (no calendar: the latest graded)."""
    due: int
    """Planned through the last week that has ended (no calendar: the latest graded)."""
    total: int
    ratio: float | None
    """solved / due (None: nothing due yet)."""
    weak: bool


@dataclass(frozen=True)
class Mistake:
    """A problem in the mistakes queue (错题)."""

    id: str
    week: int
    category: str | None
    due: date
    streak: int
    due_now: bool


@dataclass(frozen=True)
class ProblemProgress:
    solved: int
    planned_to_date: int | None
    """The pace target by the end of the current calendar week (None: no start date)."""
    due: int | None
    """Planned through the last week that has ended (None: no start date)."""
    total_planned: int
    pace: str | None
    """'ahead', 'on pace' or 'behind' (None: no start date)."""
    by_category: dict[str, CategoryProgress] = field(default_factory=dict)
    weak: tuple[str, ...] = ()
    """Weak category ids, weakest first."""
    mistakes: tuple[Mistake, ...] = ()
    """The mistakes queue, soonest due first."""
    mistakes_due: int = 0
    """How many of them are due today (or overdue)."""


@dataclass(frozen=True)
class Report:
    start: date | None
    today: date
    current_week: int | None
    """The calendar week containing today (0 before the start, 26 after the end)."""
    calendar_over: bool
    orientation: WeekProgress
    weeks: tuple[WeekProgress, ...]
    """Weeks 1..26."""
    problems: ProblemProgress
    next_week: int | None
    """The first week (0..26) that is not done."""
    next_step: str

    @property
    def all_weeks(self) -> tuple[WeekProgress, ...]:
        return (self.orientation, *self.weeks)

    @property
    def elapsed_weeks(self) -> float | None:
        """Weeks since the start (0.0 = first day of week 1); None without a start date."""
        return None if self.start is None else (self.today - self.start).days / 7


def week_dates(start: date, week: int) -> tuple[date, date]:
    """First and last day of a week: week N spans start + 7(N-1) .. +6; week 0 precedes it."""
    first = start + timedelta(days=7 * (week - 1))
    return first, first + timedelta(days=6)


def build_report(plan: Plan, grades: Mapping[str, NotebookGrade], start_date: date | None,
                 today: date, bank: Bank | None = None,
                 history: Mapping[str, practice.ProblemHistory] | None = None) -> Report:
    """The whole report from the plan, the grades, two dates, the problem bank (None: an
    empty one) and the mistakes history; reads nothing else."""
    by_week: dict[int, list[NotebookGrade]] = {}
    for grade in grades.values():
        by_week.setdefault(grade.week, []).append(grade)

    if start_date is None:
        current, last_ended = None, None
    else:
        days = (today - start_date).days
        current = 0 if days < 0 else min(LAST_WEEK, days // 7 + 1)
        last_ended = -1 if days < 0 else min(LAST_WEEK, days // 7)

    rows = [_week_progress(plan, week, by_week.get(week.number, []), start_date, last_ended)
            for week in plan.weeks]

    solved = sum(r.problems_solved for r in rows)
    if start_date is None:
        planned_to_date = due = pace = None
        # no calendar: categories are measured through the latest week graded
        to_date = ended = max((g.week for g in grades.values()), default=0)
    else:
        planned_to_date = plan.cumulative_problems(current)
        due = plan.cumulative_problems(last_ended) if last_ended >= 0 else 0
        pace = "behind" if solved < due else "ahead" if solved > planned_to_date else "on pace"
        to_date, ended = current, last_ended
    bank = bank or Bank(())
    by_category = category_progress(plan, bank, grades, to_date, ended)
    mistakes = mistakes_queue(history or {}, bank, today)
    problems = ProblemProgress(
        solved=solved, planned_to_date=planned_to_date, due=due,
        total_planned=plan.total_problems, pace=pace, by_category=by_category,
        weak=weak_categories(by_category), mistakes=mistakes,
        mistakes_due=sum(m.due_now for m in mistakes))

    next_week = next((r.week for r in rows if r.status != DONE), None)
    return Report(
        start=start_date, today=today, current_week=current,
        calendar_over=last_ended == LAST_WEEK,
        orientation=rows[0], weeks=tuple(rows[1:]), problems=problems,
        next_week=next_week,
        next_step=_next_step(rows, next_week, problems, start_date, today),
    )


def category_progress(plan: Plan, bank: Bank, grades: Mapping[str, NotebookGrade],
                      to_date: int, ended: int) -> dict[str, CategoryProgress]:
    """Solved per category (problems the bank knows) against the plan through `to_date`
    (planned) and `ended` (due)."""
    solved_ids = {gid for g in grades.values() for gid in g.solved_ids}
    solved: dict[str, int] = {}
    for gid in solved_ids:
        problem = bank.get(gid)
        if problem is not None:
            solved[problem.category] = solved.get(problem.category, 0) + 1
    planned = planned_categories(plan, to_date)
    due = planned_categories(plan, ended)
    out = {}
    for c in plan.categories:
        n, d = solved.get(c.id, 0), due[c.id]
        ratio = n / d if d else None
        out[c.id] = CategoryProgress(
            name=c.name, name_zh=c.name_zh, solved=n, planned_to_date=planned[c.id], due=d,
            total=c.total, ratio=ratio, weak=ratio is not None and ratio < WEAK_BELOW)
    return out


def weak_categories(by_category: Mapping[str, CategoryProgress]) -> tuple[str, ...]:
    """Weak category ids, the lowest solved/due ratio first (plan order breaks ties)."""
    weak = [(c.ratio, i, cid) for i, (cid, c) in enumerate(by_category.items()) if c.weak]
    return tuple(cid for *_, cid in sorted(weak))


def mistakes_queue(history: Mapping[str, practice.ProblemHistory], bank: Bank,
                   today: date) -> tuple[Mistake, ...]:
    out = []
    for entry in practice.queued(history):
        problem = bank.get(entry.id)
        out.append(Mistake(id=entry.id, week=week_number(entry.week),
                           category=problem.category if problem else None, due=entry.due,
                           streak=entry.streak, due_now=entry.due <= today))
    return tuple(out)


def _week_progress(plan: Plan, week: Week, graded: list[NotebookGrade], start: date | None,
                   last_ended: int | None) -> WeekProgress:
    by_name = {g.notebook: g for g in graded}
    names = list(week.notebooks) + sorted(set(by_name) - set(week.notebooks))
    notebooks = []
    for name in names:
        g = by_name.get(name)
        notebooks.append(NotebookProgress(
            notebook=name, planned=name in week.notebooks, graded=g is not None,
            score=g.score if g else 0.0, max_score=g.max_score if g else 0.0,
            passed=g.passed if g else False, error=g.error if g else None,
            problems_solved=g.problems_solved if g else 0,
        ))
    # the problem bank counts against the pace (by category), not in the week's status
    done = all(n.passed for n in notebooks if n.notebook != week.problems_notebook)
    started = any(n.score > 0 or n.passed for n in notebooks)
    ended = last_ended is not None and week.number <= last_ended
    status = DONE if done else BEHIND if ended else IN_PROGRESS if started else NOT_STARTED
    starts, ends = week_dates(start, week.number) if start else (None, None)
    return WeekProgress(
        week=week.number, title=week.title, title_zh=week.title_zh, phase=week.phase,
        status=status,
        score=sum(n.score for n in notebooks), max_score=sum(n.max_score for n in notebooks),
        checkpoint=week.checkpoint.number if week.checkpoint else None,
        starts=starts, ends=ends, notebooks=tuple(notebooks),
        problems_planned=week.problems.count,
        problems_planned_cumulative=plan.cumulative_problems(week.number),
        problems_solved=sum(n.problems_solved for n in notebooks),
    )


def _next_step(rows: list[WeekProgress], next_week: int | None, problems: ProblemProgress,
               start: date | None, today: date) -> str:
    if next_week is None:
        step = "every week is done: keep redoing mistakes (错题重做) and go interview"
    else:
        row = rows[next_week]
        name = week_name(next_week)
        failing = next((n for n in row.notebooks if n.graded and not n.passed), None)
        if failing is not None:
            why = f"error: {failing.error}" if failing.error else \
                f"{_num(failing.score)}/{_num(failing.max_score)}"
            step = (f"week {next_week}: bring {name}/{failing.notebook} to full marks ({why}), "
                    f"then `netsprint grade {name}`")
        else:
            todo = next(n for n in row.notebooks if not n.graded)
            step = (f"week {next_week}: work through notebooks/{name}/{todo.notebook}, "
                    f"then `netsprint grade {name}`")
    if start is None:
        step += (f"; set your start date to see the calendar: "
                 f"`netsprint progress --start {today.isoformat()}`")
    elif problems.due is not None and problems.solved < problems.due:
        step += f"; solve {problems.due - problems.solved} more problems to catch up with the pace"
    return step


def _num(x: float) -> str:
    return f"{x:g}"


# --------------------------------------------------------------------------- output

STATUS_STYLE = {DONE: "green", IN_PROGRESS: "yellow", BEHIND: "bold red", NOT_STARTED: "dim"}
STATUS_COLOR = {DONE: "#2e9d4f", IN_PROGRESS: "#e0a526", BEHIND: "#d6453d",
                NOT_STARTED: "#b8b8b8"}


def print_report(report: Report, console=None) -> None:
    """The rich table and the summary line (narrow consoles get one two-line title column)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    show_from = report.start is not None and console.width >= 100
    wide = console.width >= 120
    table = Table(title="netsprint progress · 26-week plan · 26周计划", title_justify="left",
                  pad_edge=False)
    table.add_column("wk", justify="right", no_wrap=True)
    if wide:
        table.add_column("title", overflow="fold")
        table.add_column("标题", overflow="fold")
    else:
        table.add_column("title · 标题", overflow="fold")
    if show_from:
        table.add_column("from", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("problems", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for row in report.all_weeks:
        marker = f"◆ CP{row.checkpoint}" if row.checkpoint else ""
        if report.current_week == row.week:
            marker = (marker + " ◀ now").strip()
        cells = [str(row.week)]
        cells += [row.title, row.title_zh] if wide else [f"{row.title}\n{row.title_zh}"]
        if show_from:
            cells.append(f"{row.starts:%m-%d}")
        cells += [
            f"{_num(row.score)}/{_num(row.max_score)}" if row.max_score else "-",
            f"[{STATUS_STYLE[row.status]}]{row.status}[/]",
            (f"{row.problems_solved}/{row.problems_planned} Σ{row.problems_planned_cumulative}"
             if row.problems_planned else "-"),
            marker,
        ]
        table.add_row(*cells, style="bold" if report.current_week == row.week else None)
    console.print(table)
    console.print("problems: solved / planned for that week, Σ = planned cumulative",
                  style="dim", highlight=False)
    print_categories(report, console)
    console.print(summary_line(report), highlight=False)


def print_categories(report: Report, console) -> None:
    """Problems by category: solved / due / planned to date / total, weak ones marked."""
    from rich.table import Table

    table = Table(title="problems by category · 算法题分类", title_justify="left",
                  pad_edge=False)
    for column in ("category", "solved", "due", "to date", "total", ""):
        table.add_column(column, justify="left" if column == "category" else "right",
                         no_wrap=True)
    for c in report.problems.by_category.values():
        table.add_row(f"{c.name} · {c.name_zh}", str(c.solved), str(c.due),
                      str(c.planned_to_date), str(c.total),
                      "[bold red]weak[/]" if c.weak else "")
    console.print(table)


def summary_line(report: Report) -> str:
    p = report.problems
    if report.start is None:
        where = "no start date (no calendar)"
        pace = f"problems: {p.solved} solved of {p.total_planned}"
    else:
        if report.current_week == 0:
            where = f"before the start ({report.start.isoformat()}): week 0, orientation"
        elif report.calendar_over:
            where = "the 26 weeks are over"
        else:
            where = f"week {report.current_week} of 26"
        pace = (f"problems: {p.solved} solved, plan {p.planned_to_date} by the end of this week "
                f"({p.due} due so far, {p.total_planned} in all) — {p.pace}")
    extra = ""
    if p.weak:
        extra += " · weak: " + ", ".join(p.by_category[c].name for c in p.weak)
    if p.mistakes:
        extra += (f" · mistakes: {len(p.mistakes)} queued, {p.mistakes_due} due today "
                  "(`netsprint practice`)")
    return f"{where} · {pace}{extra} · next: {report.next_step}"


def progress_figure(report: Report) -> "Figure":
    """Score per week (coloured by status) over cumulative problems vs the plan's pace."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter

    rows = report.all_weeks
    xs = [r.week for r in rows]
    fig = Figure(figsize=(12, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.2])

    phase_spans = [(-0.5, 0.5, "orientation"), (0.5, 7.5, "P2P / NAT"),
                   (7.5, 19.5, "eBPF + Kubernetes"), (19.5, 26.5, "interview sprint")]
    for ax in (top, bottom):
        for i, (a, b, _) in enumerate(phase_spans):
            ax.axvspan(a, b, color="#f2f4f8" if i % 2 else "white", zorder=0)

    # -- top: score fraction per week
    # an outline per week, coloured by status, so a behind week with no score still shows
    top.bar(xs, [1.0] * len(xs), width=0.8, color="none", zorder=1,
            edgecolor=[STATUS_COLOR[r.status] if r.status != NOT_STARTED else "#dddddd"
                       for r in rows],
            linewidth=[1.0 if r.status == NOT_STARTED else 1.6 for r in rows])
    top.bar(xs, [r.fraction for r in rows], width=0.8, zorder=2,
            color=[STATUS_COLOR[r.status] for r in rows])
    for r in rows:
        if r.checkpoint:
            top.annotate(f"CP{r.checkpoint}", (r.week, 1.02), ha="center", va="bottom",
                         fontsize=9, fontweight="bold")
    for a, b, label in phase_spans[1:]:
        top.text((a + b) / 2, 1.17, label, ha="center", va="bottom", fontsize=9,
                 color="#555555")
    top.set_ylim(0, 1.28)
    top.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    top.yaxis.set_major_formatter(PercentFormatter(1.0))
    top.set_ylabel("score / max")
    top.legend(handles=[Patch(color=STATUS_COLOR[s], label=s) for s in STATUSES],
               loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)
    heading = "netsprint progress"
    heading += (f" — started {report.start.isoformat()}, today {report.today.isoformat()}"
                if report.start else " — no start date set (run netsprint progress --start)")
    top.set_title(heading, loc="left", fontsize=11)

    # -- bottom: cumulative problems, plan vs solved
    ends = [w + 0.5 for w in xs]  # the end of week N is the right edge of its bar
    planned = [r.problems_planned_cumulative for r in rows]
    bottom.plot(ends, planned, color="#4a6fa5", lw=2, marker="o", ms=3,
                label="planned (cumulative)")
    solved_cum, total = [], 0
    for r in rows:
        total += r.problems_solved
        solved_cum.append(total)
    last = max((r.week for r in rows if r.problems_solved), default=-1)
    if report.current_week is not None:
        last = max(last, report.current_week - 1)
    if last >= 0:
        bottom.plot(ends[: last + 1], solved_cum[: last + 1], color="#2e9d4f", lw=2,
                    marker="o", ms=3, label="solved (by the week the problem belongs to)")
    for r in rows:
        if r.checkpoint:
            bottom.annotate(f"{r.problems_planned_cumulative}",
                            (r.week + 0.5, r.problems_planned_cumulative),
                            xytext=(-4, 6), textcoords="offset points", ha="right",
                            fontsize=9, fontweight="bold", color="#4a6fa5")
            for ax in (top, bottom):
                ax.axvline(r.week + 0.5, color="#4a6fa5", lw=0.8, ls=":", zorder=1)
    if report.elapsed_weeks is not None:
        x_today = min(max(report.elapsed_weeks + 0.5, -0.5), LAST_WEEK + 0.5)
        for ax in (top, bottom):
            ax.axvline(x_today, color="#d6453d", lw=1.2, ls="--", zorder=3)
        bottom.text(x_today, report.problems.total_planned * 1.04,
                    f" today {report.today.isoformat()}", color="#d6453d", fontsize=9,
                    ha="left", va="top")
        bottom.plot([x_today], [report.problems.solved], "o", color="#d6453d", ms=7, zorder=4,
                    label=f"solved so far: {report.problems.solved}")
        if report.problems.planned_to_date is not None:
            bottom.annotate(f"{report.problems.solved} solved / pace "
                            f"{report.problems.planned_to_date}",
                            (x_today, report.problems.solved), xytext=(8, 10),
                            textcoords="offset points", fontsize=9, color="#d6453d")
    bottom.set_ylim(0, report.problems.total_planned * 1.08)
    bottom.set_ylabel("problems (cumulative)")
    bottom.set_xlabel("week")
    bottom.set_xlim(-0.7, LAST_WEEK + 0.7)
    bottom.set_xticks(xs)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)
    return fig


def chart_png(report: Report) -> bytes:
    """The chart as PNG bytes: `IPython.display.Image(chart_png(report))` shows it anywhere."""
    buffer = io.BytesIO()
    progress_figure(report).savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def render_chart(report: Report, path: Path) -> Path:
    """Write the chart as PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(chart_png(report))
    return path


# --------------------------------------------------------------------------- the command


def load_report(root: Path | None = None, today: date | None = None, *,
                bank: Bank | None = None, history: practice.History | None = None) -> Report:
    """The report from the course's files (for a notebook: `render_chart(load_report(), p)`).
    A caller that already read the bank or the practice history passes them in."""
    course = CourseRoot.find(root)
    if history is None:
        history = practice.read_history(practice.history_file(course))
    return build_report(load_plan(), read_grades(course.grades_file), stored_start(course),
                        today or date.today(), bank if bank is not None else load_bank(), history)


def show_progress(root: Path | None = None) -> Report:
    """For a notebook: print the table and display the chart inline."""
    from IPython.display import Image, display

    report = load_report(root)
    print_report(report)
    display(Image(chart_png(report)))
    return report


def main(start: str | None = None, as_json: bool = False, chart: Path | None = None,
         root: Path | None = None, *, today: date | None = None) -> int:
    """`netsprint progress`: remember --start, print the report, write the chart."""
    course = CourseRoot.find(root)
    if start is not None:
        start_date = parse_start(start)
        remember_start(course, start_date)
    report = load_report(course.root, today)
    chart_path = render_chart(report, Path(chart) if chart else
                              course.state_dir / "progress.png")
    if as_json:
        data = {**asdict(report), "chart": str(chart_path)}
        sys.stdout.write(json.dumps(data, default=date.isoformat, ensure_ascii=False, indent=2)
                         + "\n")
        return 0
    from rich.console import Console

    console = Console()
    if start is not None:
        console.print(f"start date {report.start.isoformat()} saved in {course.settings_file}",
                      highlight=False, soft_wrap=True)
    print_report(report, console)
    console.print(f"chart: {chart_path}", highlight=False, soft_wrap=True)
    return 0
