"""Workbook tier: the release matches the solutions, solutions grade full, releases grade 0,
and grading survives broken and hanging notebooks without touching the learner's files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from netsprint.course import grading, release
from netsprint.course.grading import Limits
from netsprint.course.paths import CourseRoot

pytestmark = pytest.mark.workbook

REPO = Path(__file__).resolve().parents[1]
COURSE = CourseRoot(REPO)


def copy_course(dest: Path) -> CourseRoot:
    """A checkout-like course (no git) with the repo's solutions and release, and the
    deploy/ folder that the week-15 notebooks read (the Dockerfile, the DaemonSet)."""
    shutil.copy(REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    for folder in ("solutions", "notebooks", "deploy"):
        shutil.copytree(REPO / folder, dest / folder)
    return CourseRoot(dest)


def netsprint(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netsprint", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


# --- release ---------------------------------------------------------------------------

def test_release_matches_solutions():
    result = netsprint("release", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_release_check_names_a_solution_edited_without_release(tmp_path):
    course = copy_course(tmp_path)
    source = course.solutions / "week00" / "00-orientation.ipynb"
    nb = nbformat.read(source, 4)
    nb.cells[0].source += "\n\nAn edit that was never released."
    nbformat.write(nb, source)
    result = netsprint("release", "--check", "--root", str(tmp_path))
    assert result.returncode == 1
    assert "notebooks/week00/00-orientation.ipynb: differs" in result.stdout
    assert "notebooks/.release-manifest.json: stale for week00" in result.stdout


def test_release_keeps_a_learner_edit_unless_forced(tmp_path):
    course = copy_course(tmp_path)
    learner_copy = course.notebooks / "week00" / "00-orientation.ipynb"
    assert release.main(["week00"], root=tmp_path) == 0  # records what it released
    learner_copy.write_text(learner_copy.read_text().replace("YOUR CODE HERE", "my work"))
    edited = learner_copy.read_bytes()

    assert release.main(["week00"], root=tmp_path) == 0, "nothing new: keep the work quietly"
    assert learner_copy.read_bytes() == edited

    source = course.solutions / "week00" / "00-orientation.ipynb"
    nb = nbformat.read(source, 4)
    nb.cells[0].source += "\n\nA new paragraph in the solution."
    nbformat.write(nb, source)
    assert release.main(["week00"], root=tmp_path) == 1
    assert learner_copy.read_bytes() == edited, "an edited notebook was overwritten"

    assert release.main(["week00"], root=tmp_path, force=True) == 0
    backups = list((tmp_path / ".netsprint" / "backups").rglob("00-orientation.ipynb"))
    assert [b.read_bytes() for b in backups] == [edited]
    assert "A new paragraph in the solution." in learner_copy.read_text()


def test_release_rejects_a_week_that_is_not_one():
    result = netsprint("release", "--check", "week27")
    assert result.returncode == 2 and "week00 .. week26" in result.stderr


# --- grading of the real weeks ------------------------------------------------------------

# The module fixtures grade the whole course (about 5 minutes on 2 cores):
# longer than the suite's per-test bound, so the tests that set them up get their own.
GRADES_THE_COURSE = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def solution_grades(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grade-solutions")
    course = copy_course(tmp)
    return grading.grade(course, course.weeks(), course.solutions)


@pytest.fixture(scope="module")
def release_grades(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grade-release")
    course = copy_course(tmp)
    return grading.grade(course, course.weeks(), course.notebooks)


@GRADES_THE_COURSE
def test_every_solution_notebook_grades_full(solution_grades):
    assert {r.key for r in solution_grades} == {
        f"{p.parent.name}/{p.name}" for p in COURSE.solutions.glob("week*/*.ipynb")}
    for r in solution_grades:
        failing = [(c.name, c.message) for c in r.cells if c.score < c.max_score]
        assert r.error is None and not failing, (r.key, r.error, failing)
        assert r.max_score > 0 and r.score == r.max_score, r


@GRADES_THE_COURSE
def test_every_untouched_release_notebook_scores_zero(release_grades):
    for r in release_grades:
        assert r.error is None, (r.key, r.error)
        assert r.cells and all(c.score == 0 for c in r.cells), (r.key, r.cells)
        assert all(c.message for c in r.cells), "each failing cell should say why"


def test_solution_notebooks_are_reviewable():
    for path in COURSE.solutions.glob("week*/*.ipynb"):
        nb = nbformat.read(path, 4)
        ids = [c.id for c in nb.cells]
        assert len(ids) == len(set(ids)), f"{path}: duplicate cell ids"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path}: stored output"


# What a notebook graded beside others must not use (docs/course.md, "Writing a week"):
# namespaces and the NAT lab, BPF, root, and the doctor (it loads BPF and adds a namespace).
MACHINE_WIDE = ("NatLab", "VethPair", "PodNode", "require_bpf", "require_tracefs", "BpfProgram",
                "AgentProbes", "geteuid", "netsprint.doctor")


def test_shared_notebooks_touch_nothing_machine_wide():
    touching = {}
    for path in sorted(COURSE.solutions.glob("week*/*.ipynb")):
        nb = nbformat.read(path, 4)
        if nb.metadata.get("netsprint", {}).get(grading.GRADING_KEY) != grading.SHARED:
            continue
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        if found := [m for m in MACHINE_WIDE if m in code]:
            touching[f"{path.parent.name}/{path.name}"] = found
    assert not touching, f"graded 'shared' but machine-wide: {touching}"


@GRADES_THE_COURSE
def test_solution_notebooks_run_without_errors_in_any_cell(solution_grades):
    """Graded cells are checked by grading; this covers the demos and plots around them
    (autograde ran every cell of each solution notebook)."""
    unrun = [r.key for r in solution_grades if r.error]  # no outputs: nothing to look at
    assert solution_grades and not unrun, unrun
    errors = {r.key: r.other_errors for r in solution_grades if r.other_errors}
    assert not errors, errors


# --- grading broken and hanging notebooks ---------------------------------------------------

def graded_notebook(solution: str, test: str, points: int = 1) -> nbformat.NotebookNode:
    def meta(**kw):
        base = {"grade": False, "solution": False, "locked": False, "schema_version": 3}
        return {"nbgrader": {**base, **kw}}

    nb = new_notebook(cells=[
        new_markdown_cell("A tiny exercise.", metadata=meta(grade_id="intro", locked=True)),
        new_code_cell(solution, metadata=meta(grade_id="answer", solution=True)),
        new_code_cell(test, metadata=meta(grade_id="test_answer", grade=True, locked=True,
                                          points=points)),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


@pytest.fixture
def tiny_course(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text((REPO / "nbgrader_config.py").read_text())
    week = tmp_path / "solutions" / "week00"
    week.mkdir(parents=True)
    answer = "def answer():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION\n"
    for name in ("a-hangs", "b-fine", "c-spins"):
        nbformat.write(graded_notebook(answer, "assert answer() == 42"), week / f"{name}.ipynb")
    learner = tmp_path / "notebooks" / "week00"
    learner.mkdir(parents=True)
    for name in ("a-hangs", "b-fine", "c-spins"):
        shutil.copy(week / f"{name}.ipynb", learner / f"{name}.ipynb")
    return tmp_path


def write_learner(course: Path, name: str, solution: str) -> bytes:
    nb = graded_notebook(solution, "assert answer() == 42")
    path = course / "notebooks" / "week00" / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path.read_bytes()


def test_infinite_loops_are_reported_and_grading_goes_on(tiny_course):
    hangs = write_learner(tiny_course, "a-hangs", "while True:\n    pass\n")
    # Swallows the kernel's interrupt: only the wall-clock limit can stop it.
    spins = write_learner(tiny_course, "c-spins",
                          "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                          "    except KeyboardInterrupt:\n        pass\n")
    results = {r.notebook: r for r in grading.grade(
        CourseRoot(tiny_course), ["week00"], tiny_course / "notebooks", Limits(cell=3, notebook=40))}

    a = results["a-hangs.ipynb"]
    assert a.score == 0 and a.stopped_cells == ["answer"], a
    assert results["b-fine.ipynb"].score == 1, results["b-fine.ipynb"]
    c = results["c-spins.ipynb"]
    assert c.score == 0 and c.error and "time limit" in c.error, c
    learner = tiny_course / "notebooks" / "week00"
    assert (learner / "a-hangs.ipynb").read_bytes() == hangs
    assert (learner / "c-spins.ipynb").read_bytes() == spins


def test_syntax_errors_and_corrupt_files_get_a_clear_report(tiny_course):
    write_learner(tiny_course, "a-hangs", "def answer(:\n    return 42\n")
    (tiny_course / "notebooks" / "week00" / "c-spins.ipynb").write_text("{ not json")
    results = {r.notebook: r for r in grading.grade(
        CourseRoot(tiny_course), ["week00"], tiny_course / "notebooks", Limits(cell=10))}
    assert results["a-hangs.ipynb"].score == 0
    assert results["a-hangs.ipynb"].cells[0].message.startswith("NameError"), results
    # ... and the cause, in the learner's own (ungraded) cell, is named too
    assert any("SyntaxError" in e for e in results["a-hangs.ipynb"].other_errors), results
    assert results["b-fine.ipynb"].score == 1 and not results["b-fine.ipynb"].other_errors
    assert results["c-spins.ipynb"].error, "a corrupt notebook must be reported"


def test_grade_records_results_in_the_git_ignored_gradebook(tiny_course):
    grades = tiny_course / ".netsprint" / "grades.json"
    elsewhere = tiny_course / "scratch"
    shutil.copytree(tiny_course / "notebooks", elsewhere)
    assert grading.main(["week00"], notebooks=elsewhere, as_json=True, root=tiny_course,
                        limits=Limits(cell=10)) == 0
    assert not grades.exists(), "grading a scratch folder must not overwrite the gradebook"

    assert grading.main(["week00"], as_json=True, root=tiny_course, limits=Limits(cell=10)) == 0
    entry = json.loads(grades.read_text())["notebooks"]["week00/b-fine.ipynb"]
    assert entry["score"] == 1.0 and entry["max_score"] == 1.0 and entry["graded_at"]
    assert ".netsprint/" in (REPO / ".gitignore").read_text().split()
