"""Checkpoint 3 (week 26) re-runs graded exercises of earlier weeks with their original tests:
every copied cell must stay identical to its origin (and so must the definitions its setup
copies from their weeks' setup cells), the origins must exist, and the sample
must span all three phases of the plan. Also checks the release carries the same stripped
cells. (That no release leaks a quiz key is tests/test_quizzes.py's check, for every week.)"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import nbformat
import pytest

from netsprint.course.plan import load_plan

pytestmark = [pytest.mark.workbook, pytest.mark.unit]

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = Path("week26") / "02-checkpoint-3.ipynb"
ORIGIN = re.compile(r"^(week\d\d)/([^/#]+\.ipynb)#(\w+)$")


@functools.lru_cache(maxsize=None)
def read_notebook(path: Path):
    return nbformat.read(path, 4)


def copied_cells(nb) -> list:
    return [c for c in nb.cells if "copied_from" in c.metadata.get("netsprint", {})]


def drift(nb, root: Path) -> list[str]:
    """Every way the copied cells of `nb` differ from their origins under `root`."""
    problems = []
    for cell in copied_cells(nb):
        origin = cell.metadata["netsprint"]["copied_from"]
        match = ORIGIN.match(origin)
        if not match:
            problems.append(f"{cell.id}: copied_from {origin!r} is not weekNN/name.ipynb#grade_id")
            continue
        week, name, grade_id = match.groups()
        path = root / week / name
        if not path.is_file():
            problems.append(f"{cell.id}: origin notebook {week}/{name} does not exist")
            continue
        found = [c for c in read_notebook(path).cells
                 if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
        if len(found) != 1:
            problems.append(f"{cell.id}: {len(found)} cells with grade_id {grade_id} in {week}/{name}")
            continue
        source = found[0]
        if cell.source != source.source:
            problems.append(f"{cell.id}: source differs from {origin}")
        if cell.cell_type != source.cell_type:
            problems.append(f"{cell.id}: a {cell.cell_type} cell copied from a {source.cell_type} cell")
        mine, theirs = cell.metadata.get("nbgrader", {}), source.metadata.get("nbgrader", {})
        for key in ("grade", "solution", "points", "locked"):
            if mine.get(key) != theirs.get(key):
                problems.append(f"{cell.id}: nbgrader {key} {mine.get(key)!r} != origin's {theirs.get(key)!r}")
    return problems


@pytest.fixture(scope="module")
def checkpoint():
    return nbformat.read(REPO / "solutions" / CHECKPOINT, 4)


def test_copied_cells_equal_their_origins(checkpoint):
    assert copied_cells(checkpoint), "checkpoint 3 copies no cells"
    assert drift(checkpoint, REPO / "solutions") == []


def test_a_drifted_copy_is_reported(checkpoint):
    nb = copy.deepcopy(checkpoint)
    graded = [c for c in copied_cells(nb) if c.metadata["nbgrader"].get("grade")]
    graded[0].source += "\nassert True"
    graded[1].metadata["netsprint"]["copied_from"] = "week99/nowhere.ipynb#test_x"
    graded[2].metadata["nbgrader"]["points"] = 99
    problems = drift(nb, REPO / "solutions")
    assert len(problems) == 3, problems
    assert "source differs" in problems[0] and "does not exist" in problems[1] and "points" in problems[2]


def test_every_graded_copy_is_a_test_with_hidden_tests(checkpoint):
    graded = [c for c in copied_cells(checkpoint) if c.metadata["nbgrader"].get("grade")]
    assert len(graded) >= 6, f"a sample of ~6 exercises, got {len(graded)}"
    for cell in graded:
        assert "### BEGIN HIDDEN TESTS" in cell.source, f"{cell.id}: no hidden tests to re-run"
    ids = [c.metadata["nbgrader"]["grade_id"] for c in checkpoint.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "grade ids must be unique in the notebook"


def test_sample_spans_all_three_phases(checkpoint):
    plan = load_plan()
    weeks = {int(ORIGIN.match(c.metadata["netsprint"]["copied_from"]).group(1)[4:])
             for c in copied_cells(checkpoint) if c.metadata["nbgrader"].get("grade")}
    phases = {p.id for p in plan.phases for w in weeks if w in p}
    assert phases == {"p2p-nat", "ebpf-k8s", "interview-sprint"}, (weeks, phases)


def test_checkpoint_is_shared_and_needs_no_root(checkpoint):
    assert checkpoint.metadata.get("netsprint") == {"grading": "shared"}
    text = "\n".join(c.source for c in checkpoint.cells if c.cell_type == "code")
    for needs_root in ("NatLab", "require_bpf", "BpfProgram", "geteuid"):
        assert needs_root not in text, f"checkpoint 3 is graded 'shared': no {needs_root}"


def test_release_copies_equal_the_released_origins():
    """The release of a copy is the release of its origin (hidden tests stripped the same way)."""
    nb = nbformat.read(REPO / "notebooks" / CHECKPOINT, 4)
    released = copied_cells(nb)
    assert released, "the release lost the copied_from metadata"
    assert drift(nb, REPO / "notebooks") == []
    for cell in released:
        assert "BEGIN HIDDEN TESTS" not in cell.source and "BEGIN SOLUTION" not in cell.source


def setup_blocks(source: str) -> dict[str, list[str]]:
    """The checkpoint setup's `# week NN` blocks: week -> the block's code lines (comments
    left out)."""
    blocks: dict[str, list[str]] = {}
    week = None
    for line in source.splitlines():
        if found := re.fullmatch(r"# week (\d+)", line.strip()):
            week = f"week{int(found.group(1)):02d}"
            blocks[week] = []
        elif week and line.strip() and not line.lstrip().startswith("#"):
            blocks[week].append(line.rstrip())
    return blocks


def test_definitions_copied_into_the_setup_match_their_weeks():
    # The setup re-defines what the copied tests take from their own weeks' setup cells
    # (week 3's constants, week 25's Node): each line must still stand in that week.
    nb = read_notebook(REPO / "solutions" / CHECKPOINT)
    setup = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup")
    blocks = setup_blocks(setup.source)
    assert set(blocks) >= {"week03", "week25"}, blocks.keys()
    for week, lines in blocks.items():
        theirs = {line.rstrip() for path in sorted((REPO / "solutions" / week).glob("*.ipynb"))
                  for cell in read_notebook(path).cells for line in cell.source.splitlines()}
        missing = [line for line in lines if line not in theirs]
        assert not missing, f"lines of the setup's {week} block not found in {week}: {missing}"
