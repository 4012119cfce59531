"""Grading runs notebooks side by side, but never two that need the machine to themselves."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

from netsprint.course.grading import RunningWorkers, SourceNotebook, is_manual, run_scheduled
from netsprint.course.grading import main as grading_main
from netsprint.errors import CourseError

pytestmark = pytest.mark.unit


class Recorder:
    """Runs fake jobs, remembering how many exclusive and total jobs ran at once."""

    def __init__(self, exclusive: dict) -> None:
        self.exclusive = exclusive
        self.lock = threading.Lock()
        self.running: set = set()
        self.max_exclusive = 0
        self.max_total = 0

    def __call__(self, job):
        with self.lock:
            self.running.add(job)
            self.max_total = max(self.max_total, len(self.running))
            self.max_exclusive = max(self.max_exclusive,
                                     sum(self.exclusive[j] for j in self.running))
        time.sleep(0.02)  # long enough for the other workers to try to start
        with self.lock:
            self.running.remove(job)
        return f"result of {job}"


def test_exclusive_jobs_never_overlap_and_shared_ones_fill_the_workers():
    queue = [f"e{i}" for i in range(4)] + [f"s{i}" for i in range(8)]
    exclusive = {job: job.startswith("e") for job in queue}
    run = Recorder(exclusive)
    results = run_scheduled(queue, exclusive, run, workers=3)
    assert results == {job: f"result of {job}" for job in queue}
    assert run.max_exclusive == 1
    assert run.max_total == 3, "shared jobs should run beside the exclusive one"


def test_one_worker_runs_everything_in_turn():
    queue = ["a", "b", "c"]
    exclusive = dict.fromkeys(queue, False)
    run = Recorder(exclusive)
    assert set(run_scheduled(queue, exclusive, run, workers=1)) == set(queue)
    assert run.max_total == 1


def test_a_failing_job_stops_the_rest_and_reaches_the_caller():
    queue = ["ok", "boom", "later1", "later2"]
    exclusive = dict.fromkeys(queue, True)
    ran = []

    def run(job):
        ran.append(job)
        if job == "boom":
            raise RuntimeError("worker crashed")
        return job

    with pytest.raises(RuntimeError, match="worker crashed"):
        run_scheduled(queue, exclusive, run, workers=2)
    assert ran == ["ok", "boom"], "a job started after another one failed"


def test_ctrl_c_starts_no_more_jobs_stops_the_running_ones_and_waits_for_them():
    queue = ["first", "second", "third"]
    exclusive = dict.fromkeys(queue, True)  # one at a time: "second" waits behind "first"
    stopped = threading.Event()
    started, finished = [], []

    def run(job):
        started.append(job)
        # SIGINT aimed at the main thread, as the terminal's Ctrl-C would land there
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        stopped.wait(timeout=10)  # a graded notebook runs until stop() kills its worker
        finished.append(job)
        return job

    with pytest.raises(KeyboardInterrupt):
        run_scheduled(queue, exclusive, run, workers=2, stop=stopped.set)
    assert stopped.is_set(), "stop() was not called"
    assert started == ["first"], "a job started after Ctrl-C"
    assert finished == ["first"], "run_scheduled returned before its running job ended"


@pytest.mark.parametrize("jobs", [0, -1])
def test_grade_refuses_fewer_than_one_job(jobs, tmp_path):
    # run_scheduled on no thread would return no results at all
    with pytest.raises(CourseError, match="at least 1"):
        grading_main([], root=tmp_path, jobs=jobs)


def test_running_workers_kills_a_worker_started_after_stop_all():
    workers = RunningWorkers()
    before = subprocess.Popen(["sleep", "30"])
    after = subprocess.Popen(["sleep", "30"])
    try:
        workers.add(before.pid)
        workers.stop_all()
        assert before.wait(timeout=5) == -signal.SIGKILL
        workers.add(after.pid)  # its thread had taken the job just before Ctrl-C
        assert after.wait(timeout=5) == -signal.SIGKILL
    finally:
        for proc in (before, after):
            proc.kill()
            proc.wait()


def _nb(cells, metadata=None) -> dict:
    return {"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5}


def _cell(kind, grade_id, **meta):
    return {"cell_type": kind, "source": "", "metadata": {"nbgrader": {"grade_id": grade_id,
                                                                         **meta}}}


def test_manual_cells_are_listed_and_left_out_of_the_automatic_total(tmp_path):
    import json

    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(_nb([
        _cell("code", "answer", solution=True, grade=False),
        _cell("code", "test_answer", grade=True, solution=False, points=2),
        _cell("markdown", "design_nat", grade=True, solution=True, points=5),
        _cell("markdown", "task_review", task=True, points=3),
    ], metadata={"netsprint": {"grading": "shared"}})))
    source = SourceNotebook.read(path)
    assert source.graded == ("test_answer",)
    assert source.max_score == 2
    assert source.manual == ("design_nat", "task_review")
    assert source.exclusive is False
    assert is_manual({"grade": True, "solution": True}) and not is_manual({"grade": True})


def test_notebooks_are_exclusive_unless_they_say_otherwise(tmp_path):
    import json

    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(_nb([])))
    assert SourceNotebook.read(path).exclusive is True
