"""The problem bank: the catalog's validation (unit) and the bank's acceptance (workbook).

Acceptance (issue 7): >= 180 problems by the plan's categories and weekly pace; each has a
statement, an answer cell and a 1-point grade cell; the release holds no solution; every
reference solution passes its hidden tests within their time limit and, for every problem
with a large input, a brute force of the wrong complexity passes the visible examples and is
stopped by the time limit.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import signal
import time
import threading
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import problem_brute
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from problem_brute import (
    HIDDEN_BEGIN, brute_forces, cell_by_id, grade_cell, hidden_part, judge_problem, nbgrader_meta,
    visible_part,
)

from netsprint.course.plan import LAST_WEEK, load_plan
from netsprint.course.problems.catalog import (
    DATA_DIR, Bank, Problem, check_against_plan, load_bank, pace_table, planned_categories,
)
from netsprint.course.problems.judge import TimeLimitExceeded, within
from netsprint.errors import CourseError

REPO = Path(__file__).resolve().parents[1]
PLAN = load_plan()
WEEKS = list(range(1, LAST_WEEK + 1))
JUDGE_SECONDS_PER_PROBLEM = 30  # far above the ~0.6 s a problem takes: only a hang reaches it


# --------------------------------------------------------------------------- the catalog (unit)

WEEK_FILE = """\
week: {week}
notebook: problems.ipynb
problems:
  - id: reverse_chain
    title: Reverse a chain
    title_zh: 反转链表
    category: linked_list
    difficulty: easy
    function: reverse_chain
    large_input: true
"""


def write_week(folder: Path, week: int, text: str | None = None) -> Path:
    path = folder / f"week{week:02d}.yaml"
    path.write_text(text if text is not None else WEEK_FILE.format(week=week), encoding="utf-8")
    return path


@pytest.mark.unit
def test_load_bank_reads_every_week_file(tmp_path):
    write_week(tmp_path, 1)
    write_week(tmp_path, 2, WEEK_FILE.format(week=2).replace("reverse_chain", "count_ports")
               .replace("linked_list", "hash_table").replace("Reverse a chain", "Count ports"))
    bank = load_bank(tmp_path)
    assert [p.id for p in bank] == ["reverse_chain", "count_ports"]
    first = bank.find("problem_reverse_chain")
    assert first == Problem("reverse_chain", "Reverse a chain", "反转链表", "linked_list",
                            "easy", 1, "problems.ipynb", "reverse_chain", True)
    assert first.grade_id == "problem_reverse_chain" and first.week_name == "week01"
    assert bank.by_week(2) == (bank.find("count_ports"),)
    assert bank.category_counts() == {"linked_list": 1, "hash_table": 1}
    assert bank.get("nope") is None
    with pytest.raises(CourseError, match="netsprint problems"):
        bank.find("nope")


@pytest.mark.unit
@pytest.mark.parametrize("edit, detail", [
    (("category: linked_list", "category: linked_lists"), "field 'category': unknown category"),
    (("difficulty: easy", "difficulty: trivial"), "field 'difficulty'"),
    (("week: 3", "week: 4"), "field 'week': is 4 but the file name says week 3"),
    (("large_input: true", "large_input: yes please"), "field 'large_input'"),
    (("function: reverse_chain", "function: 2fast"), "field 'function'"),
    (("id: reverse_chain", "id: Reverse-Chain"), "field 'id'"),
    (("    title: Reverse a chain\n", ""), "field 'title': is missing"),
    (("    large_input: true\n", "    large_input: true\n    points: 2\n"),
     "field 'points': is not a known field"),
    (("notebook: problems.ipynb", "notebook: problems.txt"), "field 'notebook'"),
    (("week: 3", "week: [3"), "not valid YAML"),
])
def test_validation_names_file_and_field(tmp_path, edit, detail):
    write_week(tmp_path, 3, WEEK_FILE.format(week=3).replace(*edit))
    with pytest.raises(CourseError) as info:
        load_bank(tmp_path)
    assert "week03.yaml" in str(info.value)
    assert detail in str(info.value)


@pytest.mark.unit
def test_duplicate_ids_name_both_files(tmp_path):
    write_week(tmp_path, 1)
    write_week(tmp_path, 2)
    with pytest.raises(CourseError) as info:
        load_bank(tmp_path)
    assert "week02.yaml" in str(info.value) and "already defined in week01.yaml" in str(info.value)
    doubled = WEEK_FILE.format(week=1) + WEEK_FILE.split("problems:\n", 1)[1]
    write_week(tmp_path, 1, doubled)
    with pytest.raises(CourseError, match="week01.yaml: problem 'reverse_chain': field 'id': "
                                          "appears twice"):
        load_bank(tmp_path)


@pytest.mark.unit
def test_a_misnamed_catalog_file_is_refused(tmp_path):
    (tmp_path / "week27.yaml").write_text(WEEK_FILE.format(week=27))
    with pytest.raises(CourseError, match="week01.yaml .. week26.yaml"):
        load_bank(tmp_path)


def fake_problem(i: int, week: int, category: str) -> Problem:
    return Problem(f"p{i}", f"Problem {i}", f"题{i}", category, "medium", week,
                   "problems.ipynb", f"f{i}", False)


def bank_from_plan(plan) -> Bank:
    problems: list[Problem] = []
    for week in plan.weeks[1:]:
        for category, count in week.problems.categories:
            problems += [fake_problem(len(problems), week.number, category) for _ in range(count)]
    return Bank(tuple(problems))


@pytest.mark.unit
def test_check_against_plan_finds_every_mismatch():
    bank = bank_from_plan(PLAN)
    assert len(bank) == 180
    assert check_against_plan(bank, PLAN) == []
    # move one week-1 linked-list problem to dp: week 1 and both category totals disagree
    moved = list(bank.problems)
    moved[0] = fake_problem(0, 1, "dp")
    mismatches = check_against_plan(Bank(tuple(moved)), PLAN)
    assert "week 1: dp: the plan has 0, the bank 1" in mismatches
    assert "week 1: linked_list: the plan has 6, the bank 5" in mismatches
    assert "linked_list: the plan's total is 20, the bank has 19" in mismatches
    assert "dp: the plan's total is 25, the bank has 26" in mismatches
    assert len(mismatches) == 4
    short = check_against_plan(Bank(bank.problems[:-1]), PLAN)
    assert "the bank has 179 problems, the plan 180" in short


@pytest.mark.unit
def test_planned_categories_cumulate_the_weeks():
    assert planned_categories(PLAN, 0) == {c.id: 0 for c in PLAN.categories}
    through_3 = planned_categories(PLAN, 3)
    assert (through_3["linked_list"], through_3["hash_table"], through_3["two_pointers"],
            through_3["sliding_window"], through_3["dp"]) == (6, 6, 3, 3, 0)
    assert sum(planned_categories(PLAN, 7).values()) == PLAN.cumulative_problems(7) == 42
    assert planned_categories(PLAN, LAST_WEEK) == {c.id: c.total for c in PLAN.categories}


@pytest.mark.unit
def test_docs_table_is_the_plans():
    docs = (REPO / "docs" / "problems.md").read_text(encoding="utf-8")
    assert pace_table(PLAN) in docs, "regenerate the table: catalog.pace_table(load_plan())"


# --------------------------------------------------------------------------- the bank (acceptance)


@pytest.fixture(scope="module")
def bank() -> Bank:
    return load_bank()


def week_problems(bank: Bank, week: int) -> tuple[Problem, ...]:
    problems = bank.by_week(week)
    if not problems:
        pytest.fail(f"week {week} has no problems: {DATA_DIR.name}/week{week:02d}.yaml is "
                    "missing or empty")
    return problems


def read_notebook(folder: str, problem: Problem):
    path = REPO / folder / problem.week_name / problem.notebook
    if not path.exists():
        pytest.fail(f"{path.relative_to(REPO)} is missing")
    return nbformat.read(path, as_version=4)


@pytest.mark.workbook
def test_bank_has_the_plans_problems_by_category(bank):
    assert len(bank) >= PLAN.problem_pace.total == 180
    assert bank.category_counts() == {c.id: c.total for c in PLAN.categories}


@pytest.mark.workbook
def test_bank_follows_the_weekly_pace(bank):
    assert check_against_plan(bank, PLAN) == []


@pytest.mark.workbook
def test_difficulty_mix_meets_the_plan_goal(bank):
    # plan.yaml, checkpoint 3: "180+ problems (120+ Medium, 30+ Hard)"
    counts = Counter(p.difficulty for p in bank)
    assert counts["medium"] >= 120 and counts["hard"] >= 30, dict(counts)


@pytest.mark.workbook
def test_no_problem_type_repeats(bank):
    """The Chinese title names the classic problem type; two stories of one type are one
    problem twice."""
    titles_zh = Counter(p.title_zh for p in bank)
    assert [t for t, n in titles_zh.items() if n > 1] == []


@pytest.mark.workbook
def test_statements_are_original_and_titles_unique(bank):
    titles = Counter(p.title.casefold() for p in bank)
    assert [t for t, n in titles.items() if n > 1] == []
    copied = []
    for problem in bank:
        statement = cell_by_id(read_notebook("solutions", problem), f"{problem.id}-statement")
        if statement is not None and "leetcode" in statement.source.casefold():
            copied.append(problem.id)
    assert copied == [], "statements must be our own words, not LeetCode's"


@pytest.mark.workbook
@pytest.mark.parametrize("week", WEEKS)
def test_week_has_its_catalog_and_notebooks(bank, week):
    problems = week_problems(bank, week)
    assert len(problems) == PLAN.week(week).problems.count
    for problem in problems:
        for folder in ("solutions", "notebooks"):
            assert (REPO / folder / problem.week_name / problem.notebook).is_file(), folder
    # Graded beside others (docs/course.md): nothing machine-wide, and within() counts CPU.
    source = json.loads((REPO / "solutions" / problems[0].week_name / problems[0].notebook)
                        .read_text(encoding="utf-8"))
    assert source["metadata"].get("netsprint", {}).get("grading") == "shared"


def answer_defines(source: str, function: str) -> bool:
    return re.search(rf"^(def|class)\s+{re.escape(function)}\b", source, re.M) is not None


def solution_lines(source: str) -> list[str]:
    """The reference body: non-trivial lines between the solution markers."""
    body = source.split("### BEGIN SOLUTION", 1)[-1].split("### END SOLUTION", 1)[0]
    return [line.strip() for line in body.splitlines()
            if len(line.strip()) > 12 and not line.strip().startswith("#")]


def cell_problems(problem: Problem, source_nb, release_nb) -> list[str]:
    """What is wrong with one problem's three cells, in the source and the release."""
    pid, wrong = problem.id, []
    statement = cell_by_id(source_nb, f"{pid}-statement")
    if statement is None or statement.cell_type != "markdown":
        wrong.append(f"{pid}: no markdown cell {pid}-statement")
    elif f"`{problem.grade_id}`" not in statement.source:
        wrong.append(f"{pid}: the statement does not name `{problem.grade_id}`")
    answer = cell_by_id(source_nb, f"{pid}-answer")
    if answer is None or not nbgrader_meta(answer).get("solution"):
        wrong.append(f"{pid}: no solution cell {pid}-answer")
    elif not answer_defines(answer.source, problem.function) or \
            "### BEGIN SOLUTION" not in answer.source:
        wrong.append(f"{pid}: {pid}-answer must define {problem.function} around a solution region")
    test = grade_cell(source_nb, problem.grade_id)
    meta = nbgrader_meta(test) if test is not None else {}
    if not meta.get("grade") or meta.get("points") != 1 or not meta.get("locked"):
        wrong.append(f"{pid}: {problem.grade_id} must be a locked grade cell worth 1 point")
    released_test = grade_cell(release_nb, problem.grade_id)
    if released_test is None or HIDDEN_BEGIN in released_test.source:
        wrong.append(f"{pid}: the release lacks {problem.grade_id} or shows its hidden tests")
    released_answer = cell_by_id(release_nb, f"{pid}-answer")
    if released_answer is None or "NotImplementedError" not in released_answer.source:
        wrong.append(f"{pid}: the release's {pid}-answer is not a stub")
    elif answer is not None:
        leaked = [line for line in solution_lines(answer.source)
                  if line in released_answer.source and "def " not in line]
        if leaked or "### BEGIN SOLUTION" in released_answer.source:
            wrong.append(f"{pid}: the release shows solution text: {leaked[:2]}")
    return wrong


@pytest.mark.workbook
@pytest.mark.parametrize("week", WEEKS)
def test_every_problem_has_statement_answer_and_grade_cell(bank, week):
    wrong = []
    for problem in week_problems(bank, week):
        wrong += cell_problems(problem, read_notebook("solutions", problem),
                               read_notebook("notebooks", problem))
    assert wrong == []


@pytest.mark.workbook
@pytest.mark.parametrize("week", WEEKS)
def test_large_inputs_are_timed_in_the_hidden_tests(bank, week):
    wrong = []
    for problem in week_problems(bank, week):
        test = grade_cell(read_notebook("solutions", problem), problem.grade_id)
        if test is None:
            wrong.append(f"{problem.id}: no grade cell")
            continue
        timed = hidden_part(test.source).count("with within(")
        if problem.large_input and timed != 1:
            wrong.append(f"{problem.id}: large_input needs exactly one `with within(` block in "
                         f"the hidden tests, found {timed}")
        if "within(" in visible_part(test.source):
            wrong.append(f"{problem.id}: the time limit belongs in the hidden tests")
    assert wrong == []


@pytest.mark.workbook
@pytest.mark.parametrize("week", WEEKS)
def test_every_large_input_has_a_brute_force(bank, week):
    large = {p.id for p in week_problems(bank, week) if p.large_input}
    assert set(brute_forces(week)) == large


@pytest.fixture(scope="module")
def judge_pool():
    # Two workers for two cores; each task runs in a worker's main thread, where within()'s
    # SIGPROF is delivered. Spawned, not forked: by now this pytest process may run threads
    # (servers, scrapers of earlier tests), and a child forked while one of them held a lock
    # (imports, logging) waits for it forever.
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.mark.workbook
@pytest.mark.parametrize("week", WEEKS)
def test_reference_passes_and_brute_force_hits_the_limit(bank, judge_pool, week):
    problems = week_problems(bank, week)
    jobs = {p.id: judge_pool.submit(
        judge_problem, str(REPO / "solutions" / p.week_name / p.notebook), p.id, p.function,
        p.large_input, week) for p in problems}
    failures = []
    for pid, job in jobs.items():
        try:
            failures += job.result(timeout=JUDGE_SECONDS_PER_PROBLEM * len(problems))
        except TimeoutError:
            failures.append(f"{pid}: the judge did not finish (a brute force ignoring the alarm?)")
    assert failures == []


@pytest.mark.unit
def test_the_judge_catches_a_brute_force_that_is_fast_enough(tmp_path, monkeypatch):
    """The in-process judge on a one-problem notebook: it must be able to fail."""
    def cell(cell_id, src, **meta):
        c = new_code_cell(src, metadata={"nbgrader": {"grade_id": cell_id.replace("-", "_"),
                                                      **meta}})
        c.id = cell_id
        return c

    nb = new_notebook(cells=[
        cell("setup", "from netsprint.course.problems.judge import within", locked=True),
        cell("total-answer", "def total(xs):\n    ### BEGIN SOLUTION\n    return sum(xs)\n"
                             "    ### END SOLUTION", solution=True),
        cell("problem_total", "assert total([1, 2]) == 3\n### BEGIN HIDDEN TESTS\n"
                              "with within(0.5, 'n = 10**5'):\n    got = total(range(10**5))\n"
                              "assert got == 10**5 * (10**5 - 1) // 2\n### END HIDDEN TESTS",
             grade=True, points=1, locked=True),
    ])
    path = tmp_path / "problems.ipynb"
    nbformat.write(nb, path)

    def quadratic(xs):
        xs, total = list(xs), 0
        for i in range(len(xs)):
            total = sum(xs[:i + 1])  # O(n) per prefix: O(n^2) in all
        return total

    monkeypatch.setattr(problem_brute, "brute_forces", lambda week: {"total": sum})
    assert judge_problem(str(path), "total", "total", True, 1) == [
        "total: the brute force passed the hidden tests: the large input does not separate "
        "the complexities"]
    monkeypatch.setattr(problem_brute, "brute_forces", lambda week: {"total": quadratic})
    assert judge_problem(str(path), "total", "total", True, 1) == []
    monkeypatch.setattr(problem_brute, "brute_forces", lambda week: {})
    assert judge_problem(str(path), "total", "total", True, 1) == [
        "total: large_input but no BRUTE entry in tests/problem_brute/week01.py"]
    assert judge_problem(str(path), "total", "total", False, 1) == []
    monkeypatch.setattr(problem_brute, "brute_forces", lambda week: {"total": lambda xs: 4})
    assert judge_problem(str(path), "total", "total", True, 1)[0].startswith(
        "total: the brute force fails the visible examples: AssertionError")



@pytest.mark.unit
def test_within_interrupts_a_slow_body_and_restores_the_alarm_handler():
    before = signal.getsignal(signal.SIGPROF)
    with pytest.raises(TimeLimitExceeded, match=r"^n = 10\*\*9 took longer than 0.05 s of CPU: a heap"):
        with within(0.05, "n = 10**9", "a heap"):
            while True:
                pass
    with pytest.raises(TimeLimitExceeded, match="lower complexity"):  # the default advice
        with within(0.05):
            while True:
                pass
    with within(5, "a quick body"):
        total = sum(range(1000))
    assert total == 499500
    with within(0.05, "a body that waits"):  # CPU time: waiting is not work, load is not ours
        time.sleep(0.2)
    assert signal.getsignal(signal.SIGPROF) is before
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)


@pytest.mark.unit
def test_within_refuses_a_thread_the_alarm_cannot_reach():
    errors = []

    def body():
        try:
            with within(1):
                pass
        except CourseError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0]
