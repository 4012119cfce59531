"""Unit tests of the grading pipeline's small parts."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_output

from netsprint.course.grading import (
    descendants, failure_messages, kill_tree, timed_out_cells, untested_errors, worker_failure,
)
from netsprint.course.nbconfig import course_config
from netsprint.course.paths import CourseRoot, week_number
from netsprint.course.preprocessors import StderrIsNotFailure
from netsprint.course.timeouts import (
    DEFAULT_CELL_TIMEOUT, MAX_CELL_TIMEOUT, cell_timeout, requested_timeout,
)
from netsprint.errors import CourseError

pytestmark = pytest.mark.unit


def test_cells_ask_for_more_time_in_their_first_lines():
    assert requested_timeout("# netsprint: timeout=120\nrun()") == 120
    assert requested_timeout(["import x\n", "#netsprint: timeout = 30\n"]) == 30
    assert requested_timeout("a\nb\nc\nd\ne\n# netsprint: timeout=120") is None
    assert requested_timeout("# netsprint: timeout=99999") == MAX_CELL_TIMEOUT
    assert cell_timeout({"source": "print(1)"}) == DEFAULT_CELL_TIMEOUT


def graded(outputs):
    cell = new_code_cell("x", outputs=outputs)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 1,
                                 "solution": False, "locked": True}
    return cell


def test_stderr_noise_no_longer_zeroes_a_graded_cell():
    from nbgrader.utils import determine_grade

    noisy = graded([new_output("stream", name="stderr", text="warning: clang says\nmore\n")])
    assert determine_grade(noisy)[0] == 0  # nbgrader's own rule, which we work around
    cell, _ = StderrIsNotFailure().preprocess_cell(noisy, {}, 0)
    assert determine_grade(cell) == (1.0, 1.0)
    assert cell.outputs[0].text == "[stderr] warning: clang says\n[stderr] more\n"

    failing = graded([new_output("stream", name="stderr", text="w\n"),
                      new_output("error", ename="AssertionError", evalue="", traceback=[])])
    cell, _ = StderrIsNotFailure().preprocess_cell(failing, {}, 0)
    assert determine_grade(cell)[0] == 0

    ungraded = new_code_cell("x", outputs=[new_output("stream", name="stderr", text="e\n")])
    cell, _ = StderrIsNotFailure().preprocess_cell(ungraded, {}, 0)
    assert cell.outputs[0].name == "stderr"


def test_worker_failures_become_one_sentence():
    log = "Traceback...\n  File x\nnbformat.reader.NotJSONError: Notebook does not appear to be JSON\nPlease see"
    assert worker_failure(log) == ("could not be graded: nbformat.reader.NotJSONError: "
                                   "Notebook does not appear to be JSON")
    assert "time limit" in worker_failure("nbclient.exceptions.CellTimeoutError: A cell timed out")
    assert worker_failure("") is None


def test_timed_out_cells_are_named():
    nb = {"cells": [
        {"id": "a", "metadata": {}, "outputs": [{"output_type": "error", "ename": "CellTimeoutError"}]},
        {"id": "b", "metadata": {"nbgrader": {"grade_id": "sol"}},
         "outputs": [{"output_type": "error", "ename": "CellTimeoutError"}]},
        {"id": "c", "metadata": {}, "outputs": [{"output_type": "error", "ename": "ValueError"}]},
    ]}
    assert timed_out_cells(nb) == ["a", "sol"]


def _error(ename: str, evalue: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def test_errors_are_split_between_test_cells_and_the_others():
    test = {"nbgrader": {"grade": True, "grade_id": "t"}}
    nb = {"cells": [
        {"id": "demo", "metadata": {}, "outputs": [_error("SyntaxError", "bad"),
                                                   {"output_type": "stream", "text": "x"}]},
        {"id": "c1", "metadata": test, "outputs": [_error("NameError", "a"),
                                                   _error("AssertionError", "")]},
        {"id": "c2", "metadata": {"nbgrader": {"grade": True, "grade_id": "ok"}}, "outputs": []},
        {"id": "sol", "metadata": {"nbgrader": {"solution": True, "grade_id": "s"}},
         "outputs": [_error("ValueError", "v")]},
    ]}
    assert untested_errors(nb) == ["demo: SyntaxError: bad", "sol: ValueError: v"]
    assert failure_messages(nb) == {"t": "AssertionError:"}  # the last error, stripped


def test_descendants_finds_grandchildren():
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess,sys,time;"
                               "subprocess.Popen([sys.executable,'-c','import time;time.sleep(30)']);"
                               "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while not descendants(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        kids = descendants(parent.pid)
        assert len(kids) == 1
    finally:
        kill_tree(parent.pid)
        parent.wait(5)


def test_weeks_are_named_week00_to_week26(tmp_path):
    assert week_number("week07") == 7
    for bad in ("week27", "week7", "wk01"):
        with pytest.raises(CourseError, match="week00 .. week26"):
            week_number(bad)
    with pytest.raises(CourseError, match="no workbook found"):
        CourseRoot.find(tmp_path)


def test_netsprint_root_names_the_course_a_graded_notebook_belongs_to(tmp_path, monkeypatch):
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text("")
    elsewhere = tmp_path / "grading-copy"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("NETSPRINT_ROOT", str(course))
    assert CourseRoot.find().root == course.resolve()
    with pytest.raises(CourseError, match="no workbook found"):
        CourseRoot.find(elsewhere)  # an explicit start still searches from there
    monkeypatch.setenv("NETSPRINT_ROOT", str(elsewhere))
    with pytest.raises(CourseError, match="NETSPRINT_ROOT=.* is not a netsprint checkout"):
        CourseRoot.find()


def test_commands_select_weeks_checked_sorted_once_each(tmp_path):
    for name in ("week01", "week00", "notes"):
        (tmp_path / "solutions" / name).mkdir(parents=True)
    course = CourseRoot(tmp_path)
    assert course.select_weeks([]) == ["week00", "week01"]
    assert course.select_weeks(["week03", "week01", "week03"]) == ["week01", "week03"]
    with pytest.raises(CourseError, match="week00 .. week26"):
        course.select_weeks(["week01", "week7"])


def test_the_panels_and_the_cli_grade_with_the_same_settings():
    """nbgrader_config.py (Jupyter's panels) applies nbconfig: same layout, database, limits."""
    from traitlets.config.loader import PyFileConfigLoader

    repo = Path(__file__).resolve().parents[1]
    panels = PyFileConfigLoader("nbgrader_config.py", path=str(repo)).load_config()
    cli = course_config(repo)
    for section, key in [("CourseDirectory", "source_directory"),
                         ("CourseDirectory", "release_directory"),
                         ("CourseDirectory", "db_url"), ("Execute", "timeout"),
                         ("Autograde", "autograde_preprocessors")]:
        assert panels[section][key] == cli[section][key], (section, key)
    assert (panels.CourseDirectory.source_directory,
            panels.CourseDirectory.release_directory) == ("solutions", "notebooks")
    assert panels.CourseDirectory.db_url.endswith("/.netsprint/gradebook.db")
