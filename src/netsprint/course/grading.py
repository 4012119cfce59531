"""`netsprint grade`: autograde the learner's notebooks against the hidden tests.

Everything runs in a temporary nbgrader course built from solutions/ (which holds the hidden
tests); the learner's notebooks are copied in as a submission and never modified. Each
notebook is graded in its own child process with a wall-clock limit, so a notebook that
hangs its kernel is reported and grading goes on. Results go to .netsprint/grades.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from netsprint.course.nbconfig import COURSE_ID, LEARNER, gradebook_path, sqlite_url
from netsprint.course.paths import GRADES_VERSION, ROOT_ENV, CourseRoot, read_json, write_json
from netsprint.course.timeouts import cell_timeout
from netsprint.course.workspace import (
    IGNORED, generate_release, submission_dir, temporary_course,
)
from netsprint.errors import CourseError

NOTEBOOK_MARGIN_SECONDS = 60  # kernel start-up and nbgrader's own work, beyond the cells
# Notebook metadata `{"netsprint": {"grading": "shared"}}` marks a notebook that touches
# nothing machine-wide (no namespaces, BPF, fixed ports or wall-clock timing; the problem
# banks' within() limits CPU time, which another notebook beside it does not change), so it
# may be graded beside another; every other notebook is graded alone (see run_scheduled).
GRADING_KEY, SHARED = "grading", "shared"


def is_manual(meta: dict) -> bool:
    """A cell a person grades: nbgrader's manually graded answers (solution and grade both
    set) and tasks. Autograding leaves them unscored, so they count in no automatic total."""
    return bool(meta.get("task") or (meta.get("grade") and meta.get("solution")))


@dataclass
class CellResult:
    name: str
    score: float
    max_score: float
    message: str = ""


@dataclass
class NotebookResult:
    week: str
    notebook: str
    score: float
    max_score: float
    cells: list[CellResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    stopped_cells: list[str] = field(default_factory=list)  # cells stopped at their time limit
    # Errors in cells that are not tests (demos, plots, the learner's own cells): they cost
    # no points but usually explain a failing test further down.
    other_errors: list[str] = field(default_factory=list)
    # Cells a person grades (system-design answers): listed, never in score or max_score.
    manual_cells: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.week}/{self.notebook}"


@dataclass(frozen=True)
class Limits:
    """`cell` caps every cell's timeout; `notebook` caps a whole notebook (None: derived)."""

    cell: int | None = None
    notebook: float | None = None


def grade(course: CourseRoot, weeks: list[str], notebooks: Path, limits: Limits = Limits(),
          progress: Progress | None = None, jobs: int | None = None) -> list[NotebookResult]:
    """Grade every notebook of `weeks`, `jobs` at a time (default: one per CPU, at most 4).

    Notebooks that use the machine (namespaces, BPF, servers, timing) are `exclusive`: at most
    one of them runs at a time, and only `shared` ones (problems, quizzes) run beside it.
    """
    with temporary_course(course, weeks) as tmp:
        for week in weeks:
            generate_release(tmp, week)
            copy_submission(notebooks / week, submission_dir(tmp, week))
        sources = {(week, name): SourceNotebook.read(tmp / "solutions" / week / name)
                   for week in weeks for name in source_notebooks(tmp, week)}
        queue = list(sources)
        task = progress.add_task("grading", total=len(queue)) if progress else None
        workers = RunningWorkers()

        def one(job: tuple[str, str]) -> NotebookResult:
            result = grade_notebook(tmp, *job, sources[job], limits, course.root, workers)
            if progress:  # rich's Progress takes a lock: safe from the scheduler's threads
                progress.update(task, description=f"graded {result.key}", advance=1)
            return result

        exclusive = {job: source.exclusive for job, source in sources.items()}
        done = run_scheduled(queue, exclusive, one, jobs or default_jobs(), workers.stop_all)
    return [done[job] for job in queue]


def source_notebooks(tmp: Path, week: str) -> list[str]:
    return sorted(p.name for p in (tmp / "solutions" / week).glob("*.ipynb"))


def copy_submission(learner_week: Path, dest: Path) -> None:
    if learner_week.is_dir():
        shutil.copytree(learner_week, dest, ignore=IGNORED)
    else:
        dest.mkdir(parents=True)


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def run_scheduled(queue: list, exclusive: dict, run, workers: int,
                  stop: Callable[[], None] = lambda: None) -> dict:
    """Run `run(job)` for every job on `workers` threads, never two exclusive jobs at once.

    Exclusive jobs are started first: they are the long ones, and shared jobs fill the other
    workers meanwhile. The first exception a job raises stops the rest and reaches the
    caller. On Ctrl-C (or any exception in this thread) no job is started any more, `stop()`
    ends the running ones, and their threads are waited for before the exception goes on.
    """
    pending = sorted(queue, key=lambda job: not exclusive[job])
    results: dict = {}
    failure: list[BaseException] = []
    state = threading.Condition()  # guards pending, results, failure, exclusive_running
    exclusive_running = False

    def take():
        nonlocal exclusive_running
        with state:
            while pending and not failure:
                job = next((j for j in pending if not (exclusive[j] and exclusive_running)),
                           None)
                if job is not None:
                    pending.remove(job)
                    exclusive_running |= exclusive[job]
                    return job
                state.wait()
            return None

    def worker() -> None:
        nonlocal exclusive_running
        while (job := take()) is not None:
            try:
                result, error = run(job), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                result, error = None, exc
            with state:
                if error is None:
                    results[job] = result
                else:
                    failure.append(error)
                exclusive_running &= not exclusive[job]
                state.notify_all()

    threads: list[threading.Thread] = []
    try:  # Ctrl-C may land while the threads are still being started
        for _ in range(workers):
            threads.append(threading.Thread(target=worker, daemon=True))
            threads[-1].start()
        for t in threads:
            t.join()
    except BaseException:
        with state:
            pending.clear()
            state.notify_all()
        stop()
        for t in threads:
            if t.ident is not None:  # started
                t.join()
        raise
    if failure:
        raise failure[0]
    return results


def grade_notebook(tmp: Path, week: str, name: str, source: SourceNotebook, limits: Limits,
                   course_root: Path, workers: RunningWorkers) -> NotebookResult:
    started = time.monotonic()
    if not (submission_dir(tmp, week) / name).exists():
        return NotebookResult(week, name, 0.0, source.max_score, error=(
            f"{week}/{name} is missing from your notebooks: `netsprint release {week}` "
            "brings back a fresh copy"))
    wall = limits.notebook or source.budget(limits.cell)
    gradebook = private_gradebook(tmp, week, name)
    error = run_worker(tmp, week, name.removesuffix(".ipynb"), limits.cell, wall, course_root,
                       gradebook, workers)
    result = read_result(tmp, week, name, source, gradebook)
    if error:
        result.error = error
    result.seconds = round(time.monotonic() - started, 2)
    return result


@dataclass(frozen=True)
class SourceNotebook:
    """What grading needs from a source notebook: its automatically graded cells, the cells a
    person grades, its cells' limits, and whether it needs the machine to itself."""

    graded: tuple[str, ...]
    max_score: float
    cell_timeouts: tuple[int, ...]
    manual: tuple[str, ...] = ()
    exclusive: bool = True

    @classmethod
    def read(cls, path: Path) -> "SourceNotebook":
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
        graded = [_nbgrader(c) for c in cells
                  if _nbgrader(c).get("grade") or _nbgrader(c).get("task")]
        auto = [g for g in graded if not is_manual(g)]
        return cls(tuple(g["grade_id"] for g in auto),
                   float(sum(g.get("points", 0) for g in auto)),
                   tuple(cell_timeout(c) for c in cells if c["cell_type"] == "code"),
                   manual=tuple(g["grade_id"] for g in graded if is_manual(g)),
                   exclusive=nb.get("metadata", {}).get("netsprint", {}).get(
                       GRADING_KEY) != SHARED)

    def budget(self, cap: int | None) -> float:
        """Wall-clock seconds for the whole notebook: every cell's limit plus start-up."""
        limits = [min(t, cap) for t in self.cell_timeouts] if cap else self.cell_timeouts
        return sum(limits) + NOTEBOOK_MARGIN_SECONDS


def private_gradebook(tmp: Path, week: str, name: str) -> Path:
    """A copy of the course's gradebook for one notebook: SQLite takes one writer at a time,
    so notebooks graded side by side each write their own."""
    copy = tmp / ".netsprint" / "gradebooks" / f"{week}-{name.removesuffix('.ipynb')}.db"
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(gradebook_path(tmp), copy)
    return copy


class RunningWorkers:
    """The autograde workers one grading has running, so that Ctrl-C can end them all: each
    runs in its own session (so a hung kernel can be killed as a tree), which keeps the
    terminal's SIGINT from reaching them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pids: set[int] = set()
        self._stopped = False

    def add(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)
            stopped = self._stopped
        if stopped:  # started in the moment between stop_all() and its job's thread seeing it
            kill_tree(pid)

    def discard(self, pid: int) -> None:
        with self._lock:
            self._pids.discard(pid)

    def stop_all(self) -> None:
        with self._lock:
            self._stopped = True
            pids = list(self._pids)
        for pid in pids:
            kill_tree(pid)


def run_worker(tmp: Path, week: str, notebook_id: str, cap: int | None, wall: float,
               course_root: Path, gradebook: Path, workers: RunningWorkers) -> str | None:
    """Run the autograde worker; returns an error message, or None when it finished."""
    cmd = [sys.executable, "-m", "netsprint.course.autograde_worker", str(tmp), week, notebook_id,
           "--gradebook", str(gradebook)]
    if cap:
        cmd += ["--cell-timeout", str(cap)]
    # The notebook runs in `tmp`; cells that ask for the learner's course (progress) get it.
    env = {**os.environ, ROOT_ENV: str(course_root)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=tmp, env=env)
    workers.add(proc.pid)
    try:
        _, stderr = proc.communicate(timeout=wall)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.communicate()
        return (f"did not finish within its time limit ({wall:.0f} s) and was stopped: look "
                "for a loop that never ends or a cell that waits forever")
    except BaseException:
        # Any other exit: the worker runs in its own session, so it (and its kernel) would
        # outlive us in a deleted temporary folder. (Ctrl-C reaches the main thread, not
        # this one: run_scheduled stops the workers through RunningWorkers.stop_all.)
        kill_tree(proc.pid)
        proc.wait()
        raise
    finally:
        workers.discard(proc.pid)
    if proc.returncode != 0:
        return worker_failure(stderr) or f"grading failed (exit {proc.returncode})"
    return None


_EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception): .+")


def worker_failure(stderr: str) -> str | None:
    """One sentence from a failed worker's traceback-laden log."""
    if "CellTimeoutError" in stderr:
        return ("a cell did not finish within its time limit and ignored the interrupt, so "
                "this notebook was stopped: look for a loop that never ends or one that "
                "catches KeyboardInterrupt")
    found = [line.strip() for line in stderr.splitlines() if _EXCEPTION_LINE.match(line.strip())]
    if found:
        return f"could not be graded: {found[-1]}"
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else None


def kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (Jupyter starts kernels in their own session,
    so killing the worker's process group alone would leave a spinning kernel behind)."""
    for victim in [pid, *descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def read_result(tmp: Path, week: str, name: str, source: SourceNotebook,
                gradebook: Path) -> NotebookResult:
    """Scores from nbgrader's gradebook, messages from the autograded notebook's outputs."""
    autograded = tmp / "autograded" / LEARNER / week / name
    if not autograded.exists():
        return NotebookResult(week, name, 0.0, source.max_score, error="not graded")
    nb = json.loads(autograded.read_text(encoding="utf-8"))
    messages = failure_messages(nb)
    scores = gradebook_scores(gradebook, week, name.removesuffix(".ipynb"))
    cells = [CellResult(cell, *scores.get(cell, (0.0, 0.0)), messages.get(cell, ""))
             for cell in source.graded]
    return NotebookResult(week, name, sum(c.score for c in cells), source.max_score, cells,
                          stopped_cells=timed_out_cells(nb), other_errors=untested_errors(nb),
                          manual_cells=list(source.manual))


def gradebook_scores(gradebook: Path, week: str,
                     notebook_id: str) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(sqlite_url(gradebook), COURSE_ID) as gb:
        submission = gb.find_submission_notebook(notebook_id, week, LEARNER)
        return {g.name: (float(g.score or 0.0), float(g.max_score)) for g in submission.grades}


def _nbgrader(cell: dict) -> dict:
    """A cell's nbgrader metadata ({} for a cell nbgrader does not manage)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def _errors(cell: dict) -> list[str]:
    """"<ename>: <evalue>" for each error a cell's outputs hold."""
    return [f"{o['ename']}: {o['evalue']}".strip() for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]


def timed_out_cells(nb: dict) -> list[str]:
    """Cells nbclient interrupted at their time limit, by grade_id or cell id."""
    return [_nbgrader(cell).get("grade_id") or cell.get("id", "?")
            for cell in nb["cells"]
            if any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", []))]


def untested_errors(nb: dict) -> list[str]:
    """"<cell id>: <error>" for each cell that is not a test and raised."""
    return [f"{cell.get('id', '?')}: {error}" for cell in nb["cells"]
            if not _nbgrader(cell).get("grade") for error in _errors(cell)]


def failure_messages(nb: dict) -> dict[str, str]:
    """grade_id -> the last error of each test cell that raised."""
    return {_nbgrader(cell)["grade_id"]: _errors(cell)[-1] for cell in nb["cells"]
            if _nbgrader(cell).get("grade") and _errors(cell)}


def record(course: CourseRoot, results: list[NotebookResult]) -> None:
    book = read_json(course.grades_file, {"version": GRADES_VERSION, "notebooks": {}})
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for r in results:
        entry = asdict(r)
        entry["graded_at"] = now
        book["notebooks"][r.key] = entry
    write_json(course.grades_file, book)
    from netsprint.course.problems.practice import record_attempts

    record_attempts(course, results)  # the mistakes queue (错题): docs/problems.md


def render(results: list[NotebookResult], console: Console) -> None:
    table = Table(title="netsprint grade")
    for column in ("notebook", "score", "result"):
        table.add_column(column)
    for r in results:
        verdict = ("[red]" + r.error + "[/red]") if r.error else (
            "[green]full marks[/green]" if r.score == r.max_score else
            f"{sum(c.score < c.max_score for c in r.cells)} test cell(s) failing")
        table.add_row(r.key, f"{r.score:g}/{r.max_score:g}", verdict)
    console.print(table)
    for r in results:
        for cell in r.stopped_cells:
            console.print(f"  {r.key} [bold]{cell}[/bold] was stopped at its time limit: "
                          "a loop that never ends, or a wait for something that never comes?")
        if r.manual_cells:
            console.print(f"  {r.key}: {len(r.manual_cells)} answer(s) for a person to read, "
                          f"not in the score: {', '.join(r.manual_cells)}")
        for error in r.other_errors:
            console.print(f"  {r.key} raised in a cell that is not a test: {error}",
                          markup=False, highlight=False)
        for c in r.cells:
            if c.score < c.max_score:
                console.print(f"  {r.key} [bold]{c.name}[/bold] {c.score:g}/{c.max_score:g}: "
                              f"{c.message or 'no error recorded (did the cell run?)'}")


def main(weeks: list[str], notebooks: Path | None = None, as_json: bool = False,
         root: Path | None = None, limits: Limits = Limits(), jobs: int | None = None) -> int:
    if jobs is not None and jobs < 1:
        raise CourseError(f"--jobs {jobs}: grade at least 1 notebook at a time")
    course = CourseRoot.find(root)
    selected = course.select_weeks(weeks)
    folder = (notebooks or course.notebooks).resolve()
    if not folder.is_dir():
        raise CourseError(f"no notebooks folder at {folder}")
    console = Console(stderr=as_json)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total}"), TimeElapsedColumn(), console=Console(stderr=True),
                  transient=True) as progress:
        results = grade(course, selected, folder, limits, progress, jobs)
    is_workbook = folder == course.notebooks.resolve()
    if is_workbook:
        record(course, results)
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=2, ensure_ascii=False))
    else:
        render(results, console)
        if is_workbook:
            console.print("Scores saved to .netsprint/grades.json; `netsprint progress` shows "
                          "the plan.")
        else:
            console.print(f"Not recorded: {folder} is not the workbook's notebooks/ folder.")
    return 0
