"""Unit tests of the grading pipeline's small parts."""

from __future__ import annotations

import pytest
from nbformat.v4 import new_code_cell, new_output

from netsprint.course.grading import descendants, timed_out_cells, worker_failure
from netsprint.course.timeouts import DEFAULT_CELL_TIMEOUT
from netsprint.course.paths import CourseRoot, week_number
from netsprint.course.preprocessors import StderrIsNotFailure
from netsprint.course.timeouts import MAX_CELL_TIMEOUT, cell_timeout, requested_timeout
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
        from netsprint.course.grading import kill_tree
        kill_tree(parent.pid)
        parent.wait(5)


def test_weeks_are_named_week00_to_week26(tmp_path):
    assert week_number("week07") == 7
    for bad in ("week27", "week7", "wk01"):
        with pytest.raises(CourseError, match="week00 .. week26"):
            week_number(bad)
    with pytest.raises(CourseError, match="no workbook found"):
        CourseRoot.find(tmp_path)
