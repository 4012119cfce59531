"""The 26-week plan as data: plan.yaml against the learning plan, and the validator.

Expected values come from plan/26-week-plan.zh.md, not from plan.yaml.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml

from netsprint.course.plan import PLAN_FILE, load_plan, read_plan, validate_plan
from netsprint.errors import CourseError

pytestmark = pytest.mark.unit

# 算法题分类规划 (the plan's category table)
CATEGORY_TABLE = {
    "链表": 20, "哈希表": 20, "二叉树": 20, "动态规划": 25, "滑动窗口": 15,
    "双指针": 15, "BFS/DFS": 20, "二分查找": 15, "贪心/栈/堆": 20, "系统设计题": 10,
}

# The plan's weekly LeetCode column; week 26 says only 错题重做 and carries 180 - 166.
def plan_weekly_count(week: int) -> int:
    if week == 0:
        return 0
    if week <= 19:
        return 6
    if week <= 23:
        return 8
    if week <= 25:
        return 10
    return 14


@pytest.fixture(scope="module")
def plan():
    return load_plan()


@pytest.fixture
def raw():
    return yaml.safe_load(PLAN_FILE.read_text(encoding="utf-8"))


def test_plan_has_weeks_0_to_26_in_order(plan):
    assert [w.number for w in plan.weeks] == list(range(27))
    assert plan.week(0).notebooks == ("00-orientation.ipynb",)
    assert plan.week(1).notebooks == ("01-event-loop.ipynb", "02-tcp-echo.ipynb")
    assert plan.week(7).name == "week07"
    with pytest.raises(CourseError):
        plan.week(27)


SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
WEEKS_WITH_MATERIAL = sorted(int(p.name[4:]) for p in SOLUTIONS.glob("week[0-9][0-9]") if p.is_dir())


@pytest.mark.parametrize("number", WEEKS_WITH_MATERIAL)
def test_a_written_week_has_the_notebooks_the_plan_lists(plan, number):
    """`progress` calls a week done when the plan's notebooks pass: the names must match.
    A week with problems also has its problem-bank notebook."""
    week = plan.week(number)
    written = sorted(p.name for p in (SOLUTIONS / f"week{number:02d}").glob("*.ipynb"))
    extra = [week.problems_notebook] if week.problems_notebook else []
    assert written == sorted([*week.notebooks, *extra])


# Weeks whose plan tasks are review, docs and interview preparation only (week 7: code
# review, README, diagrams, talking points): they build no module, so they name none.
# Weeks 20-26 are the interview sprint: review, quizzes and hand-written classics in notebooks.
REVIEW_WEEKS = {7, *range(20, 27)}
REPO = SOLUTIONS.parent


@pytest.mark.parametrize("number", WEEKS_WITH_MATERIAL)
def test_a_written_week_names_modules_that_exist(plan, number):
    """A task names a package module, or a folder of the checkout (deploy/, docs/)."""
    named = [t.module for t in plan.week(number).tasks if t.module]
    modules = [m for m in named if m.startswith("netsprint")]
    if number in REVIEW_WEEKS:
        assert not modules, f"week {number} is a review week but names {modules}"
    else:
        assert named, f"week {number} names no module"
    for module in modules:
        importlib.import_module(module)
    for folder in set(named) - set(modules):
        assert (REPO / folder).is_dir(), f"week {number} names {folder}, which is missing"


def test_load_plan_is_cached_and_frozen(plan):
    assert load_plan() is plan
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.weeks[3].title = "x"  # type: ignore[misc]


@pytest.mark.parametrize("week, total", [(7, 42), (19, 114), (26, 180)])
def test_cumulative_problems_at_checkpoints(plan, week, total):
    assert plan.cumulative_problems(week) == total
    assert plan.week(week).checkpoint.problems_target == total


def test_every_week_follows_the_plans_pace(plan):
    assert [w.problems.count for w in plan.weeks] == [plan_weekly_count(n) for n in range(27)]
    assert plan.cumulative_problems(25) == 166
    assert plan.total_problems == 180


def test_week_26_carries_the_remaining_14_and_says_why(plan):
    week26 = plan.week(26).problems
    assert week26.count == 14
    assert week26.note and "166" in week26.note and "180" in week26.note
    pace = plan.problem_pace
    assert (pace.plan_weekly_sum, pace.total) == (166, 180)
    assert "166" in pace.note
    assert "166" in PLAN_FILE.read_text(encoding="utf-8").split("version:")[0]  # the comment


def test_category_totals_match_the_plans_table(plan):
    assert {c.name_zh: c.total for c in plan.categories} == CATEGORY_TABLE
    for category in plan.categories:
        allocated = sum(w.problems.by_category().get(category.id, 0) for w in plan.weeks)
        assert allocated == category.total, category.id
    for week in plan.weeks:
        assert sum(week.problems.by_category().values()) == week.problems.count, week.number


@pytest.mark.parametrize("week, focus_zh", [
    (1, "数组/链表"), (2, "哈希表/字符串"), (3, "双指针/滑动窗口"), (4, "二叉树/BFS"),
    (5, "动态规划"), (6, "回溯/贪心"), (7, "图论"),
])
def test_phase_one_problem_categories_follow_the_plan(plan, week, focus_zh):
    assert plan.week(week).problems.focus_zh == focus_zh


def test_review_weeks_are_mistakes_weeks(plan):
    for n in range(20, 27):
        assert "错题" in plan.week(n).problems.focus_zh


def test_every_week_has_english_and_chinese_titles(plan):
    for week in plan.weeks:
        assert week.title.strip() and week.title_zh.strip(), week.number
        assert week.tasks and week.topics and week.notebooks, week.number
        assert any("\u4e00" <= ch <= "\u9fff" for ch in week.title_zh), week.number
    assert plan.week(1).title_zh == "项目骨架 + epoll 事件循环"
    assert plan.week(3).title_zh == "NAT 类型探测"
    assert plan.week(26).title_zh.endswith("最后冲刺")


def test_tasks_carry_the_plans_outputs(plan):
    outputs = {t.output_zh for t in plan.week(1).tasks}
    assert {"event_loop.cpp/h", "tcp_connection.cpp/h", "项目骨架搭建完成"} <= outputs
    assert "C++ 八股文笔记" in {t.output_zh for t in plan.week(20).tasks}
    assert plan.week(1).focus.zh.startswith("C++ 重点")


def test_checkpoints_are_at_weeks_7_19_26(plan):
    assert [(c.number, c.week) for c in plan.checkpoints] == [(1, 7), (2, 19), (3, 26)]
    assert plan.week(7).checkpoint.title_zh == "第7周末检查点"
    assert any("42" in g.zh for g in plan.week(7).checkpoint.goals)
    assert any("Prometheus" in g.zh for g in plan.week(19).checkpoint.goals)
    for week in plan.weeks:
        if week.number not in (7, 19, 26):
            assert week.checkpoint is None


def test_phases(plan):
    expected = {range(1, 8): ("p2p-nat", "阶段一"), range(8, 20): ("ebpf-k8s", "阶段二"),
                range(20, 27): ("interview-sprint", "阶段三")}
    for weeks, (phase_id, zh) in expected.items():
        for n in weeks:
            assert plan.week(n).phase == phase_id
        assert plan.phase(phase_id).name_zh.startswith(zh)


def test_hours_match_the_plans_schedule(plan):
    s = plan.schedule
    assert (s.weekday_hours, s.weekdays, s.weekend_hours, s.weekend_days) == (3, 5, 8, 2)
    assert s.weekly_hours == 31
    # the time-slot tables: 1h + 1h + 1h + 20min; 3h + 4h + 1.5h + 30min
    assert s.table_weekly_hours == pytest.approx((200 * 5 + 540 * 2) / 60)
    assert plan.week(12).hours == 31


def test_the_unmodified_yaml_validates(raw):
    assert validate_plan(raw).cumulative_problems(19) == 114


def _week(raw, n):
    return raw["weeks"][n]


BROKEN = [
    ("week 12", "problems.count", lambda r: _week(r, 12)["problems"].update(count=5)),
    ("week 26", "problems.count", lambda r: _week(r, 26)["problems"].update(count=0)),
    ("week 5", "title_zh", lambda r: _week(r, 5).pop("title_zh")),
    ("week 9", "title", lambda r: _week(r, 9).update(title="")),
    ("week 3", "hours", lambda r: _week(r, 3).update(hours="lots")),
    ("week 4", "titel", lambda r: _week(r, 4).update(titel="typo")),
    ("week 8", "checkpoint", lambda r: _week(r, 8).update(checkpoint=_week(r, 7)["checkpoint"])),
    ("week 19", "checkpoint", lambda r: _week(r, 19).update(checkpoint=None)),
    ("week 7", "checkpoint.problems_target",
     lambda r: _week(r, 7)["checkpoint"].update(problems_target=40)),
    ("week 2", "problems.categories",
     lambda r: _week(r, 2)["problems"].update(categories={"hash_table": 5})),
    ("week 2", "problems.categories.strings",
     lambda r: _week(r, 2)["problems"].update(categories={"strings": 6})),
    ("plan", "categories.linked_list.total",
     lambda r: _week(r, 1)["problems"].update(categories={"hash_table": 6})),
    ("week 14", "phase", lambda r: _week(r, 14).update(phase="p2p-nat")),
    ("week 6", "notebooks[0]", lambda r: _week(r, 6).update(notebooks=["Chat.ipynb"])),
    ("week 10", "tasks[0].text", lambda r: _week(r, 10)["tasks"][0].update(text=3)),
    # the category table's total grows to 181, so week 26 must carry 15
    ("week 26", "problems.count", lambda r: r["categories"][0].update(total=21)),
    ("plan", "problem_pace.per_week[1].weeks",
     lambda r: r["problem_pace"]["per_week"][1].update(weeks=[21, 23])),
    ("plan", "problem_pace.per_week", lambda r: r["problem_pace"]["per_week"].pop()),
    ("week 0", "hours", lambda r: _week(r, 0).update(hours=True)),
    ("plan", "schedule.weekly_hours", lambda r: r["schedule"].update(weekly_hours=30)),
    ("plan", "weeks", lambda r: r["weeks"].pop()),
    ("weeks[3]", "number", lambda r: _week(r, 3).update(number=4)),
]


@pytest.mark.parametrize("where, field, breaks", BROKEN, ids=[f"{w}:{f}" for w, f, _ in BROKEN])
def test_validation_names_the_week_and_field(raw, where, field, breaks):
    broken = copy.deepcopy(raw)
    breaks(broken)
    with pytest.raises(CourseError) as info:
        validate_plan(broken)
    message = str(info.value)
    assert f"{where}:" in message
    assert repr(field) in message


def test_read_plan_reports_bad_yaml(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("weeks: [unclosed\n", encoding="utf-8")
    with pytest.raises(CourseError, match="not valid YAML"):
        read_plan(path)


def test_read_plan_of_a_non_mapping(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(CourseError, match="expected a mapping"):
        read_plan(path)
