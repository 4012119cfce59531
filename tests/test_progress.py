"""`netsprint progress`: status rules with fixed dates, problem counting, the command's
JSON, the remembered start date, error cases and the chart."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from matplotlib.patches import Rectangle

from netsprint import cli
from netsprint.course.plan import load_plan
from netsprint.course.progress import (
    BEHIND, DONE, IN_PROGRESS, NOT_STARTED, build_report, chart_png, load_report, main,
    parse_grades, progress_figure, render_chart, week_dates,
)
from netsprint.errors import CourseError

pytestmark = pytest.mark.unit

START = date(2026, 11, 23)          # a Monday: week 1 is 11-23 .. 11-29
LAST_DAY_OF_WEEK_4 = date(2026, 12, 20)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def nb(week: int, notebook: str, score: float, max_score: float, cells=(), error=None):
    name = f"week{week:02d}"
    return f"{name}/{notebook}", {
        "week": name, "notebook": notebook, "score": score, "max_score": max_score,
        "graded_at": "2026-11-21T07:00:00+00:00", "error": error,
        "cells": [{"name": n, "score": s, "max_score": m, "message": None}
                  for n, s, m in cells],
    }


def grades_json(*entries) -> dict:
    return {"version": 1, "notebooks": dict(entries)}


def report_for(*entries, start=START, today=LAST_DAY_OF_WEEK_4):
    return build_report(load_plan(), parse_grades(grades_json(*entries)), start, today)


SAMPLE = (
    nb(1, "01-event-loop.ipynb", 20, 20, [("problem_reverse_list", 2, 2), ("test_loop", 18, 18)]),
    nb(1, "02-tcp-echo.ipynb", 10, 10),
    nb(2, "01-udp-socket.ipynb", 12, 20, [("problem_two_sum", 1, 2)]),
    nb(4, "01-hole-punching.ipynb", 3, 20, [("problem_level_order", 3, 3)]),
    nb(6, "02-chat-and-transfer.ipynb", 4, 10),
)


# ----------------------------------------------------------------------------- pure core


def test_week_dates():
    assert week_dates(START, 1) == (date(2026, 11, 23), date(2026, 11, 29))
    assert week_dates(START, 0) == (date(2026, 11, 16), date(2026, 11, 22))
    assert week_dates(START, 26) == (date(2027, 5, 17), date(2027, 5, 23))


def test_statuses_with_a_calendar():
    report = report_for(*SAMPLE)
    status = {w.week: w.status for w in report.all_weeks}
    assert status[0] == BEHIND            # orientation never graded, and the start has passed
    assert status[1] == DONE              # both notebooks at full marks
    assert status[2] == BEHIND            # ended 12-06 at 12/20
    assert status[3] == BEHIND            # ended 12-13, nothing graded
    assert status[4] == IN_PROGRESS       # this week (its last day), partly scored
    assert status[5] == NOT_STARTED
    assert status[6] == IN_PROGRESS       # a future week already worked on
    assert status[26] == NOT_STARTED
    assert report.current_week == 4
    w1, w2 = report.weeks[0], report.weeks[1]
    assert (w1.week, w1.score, w1.max_score) == (1, 30, 30)
    assert (w2.week, w2.score, w2.max_score) == (2, 12, 20)
    assert (w1.starts, w1.ends) == (date(2026, 11, 23), date(2026, 11, 29))


def test_a_week_ends_at_midnight_after_its_last_day():
    report = report_for(*SAMPLE, today=date(2026, 12, 21))
    assert report.current_week == 5
    assert report.weeks[3].status == BEHIND   # week 4


def test_done_needs_every_planned_notebook_at_full_marks():
    report = report_for(nb(1, "01-event-loop.ipynb", 20, 20), today=date(2026, 11, 25))
    assert report.weeks[0].status == IN_PROGRESS
    report = report_for(nb(1, "01-event-loop.ipynb", 20, 20),
                        nb(1, "02-tcp-echo.ipynb", 9.5, 10), today=date(2026, 11, 25))
    assert report.weeks[0].status == IN_PROGRESS


def test_an_extra_graded_notebook_must_pass_too():
    report = report_for(nb(1, "01-event-loop.ipynb", 20, 20), nb(1, "02-tcp-echo.ipynb", 10, 10),
                        nb(1, "03-extra.ipynb", 0, 5), today=date(2026, 11, 25))
    assert report.weeks[0].status == IN_PROGRESS
    assert report.weeks[0].max_score == 35


def test_a_grading_error_is_not_done():
    report = report_for(nb(0, "00-orientation.ipynb", 5, 5, error="kernel died"),
                        today=date(2026, 11, 18))
    assert report.orientation.status == IN_PROGRESS
    assert "kernel died" in report.next_step


def test_a_graded_notebook_without_graded_cells_counts_as_done():
    report = report_for(nb(0, "00-orientation.ipynb", 0, 0), today=date(2026, 11, 18))
    assert report.orientation.status == DONE
    assert report.next_week == 1


def test_before_the_start_nothing_is_behind():
    report = report_for(*SAMPLE, today=date(2026, 11, 20))
    assert report.current_week == 0
    assert BEHIND not in {w.status for w in report.all_weeks}
    assert report.problems.planned_to_date == 0
    assert report.problems.due == 0


def test_after_the_last_week_everything_unfinished_is_behind():
    report = report_for(*SAMPLE, today=date(2027, 6, 1))
    assert report.calendar_over
    assert report.current_week == 26
    assert report.problems.due == 180
    assert report.weeks[25].status == BEHIND
    assert report.weeks[0].status == DONE


def test_without_a_start_date_there_is_no_calendar():
    report = report_for(*SAMPLE, start=None)
    status = {w.week: w.status for w in report.all_weeks}
    assert (status[0], status[1], status[2], status[3]) == (NOT_STARTED, DONE, IN_PROGRESS,
                                                            NOT_STARTED)
    assert BEHIND not in status.values()
    assert report.current_week is None
    assert report.weeks[0].starts is None
    assert report.problems.planned_to_date is None and report.problems.pace is None
    assert "netsprint progress --start" in report.next_step


def test_problems_count_only_at_full_marks():
    report = report_for(
        nb(3, "01-stun.ipynb", 9, 14, [
            ("problem_a", 2, 2),       # solved
            ("problem_b", 1, 2),       # partial: not solved
            ("problem_c", 0, 2),       # not solved
            ("test_dispatch", 5, 5),   # full marks, but not a problem
            ("problem_d", 0, 0),       # nothing to score: not a problem solved
        ]),
        nb(3, "02-nat-type.ipynb", 3, 3, [("problem_e", 3, 3)]),
    )
    week3 = report.weeks[2]
    assert week3.problems_solved == 2
    assert report.problems.solved == 2


def test_problem_pace_by_calendar_week():
    report = report_for(*SAMPLE)   # today: last day of week 4
    # solved: week 1 problem_reverse_list, week 4 problem_level_order (week 2's is partial)
    assert report.problems.solved == 2
    assert report.problems.planned_to_date == 24   # 6 a week through week 4
    assert report.problems.due == 18               # weeks 1..3 have ended
    assert report.problems.pace == "behind"
    assert report.problems.total_planned == 180
    by_week = {w.week: w for w in report.weeks}
    assert (by_week[1].problems_planned, by_week[1].problems_planned_cumulative) == (6, 6)
    assert (by_week[7].problems_planned_cumulative, by_week[19].problems_planned_cumulative,
            by_week[26].problems_planned_cumulative) == (42, 114, 180)
    assert (by_week[20].problems_planned, by_week[24].problems_planned,
            by_week[26].problems_planned) == (8, 10, 14)
    assert "solve 16 more problems" in report.next_step


def test_next_step_points_at_the_first_unfinished_notebook():
    report = report_for(nb(0, "00-orientation.ipynb", 1, 1), *SAMPLE)
    assert report.next_week == 2
    assert "week02/01-udp-socket.ipynb" in report.next_step
    report = report_for(nb(0, "00-orientation.ipynb", 1, 1), *SAMPLE[:2])
    assert "notebooks/week02/" in report.next_step


def test_checkpoint_flags():
    report = report_for()
    assert [w.week for w in report.weeks if w.checkpoint] == [7, 19, 26]


@pytest.mark.parametrize("data, detail", [
    ([], "object"),
    ({"version": 2, "notebooks": {}}, "version"),
    ({"version": 1}, "notebooks"),
    ({"version": 1, "notebooks": {"x": dict(nb(1, "a.ipynb", 1, 2)[1], week="week99")}}, "week"),
    ({"version": 1, "notebooks": {"x": dict(nb(1, "a.ipynb", 1, 2)[1], score="12")}}, "score"),
    ({"version": 1, "notebooks": {"x": dict(nb(1, "a.ipynb", 1, 2)[1], cells=[{"score": 1}])}},
     "cells[0]"),
])
def test_parse_grades_rejects_corrupt_data(data, detail):
    with pytest.raises(CourseError) as info:
        parse_grades(data)
    assert detail in str(info.value)
    assert "netsprint grade" in str(info.value)


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def course(tmp_path) -> Path:
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    (tmp_path / "solutions").mkdir()
    return tmp_path


def write_grades(course: Path, data) -> None:
    state = course / ".netsprint"
    state.mkdir(exist_ok=True)
    text = data if isinstance(data, str) else json.dumps(data)
    (state / "grades.json").write_text(text, encoding="utf-8")


def run_json(capsys, course, **kwargs) -> dict:
    kwargs.setdefault("chart", course / "chart.png")
    assert main(as_json=True, root=course, **kwargs) == 0
    return json.loads(capsys.readouterr().out)


def test_json_shape(course, capsys):
    write_grades(course, grades_json(*SAMPLE))
    data = run_json(capsys, course, start="2026-11-23", today=LAST_DAY_OF_WEEK_4)
    assert (data["start"], data["today"], data["current_week"]) == ("2026-11-23", "2026-12-20", 4)
    weeks = data["weeks"]
    assert [w["week"] for w in weeks] == list(range(1, 27))
    first = weeks[0]
    for key in ("title", "title_zh", "score", "max_score", "status", "checkpoint",
                "problems_planned", "problems_planned_cumulative", "problems_solved"):
        assert key in first
    assert first["title_zh"] == "项目骨架 + epoll 事件循环"
    assert (first["status"], first["score"], first["max_score"]) == ("done", 30, 30)
    assert (first["problems_planned"], first["problems_planned_cumulative"],
            first["problems_solved"]) == (6, 6, 1)
    assert weeks[1]["status"] == "behind" and weeks[3]["status"] == "in progress"
    assert [(w["week"], w["checkpoint"]) for w in weeks if w["checkpoint"]] == [
        (7, 1), (19, 2), (26, 3)]
    assert (first["starts"], first["ends"]) == ("2026-11-23", "2026-11-29")
    assert first["notebooks"][0] == {
        "notebook": "01-event-loop.ipynb", "planned": True, "graded": True, "score": 20,
        "max_score": 20, "passed": True, "error": None, "problems_solved": 1}
    assert data["orientation"]["week"] == 0
    pace = ("solved", "planned_to_date", "due", "total_planned", "pace")
    assert {k: data["problems"][k] for k in pace} == {
        "solved": 2, "planned_to_date": 24, "due": 18, "total_planned": 180, "pace": "behind"}
    assert {"by_category", "weak", "mistakes", "mistakes_due"} <= set(data["problems"])
    assert data["chart"] == str(course / "chart.png")


def test_start_date_is_remembered(course, capsys):
    run_json(capsys, course, start="2026-11-23", today=LAST_DAY_OF_WEEK_4)
    settings = json.loads((course / ".netsprint" / "settings.json").read_text())
    assert settings["start"] == "2026-11-23"
    data = run_json(capsys, course, today=date(2026, 11, 30))
    assert data["start"] == "2026-11-23"
    assert data["current_week"] == 2


def test_other_settings_survive_setting_the_start(course, capsys):
    (course / ".netsprint").mkdir()
    (course / ".netsprint" / "settings.json").write_text('{"theme": "dark"}')
    run_json(capsys, course, start="2027-01-04", today=date(2027, 1, 4))
    settings = json.loads((course / ".netsprint" / "settings.json").read_text())
    assert settings == {"theme": "dark", "start": "2027-01-04"}


def test_no_grades_and_no_start(course, capsys):
    data = run_json(capsys, course, today=date(2026, 11, 30))
    assert data["start"] is None and data["current_week"] is None
    assert {w["status"] for w in data["weeks"]} == {"not started"}
    assert data["problems"]["solved"] == 0 and data["problems"]["planned_to_date"] is None
    assert "--start" in data["next_step"]


@pytest.mark.parametrize("bad", ["2026-13-01", "23/11/2026", "2026-2-3", "tomorrow", ""])
def test_bad_start_date(course, bad):
    with pytest.raises(CourseError, match="YYYY-MM-DD"):
        main(start=bad, as_json=True, chart=course / "c.png", root=course)
    assert not (course / ".netsprint" / "settings.json").exists()


def test_corrupt_stored_start_date(course):
    (course / ".netsprint").mkdir()
    (course / ".netsprint" / "settings.json").write_text('{"start": "soon"}')
    with pytest.raises(CourseError, match="YYYY-MM-DD"):
        main(as_json=True, chart=course / "c.png", root=course)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe not UTF-8"])
def test_corrupt_grades_file(course, content):
    write_grades(course, "")
    (course / ".netsprint" / "grades.json").write_bytes(content)
    with pytest.raises(CourseError) as info:
        main(as_json=True, chart=course / "c.png", root=course)
    assert "grades.json" in str(info.value) and "netsprint grade" in str(info.value)


def test_grades_with_a_wrong_structure(course):
    write_grades(course, {"version": 1, "notebooks": []})
    with pytest.raises(CourseError, match="notebooks"):
        main(as_json=True, chart=course / "c.png", root=course)


@pytest.mark.parametrize("columns", ["160", "80"])
def test_table_output(course, capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    write_grades(course, grades_json(*SAMPLE))
    assert main(start="2026-11-23", root=course, today=LAST_DAY_OF_WEEK_4) == 0
    out = capsys.readouterr().out
    assert "项目骨架" in out and "Project skeleton" in out
    assert "CP1" in out and "CP3" in out
    assert "behind" in out and "done" in out
    assert "week 4 of 26" in out
    assert str(course / ".netsprint" / "progress.png") in out


def test_table_without_start_says_how_to_set_it(course, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(root=course, chart=course / "c.png", today=date(2026, 11, 30)) == 0
    assert "netsprint progress --start 2026-11-30" in capsys.readouterr().out


def test_cli_entry_point(course, capsys):
    assert cli.main(["progress", "--root", str(course), "--json",
                     "--chart", str(course / "c.png")]) == 0
    assert len(json.loads(capsys.readouterr().out)["weeks"]) == 26
    assert cli.main(["progress", "--root", str(course), "--start", "2026-02-30"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the chart


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000


def test_chart_written_to_the_default_path(course, capsys):
    write_grades(course, grades_json(*SAMPLE))
    main(start="2026-11-23", as_json=True, root=course, today=LAST_DAY_OF_WEEK_4)
    path = course / ".netsprint" / "progress.png"
    assert json.loads(capsys.readouterr().out)["chart"] == str(path)
    assert_png(path)


def test_render_chart_without_a_calendar(tmp_path):
    report = report_for(*SAMPLE, start=None)
    path = render_chart(report, tmp_path / "sub" / "p.png")
    assert_png(path)


def test_progress_figure_has_two_panels():
    fig = progress_figure(report_for(*SAMPLE))
    assert len(fig.axes) == 2
    top, bottom = fig.axes
    bars = [p for p in top.patches if isinstance(p, Rectangle) and p.get_width() == pytest.approx(0.8)]
    assert len(bars) == 2 * 27              # an outline and a score bar per week
    scores = [round(p.get_height(), 3) for p in bars[27:]]
    # weeks 0..6 of SAMPLE: -, 30/30, 12/20, -, 3/20, -, 4/10
    assert scores == [0, 1, 0.6, 0, 0.15, 0, 0.4] + [0] * 20
    pace = bottom.lines[0].get_ydata()
    assert (pace[7], pace[19], pace[26]) == (42, 114, 180)


def test_chart_png_and_load_report_for_notebooks(course, capsys):
    write_grades(course, grades_json(*SAMPLE))
    run_json(capsys, course, start="2026-11-23", today=LAST_DAY_OF_WEEK_4)
    report = load_report(course, today=LAST_DAY_OF_WEEK_4)
    assert report.start == START and report.problems.solved == 2
    png = chart_png(report)
    assert png[:8] == PNG_MAGIC and len(png) > 20_000
