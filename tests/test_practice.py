"""The mistakes queue (错题) with a fake today, its history file, `netsprint practice` and
`netsprint problems` (JSON and tables), and what `netsprint progress` reports about problems."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from netsprint.course.grading import CellResult, NotebookResult
from netsprint.course.plan import load_plan
from netsprint.course.problems import catalog, practice
from netsprint.course.problems.command import (
    add_practice_arguments, add_problems_arguments, run_practice, run_problems,
)
from netsprint.course.problems.practice import (
    FAILED, NOT_ATTEMPTED, PASSED, Attempt, apply_attempts, attempts_from_results, due_on,
    outcome_of, parse_history, queued, read_history, record_attempts, todays_set, update,
)
from netsprint.course.progress import build_report, main as progress_main, parse_grades
from netsprint.errors import CourseError

pytestmark = pytest.mark.unit

DAY0 = date(2026, 12, 1)
STUB = "NotImplementedError: "


def day(n: int) -> date:
    return DAY0 + timedelta(days=n)


def attempt(outcome: str, pid: str = "merge_routes", week: str = "week01") -> Attempt:
    return Attempt(pid, week, "problems.ipynb", outcome, "AssertionError: got 3" if
                   outcome == FAILED else "")


def run_days(events: list[tuple[int, str]], pid: str = "merge_routes"):
    """Apply (day, outcome) events in order; the history after each one."""
    history, seen = {}, []
    for n, outcome in events:
        history = apply_attempts(history, [attempt(outcome, pid)], day(n))
        seen.append(history.get(pid))
    return seen


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("score, max_score, message, outcome", [
    (1, 1, "", PASSED),
    (0, 1, STUB, NOT_ATTEMPTED),
    (0, 1, "NotImplementedError", NOT_ATTEMPTED),
    (0, 1, "AssertionError: want 3, got 2", FAILED),
    (0, 1, "TimeLimitExceeded: n = 100,000 took longer than 0.5 s", FAILED),
    (0, 1, None, FAILED),
    (0, 0, "", FAILED),
])
def test_outcome_of_a_cell(score, max_score, message, outcome):
    assert outcome_of(score, max_score, message) == outcome


def test_a_failure_is_due_tomorrow_and_passes_double_the_interval():
    failed, pass1, pass2, pass3 = run_days([(0, FAILED), (1, PASSED), (3, PASSED), (7, PASSED)])
    assert (failed.queued, failed.due, failed.streak, failed.interval_days) == (True, day(1), 0, 1)
    assert failed.last_failure == "AssertionError: got 3"
    assert (pass1.due, pass1.streak, pass1.interval_days) == (day(3), 1, 2)
    assert (pass2.due, pass2.streak, pass2.interval_days) == (day(7), 2, 4)
    assert (pass3.queued, pass3.due, pass3.cleared, pass3.streak) == (False, None, day(7), 3)
    assert (pass3.attempts, pass3.failures, pass3.last_outcome) == (4, 1, PASSED)


def test_a_pass_before_the_due_date_changes_nothing():
    failed, same_day, next_day = run_days([(0, FAILED), (0, PASSED), (1, PASSED)])
    assert (same_day.queued, same_day.due, same_day.streak) == (True, day(1), 0)
    assert same_day.attempts == 2
    assert (next_day.streak, next_day.due) == (1, day(3))


def test_a_late_review_still_counts_and_the_gap_runs_from_the_review():
    *_, late = run_days([(0, FAILED), (5, PASSED)])
    assert (late.streak, late.interval_days, late.due) == (1, 2, day(7))


def test_a_failure_in_the_queue_resets_the_streak():
    *_, again = run_days([(0, FAILED), (1, PASSED), (3, PASSED), (7, FAILED)])
    assert (again.queued, again.streak, again.interval_days, again.due) == (True, 0, 1, day(8))
    assert again.failures == 2


def test_a_cleared_problem_failed_again_comes_back():
    *_, cleared, back = run_days([(0, FAILED), (1, PASSED), (3, PASSED), (7, PASSED),
                                  (20, FAILED)])
    assert not cleared.queued
    assert (back.queued, back.due, back.streak, back.cleared) == (True, day(21), 0, day(7))


def test_not_attempted_is_not_a_mistake():
    assert update(None, attempt(NOT_ATTEMPTED), DAY0) is None
    failed, untouched = run_days([(0, FAILED), (2, NOT_ATTEMPTED)])
    assert untouched == failed


def test_a_first_pass_is_recorded_but_not_queued():
    (passed,) = run_days([(0, PASSED)])
    assert (passed.queued, passed.due, passed.attempts, passed.failures) == (False, None, 1, 0)


def test_apply_attempts_does_not_change_its_input():
    history = apply_attempts({}, [attempt(FAILED)], DAY0)
    before = dict(history)
    apply_attempts(history, [attempt(PASSED)], day(1))
    assert history == before


def nb_result(cells, error=None, week="week01") -> NotebookResult:
    return NotebookResult(week, "problems.ipynb", 0.0, float(len(cells)),
                          cells=[CellResult(*c) for c in cells], error=error)


def test_attempts_from_grading_results():
    results = [
        nb_result([("problem_a", 1, 1, ""), ("problem_b", 0, 1, STUB + "write it"),
                   ("problem_c", 0, 1, "AssertionError: boom"), ("test_loop", 0, 3, "x")]),
        nb_result([("problem_d", 0, 1, "x")], error="did not finish within its time limit"),
    ]
    got = attempts_from_results(results)
    assert [(a.problem_id, a.outcome) for a in got] == [
        ("a", PASSED), ("b", NOT_ATTEMPTED), ("c", FAILED)]
    assert got[2] == Attempt("c", "week01", "problems.ipynb", FAILED, "AssertionError: boom")


# --------------------------------------------------------------------------- today's set

TWO_WEEKS = """\
week: {week}
notebook: problems.ipynb
problems:
"""
ENTRY = """\
  - id: {pid}
    title: Title {pid}
    title_zh: 标题{pid}
    category: {category}
    difficulty: medium
    function: f_{pid}
    large_input: false
"""


def write_catalog(folder: Path, weeks: dict[int, list[tuple[str, str]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for week, problems in weeks.items():
        text = TWO_WEEKS.format(week=week) + "".join(
            ENTRY.format(pid=pid, category=category) for pid, category in problems)
        (folder / f"week{week:02d}.yaml").write_text(text, encoding="utf-8")
    return folder


CATALOG = {1: [("l1", "linked_list"), ("l2", "linked_list")],
           2: [("h1", "hash_table"), ("h2", "hash_table")]}


@pytest.fixture
def bank(tmp_path):
    return catalog.load_bank(write_catalog(tmp_path / "data", CATALOG))


def failed_on(history, pid, week, n):
    return apply_attempts(history, [attempt(FAILED, pid, week)], day(n))


def test_todays_set_oldest_due_first_then_weakest_category(bank):
    history = {}
    history = failed_on(history, "h1", "week02", 0)   # due day 1
    history = failed_on(history, "l1", "week01", 1)   # due day 2
    history = failed_on(history, "h2", "week02", 1)   # due day 2
    history = failed_on(history, "l2", "week01", 5)   # due day 6: not today
    weakness = {"linked_list": 0.9, "hash_table": 0.2}
    redo = todays_set(history, day(3), bank, weakness)
    assert [r.id for r in redo] == ["h1", "h2", "l1"]
    assert [r.days_overdue for r in redo] == [2, 1, 1]
    assert redo[0].title == "Title h1" and redo[0].category == "hash_table"
    assert redo[0].function == "f_h1" and "netsprint grade week02" in redo[0].how
    assert "clear the body of `f_h1`" in redo[0].how
    flipped = todays_set(history, day(3), bank, {"linked_list": 0.1, "hash_table": 0.2})
    assert [r.id for r in flipped] == ["h1", "l1", "h2"]
    assert [r.id for r in todays_set(history, day(3), bank, weakness, limit=1)] == ["h1"]
    assert [e.id for e in queued(history)] == ["h1", "h2", "l1", "l2"]
    assert len(due_on(history, day(6))) == 4


def test_a_problem_the_bank_does_not_know_is_still_offered(bank):
    history = failed_on({}, "gone", "week03", 0)
    (redo,) = todays_set(history, day(1), bank)
    assert (redo.id, redo.title, redo.category, redo.week) == ("gone", "gone", "", "week03")


# --------------------------------------------------------------------------- the file


@pytest.fixture
def course(tmp_path, monkeypatch) -> Path:
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    (tmp_path / "solutions").mkdir()
    monkeypatch.setattr(catalog, "DATA_DIR", write_catalog(tmp_path / "data", CATALOG))
    return tmp_path


def test_record_attempts_round_trips_the_history_file(course):
    from netsprint.course.paths import CourseRoot

    root = CourseRoot(course)
    results = [nb_result([("problem_l1", 0, 1, "AssertionError: boom"), ("problem_l2", 1, 1, "")])]
    history = record_attempts(root, results, today=DAY0)
    path = course / ".netsprint" / "problems.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == 1
    assert data["problems"]["l1"]["due"] == "2026-12-02" and data["problems"]["l1"]["queued"]
    assert data["problems"]["l2"]["due"] is None and not data["problems"]["l2"]["queued"]
    assert read_history(path) == history
    record_attempts(root, [nb_result([("problem_l1", 1, 1, "")])], today=day(1))
    assert read_history(path)["l1"].streak == 1


@pytest.mark.parametrize("data, detail", [
    ([], "version"),
    ({"version": 2, "problems": {}}, "version"),
    ({"version": 1, "problems": []}, "'problems'"),
    ({"version": 1, "problems": {"x": {"week": "week01"}}}, "notebook"),
])
def test_a_corrupt_history_says_what_to_do(data, detail):
    with pytest.raises(CourseError) as info:
        parse_history(data)
    assert detail in str(info.value) and "move it aside" in str(info.value)


def test_a_queued_entry_needs_a_due_date():
    good = practice.history_to_json(failed_on({}, "l1", "week01", 0))
    assert parse_history(good)["l1"].due == day(1)
    good["problems"]["l1"]["due"] = None
    with pytest.raises(CourseError, match="queued without a due date"):
        parse_history(good)


# --------------------------------------------------------------------------- the commands


def write_state(course: Path, grades: dict | None = None, history=None) -> None:
    state = course / ".netsprint"
    state.mkdir(exist_ok=True)
    if grades is not None:
        (state / "grades.json").write_text(json.dumps(grades), encoding="utf-8")
    if history is not None:
        (state / "problems.json").write_text(json.dumps(practice.history_to_json(history)),
                                             encoding="utf-8")


def grades_with(*solved: str, failed: tuple[str, ...] = ()) -> dict:
    cells = ([{"name": f"problem_{p}", "score": 1, "max_score": 1} for p in solved]
             + [{"name": f"problem_{p}", "score": 0, "max_score": 1} for p in failed])
    return {"version": 1, "notebooks": {"week01/problems.ipynb": {
        "week": "week01", "notebook": "problems.ipynb", "score": len(solved),
        "max_score": len(cells), "error": None, "cells": cells}}}


def parse(add, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def json_out(capsys):
    return json.loads(capsys.readouterr().out)


def test_problems_json_lists_the_bank_with_solved(course, capsys):
    write_state(course, grades_with("l2"))
    assert run_problems(parse(add_problems_arguments, ["--json", "--root", str(course)])) == 0
    rows = json_out(capsys)
    assert [(r["id"], r["week"], r["solved"]) for r in rows] == [
        ("l1", 1, False), ("l2", 1, True), ("h1", 2, False), ("h2", 2, False)]
    assert rows[0] == {"id": "l1", "title": "Title l1", "title_zh": "标题l1",
                       "category": "linked_list", "difficulty": "medium", "week": 1,
                       "notebook": "problems.ipynb", "function": "f_l1", "large_input": False,
                       "grade_id": "problem_l1", "solved": False}


def test_problems_filters(course, capsys):
    run_problems(parse(add_problems_arguments, ["--json", "--week", "2", "--root", str(course)]))
    assert [r["id"] for r in json_out(capsys)] == ["h1", "h2"]
    run_problems(parse(add_problems_arguments,
                       ["--json", "--category", "linked_list", "--root", str(course)]))
    assert [r["id"] for r in json_out(capsys)] == ["l1", "l2"]
    with pytest.raises(CourseError, match="unknown category 'linked'"):
        run_problems(parse(add_problems_arguments, ["--category", "linked", "--root", str(course)]))
    with pytest.raises(CourseError, match="no week 27"):
        run_problems(parse(add_problems_arguments, ["--week", "27", "--root", str(course)]))


def test_problems_outside_a_checkout_do_not_know_what_is_solved(course, capsys,
                                                                tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # not inside `course`
    monkeypatch.delenv("NETSPRINT_ROOT", raising=False)
    run_problems(parse(add_problems_arguments, ["--json"]))
    assert {r["solved"] for r in json_out(capsys)} == {None}


def test_problems_table(course, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    write_state(course, grades_with("h1"))
    run_problems(parse(add_problems_arguments, ["--root", str(course)]))
    out = capsys.readouterr().out
    assert "Title h1 · 标题h1" in out and "✓" in out and "(4 of 4)" in out


def test_practice_json_with_an_empty_queue(course, capsys):
    assert run_practice(parse(add_practice_arguments, ["--json", "--root", str(course)]),
                        today=DAY0) == 0
    data = json_out(capsys)
    assert (data["today"], data["queued"], data["due"], data["redo"], data["next_due"]) == (
        "2026-12-01", 0, 0, [], None)
    assert "queue is empty" in data["message"] and "netsprint" in data["message"]


def test_practice_json_with_due_problems(course, capsys):
    history = failed_on(failed_on(failed_on({}, "l1", "week01", 0), "h1", "week02", 0),
                        "h2", "week02", 3)
    write_state(course, grades_with(failed=("l1",)), history)
    run_practice(parse(add_practice_arguments, ["--json", "--limit", "1", "--root", str(course)]),
                 today=day(2))
    data = json_out(capsys)
    assert (data["queued"], data["due"], data["next_due"]) == (3, 2, "2026-12-05")
    # l1 and h1 are both due on day 1; without a start date "due" runs to the latest graded
    # week (1), so linked lists (0 of 6 solved) are weak and hash tables not yet due
    (first,) = data["redo"]
    assert (first["id"], first["due"], first["week"]) == ("l1", "2026-12-02", "week01")
    assert "1 more due" in data["message"]
    run_practice(parse(add_practice_arguments, ["--json", "--limit", "0", "--root", str(course)]),
                 today=day(2))
    assert [r["id"] for r in json_out(capsys)["redo"]] == ["l1", "h1"]


@pytest.mark.parametrize("solved, order", [("l2", ["h1", "l1"]), ("h2", ["l1", "h1"])])
def test_practice_orders_equal_due_dates_by_the_weakest_category(course, capsys, solved, order):
    history = failed_on(failed_on({}, "l1", "week01", 0), "h1", "week02", 0)
    write_state(course, grades_with(solved), history)
    (course / ".netsprint" / "settings.json").write_text('{"start": "2026-11-23"}')
    # on 12-21 weeks 1-4 have ended: 6 linked-list and 6 hash-table problems are due, one
    # category has 1 solved, the other 0: the one with 0 comes first
    run_practice(parse(add_practice_arguments, ["--json", "--limit", "0", "--root", str(course)]),
                 today=day(20))
    assert [r["id"] for r in json_out(capsys)["redo"]] == order


def test_practice_nothing_due_names_the_next_date(course, capsys, monkeypatch):
    write_state(course, None, failed_on({}, "l1", "week01", 0))
    run_practice(parse(add_practice_arguments, ["--json", "--root", str(course)]), today=DAY0)
    data = json_out(capsys)
    assert data["redo"] == [] and "next on 2026-12-02 (l1)" in data["message"]
    monkeypatch.setenv("COLUMNS", "160")
    run_practice(parse(add_practice_arguments, ["--root", str(course)]), today=day(1))
    out = capsys.readouterr().out
    assert "Title l1" in out and "netsprint grade week01" in out


# --------------------------------------------------------------------------- progress


START = date(2026, 11, 23)  # a Monday; week 2 ends 2026-12-06, week 3 starts 12-07


def test_progress_by_category_and_weak_categories(course):
    bank = catalog.load_bank()
    grades = parse_grades(grades_with("l1", "l2", "h1"))
    history = failed_on({}, "h2", "week02", 6)
    report = build_report(load_plan(), grades, START, date(2026, 12, 8), bank, history)
    p = report.problems
    ll, ht, tp = (p.by_category[c] for c in ("linked_list", "hash_table", "two_pointers"))
    assert (ll.solved, ll.due, ll.planned_to_date, ll.total) == (2, 6, 6, 20)
    assert (ht.solved, ht.due, ht.planned_to_date) == (1, 6, 6)
    assert (tp.solved, tp.due, tp.planned_to_date, tp.ratio, tp.weak) == (0, 0, 3, None, False)
    assert p.weak == ("hash_table", "linked_list")   # 1/6 and 2/6, both under 60 %
    assert [(m.id, m.week, m.category, m.due, m.due_now) for m in p.mistakes] == [
        ("h2", 2, "hash_table", date(2026, 12, 8), True)]
    assert p.mistakes_due == 1


def test_progress_without_a_calendar_runs_to_the_latest_graded_week(course):
    bank = catalog.load_bank()
    report = build_report(load_plan(), parse_grades(grades_with("l1")), None, DAY0, bank, {})
    ll = report.problems.by_category["linked_list"]
    assert (ll.solved, ll.due, ll.planned_to_date) == (1, 6, 6)
    assert report.problems.weak == ("linked_list",)


def test_a_failed_problem_does_not_hold_back_the_weeks_status(course):
    """The week is judged on its lessons; problems.ipynb counts against the pace only."""
    plan = load_plan()
    data = grades_with("l1", failed=("l2",))
    for name in plan.week(1).notebooks:
        data["notebooks"][f"week01/{name}"] = {"week": "week01", "notebook": name, "score": 5,
                                               "max_score": 5, "error": None, "cells": []}

    def week1():  # on 12-08 week 1 has ended
        report = build_report(plan, parse_grades(data), START, date(2026, 12, 8))
        return next(w for w in report.weeks if w.week == 1)

    assert (week1().status, week1().problems_solved) == ("done", 1)
    data["notebooks"][f"week01/{plan.week(1).notebooks[0]}"]["score"] = 4
    assert week1().status == "behind"


def test_progress_json_reports_categories_and_mistakes(course, capsys):
    write_state(course, grades_with("l1"), failed_on({}, "h1", "week02", 0))
    assert progress_main(start="2026-11-23", as_json=True, chart=course / "c.png", root=course,
                         today=date(2026, 12, 8)) == 0
    problems = json_out(capsys)["problems"]
    assert problems["by_category"]["linked_list"] == {
        "name": "linked list", "name_zh": "链表", "solved": 1, "planned_to_date": 6, "due": 6,
        "total": 20, "ratio": 1 / 6, "weak": True}
    assert problems["mistakes"] == [{"id": "h1", "week": 2, "category": "hash_table",
                                     "due": "2026-12-02", "streak": 0, "due_now": True}]
    assert problems["mistakes_due"] == 1
    assert problems["weak"] == ["hash_table", "linked_list"]   # 0/6 before 1/6


def test_progress_table_names_weak_categories_and_the_queue(course, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    write_state(course, grades_with("l1"), failed_on({}, "h1", "week02", 0))
    progress_main(start="2026-11-23", chart=course / "c.png", root=course,
                  today=date(2026, 12, 8))
    out = capsys.readouterr().out
    assert "problems by category" in out and "weak" in out
    assert "weak: hash table, linked list" in out
    assert "mistakes: 1 queued, 1 due today" in out


# --------------------------------------------------------------------------- end to end


def netsprint(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NETSPRINT_ROOT"}
    return subprocess.run([sys.executable, "-m", "netsprint", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def netsprint_json(*argv: str, cwd: Path):
    done = netsprint(*argv, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_problems_practice_and_progress_through_python_m_netsprint(tmp_path):
    """The installed entry point with the package's own catalog: one week-1 problem solved,
    another failed yesterday and so due today."""
    week1 = catalog.load_bank().by_week(1)
    solved, failed = week1[0], week1[1]
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    (tmp_path / "solutions").mkdir()
    today = date.today()
    history = apply_attempts({}, [attempt(FAILED, failed.id)], today - timedelta(days=1))
    write_state(tmp_path, grades_with(solved.id, failed=(failed.id,)), history)
    root = ("--root", str(tmp_path))

    rows = netsprint_json("problems", "--week", "1", *root, cwd=tmp_path)
    assert [r["id"] for r in rows] == [p.id for p in week1]
    assert {r["id"] for r in rows if r["solved"]} == {solved.id}

    data = netsprint_json("practice", *root, cwd=tmp_path)
    assert (data["today"], data["queued"], data["due"]) == (today.isoformat(), 1, 1)
    assert [(r["id"], r["function"]) for r in data["redo"]] == [(failed.id, failed.function)]

    start = today - timedelta(days=7)  # week 1 has ended: its problems are due
    problems = netsprint_json("progress", "--start", start.isoformat(), "--chart",
                              str(tmp_path / "c.png"), *root, cwd=tmp_path)["problems"]
    assert problems["solved"] == 1
    assert list(problems["by_category"]) == [c.id for c in load_plan().categories]
    assert problems["by_category"][solved.category]["solved"] == 1
    assert [(m["id"], m["due_now"]) for m in problems["mistakes"]] == [(failed.id, True)]

    refused = netsprint("problems", "--week", "27", *root, cwd=tmp_path)
    assert refused.returncode == 2 and "netsprint problems: there is no week 27" in refused.stderr
