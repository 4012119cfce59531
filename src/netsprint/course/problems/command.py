"""`netsprint problems` (list the bank) and `netsprint practice` (today's redo set).

Each command has `add_*_arguments(parser)` and `run_*(args)`; cli.py wires them. Both read
the learner's state from the course root (`.netsprint/grades.json` for what is solved,
`.netsprint/problems.json` for the mistakes queue) and print a rich table or, with --json,
JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from netsprint.course.paths import CourseRoot
from netsprint.course.plan import load_plan
from netsprint.course.problems import practice
from netsprint.course.problems.catalog import Bank, Problem, load_bank
from netsprint.errors import CourseError

DEFAULT_PRACTICE_LIMIT = 5  # about the plan's 60-minute weekday problem slot


def add_course_root(parser: argparse.ArgumentParser) -> None:
    """`--root`, for every command that reads or writes the learner's workbook."""
    parser.add_argument("--root", type=Path, default=None,
                        help="the workbook checkout (default: found from the current directory)")


# --------------------------------------------------------------------------- problems


def add_problems_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    parser.add_argument("--week", type=int, default=None, metavar="N",
                        help="only week N's problems")
    parser.add_argument("--category", default=None, metavar="C",
                        help="only one category (linked_list, dp, ...)")
    add_course_root(parser)


def run_problems(args: argparse.Namespace) -> int:
    plan = load_plan()
    bank = load_bank()
    if args.category is not None and args.category not in {c.id for c in plan.categories}:
        raise CourseError(f"unknown category {args.category!r}; known: "
                          + ", ".join(c.id for c in plan.categories))
    if args.week is not None:
        plan.week(args.week)  # a CourseError for a week that does not exist
    chosen = [p for p in bank if (args.week is None or p.week == args.week)
              and (args.category is None or p.category == args.category)]
    solved = solved_grade_ids(args.root)
    rows = [problem_row(p, solved) for p in chosen]
    if args.json:
        _print_json(rows)
        return 0
    print_problems(rows, bank)
    return 0


def solved_grade_ids(root: Path | None) -> set[str] | None:
    """Grade ids at full marks in the grades file (None: no workbook here to ask)."""
    from netsprint.course.progress import read_grades

    try:
        course = CourseRoot.find(root)
    except CourseError:
        if root is not None:
            raise
        return None  # listing the bank needs no checkout; "solved" then is unknown
    return {gid for g in read_grades(course.grades_file).values() for gid in g.solved_ids}


def problem_row(problem: Problem, solved: set[str] | None) -> dict[str, Any]:
    return {"id": problem.id, "title": problem.title, "title_zh": problem.title_zh,
            "category": problem.category, "difficulty": problem.difficulty,
            "week": problem.week, "notebook": problem.notebook, "function": problem.function,
            "large_input": problem.large_input, "grade_id": problem.grade_id,
            "solved": None if solved is None else problem.grade_id in solved}


def print_problems(rows: list[dict[str, Any]], bank: Bank) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"netsprint problems · 算法题 ({len(rows)} of {len(bank)})",
                  title_justify="left", pad_edge=False)
    for column in ("id", "title · 标题", "category", "difficulty", "wk", "solved"):
        table.add_column(column, overflow="fold",
                         justify="right" if column == "wk" else "left")
    for row in rows:
        mark = "?" if row["solved"] is None else "[green]✓[/]" if row["solved"] else ""
        table.add_row(row["id"], f"{row['title']} · {row['title_zh']}", row["category"],
                      row["difficulty"], str(row["week"]), mark)
    console.print(table)
    if not rows:
        console.print("no problems match: `netsprint problems` without filters lists the bank",
                      highlight=False)


# --------------------------------------------------------------------------- practice


def add_practice_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--limit", type=int, default=DEFAULT_PRACTICE_LIMIT, metavar="N",
                        help=f"at most N problems (default {DEFAULT_PRACTICE_LIMIT}; 0: all due)")
    add_course_root(parser)


def run_practice(args: argparse.Namespace, today: date | None = None) -> int:
    from netsprint.course.progress import load_report

    today = today or date.today()
    course = CourseRoot.find(args.root)
    bank, history = load_bank(), practice.read_history(practice.history_file(course))
    report = load_report(course.root, today, bank=bank, history=history)
    limit = args.limit if args.limit and args.limit > 0 else None
    data = practice_document(report, history, bank, today, limit)
    if args.json:
        _print_json(data)
    else:
        print_practice(data)
    return 0


def practice_document(report, history, bank, today: date, limit: int | None) -> dict[str, Any]:
    """`practice --json` from what `progress` knows: today's set (at most `limit`), weakest
    categories first."""
    weakness = {cid: c.ratio for cid, c in report.problems.by_category.items()
                if c.ratio is not None}
    redo = practice.todays_set(history, today, bank, weakness, limit)
    return practice_summary(history, redo, today, report.problems.weak)


def practice_summary(history, redo: list[practice.Redo], today: date,
                     weak: tuple[str, ...]) -> dict[str, Any]:
    """What `practice --json` prints: today's set, the queue's size, and what to do next."""
    queue = practice.queued(history)
    due = practice.due_on(history, today)
    upcoming = next((e for e in queue if e.due > today), None)
    return {
        "today": today.isoformat(),
        "queued": len(queue),
        "due": len(due),
        "redo": [{**asdict(r), "due": r.due.isoformat()} for r in redo],
        "next_due": upcoming.due.isoformat() if upcoming else None,
        "weak_categories": list(weak),
        "message": practice_message(len(queue), len(due), len(redo), upcoming, weak),
    }


def practice_message(queued: int, due: int, shown: int, upcoming, weak: tuple[str, ...]) -> str:
    if due:
        more = f" ({due - shown} more due: `--limit 0` shows all)" if due > shown else ""
        return (f"{shown} problem(s) to redo today{more}: for each, clear the function body, "
                "solve it again, then grade its week")
    if queued:
        return (f"nothing due today; {queued} problem(s) queued, the next on "
                f"{upcoming.due.isoformat()} ({upcoming.id})")
    where = (f"your weakest category is {weak[0]}: `netsprint problems --category {weak[0]}`"
             if weak else "`netsprint progress` shows which week's problems come next")
    return ("the mistakes queue is empty: problems you fail in `netsprint grade` come back "
            f"here, 1, 2 and 4 days later. Next: {where}")


def print_practice(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if data["redo"]:
        table = Table(title=f"netsprint practice · 错题重做 · {data['today']}",
                      title_justify="left", pad_edge=False)
        for column in ("id", "title · 标题", "category", "wk", "due", "streak", "last failure"):
            table.add_column(column, overflow="fold")
        for r in data["redo"]:
            table.add_row(r["id"], f"{r['title']} · {r['title_zh']}", r["category"],
                          r["week"], r["due"], f"{r['streak']}/{practice.PASSES_TO_CLEAR}",
                          r["last_failure"] or "-")
        console.print(table)
        for r in data["redo"]:
            console.print(f"  {r['id']}: {r['how']}", highlight=False, markup=False)
    console.print(data["message"], highlight=False, markup=False)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
