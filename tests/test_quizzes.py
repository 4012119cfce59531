"""Self-check quizzes keep their answers out of the learner's notebooks (issue 7): the key
lives only in a hidden test region of the solution notebook, which the release strips."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from netsprint.course.quiz import check_answers

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def quiz_keys(source: str) -> list[dict[str, object]]:
    """Every literal dict passed as `key` to check_answers inside hidden test regions."""
    keys = []
    for region in HIDDEN.findall(source):
        tree = ast.parse(region.replace("\t", "    "))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "check_answers":
                arg = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "key"), None)
                if isinstance(arg, ast.Dict):
                    keys.append(ast.literal_eval(arg))
                elif isinstance(arg, ast.Name):  # key = {...}; check_answers(answers, key)
                    keys.extend(ast.literal_eval(a.value) for a in ast.walk(tree)
                                if isinstance(a, ast.Assign) and isinstance(a.value, ast.Dict)
                                and any(getattr(t, "id", "") == arg.id for t in a.targets))
    return keys


def quizzes() -> list[tuple[Path, str, dict]]:
    """(solution notebook, quiz cell id, key) for every key in a hidden test region."""
    found = []
    for path in sorted(REPO.glob("solutions/week*/*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            if cell["cell_type"] == "code" and "check_answers" in "".join(cell["source"]):
                found.extend((path, cell["id"], key)
                             for key in quiz_keys("".join(cell["source"])))
    return found


def answer_patterns(key: dict) -> list[re.Pattern]:
    """`"q1": "b"` as it could be written in JSON-escaped notebook text, either quotes."""
    return [re.compile(r"""\\?["']%s\\?["']\s*:\s*\\?["']?%s\\?["']?[\s,}\\]"""
                       % (re.escape(str(q)), re.escape(str(a))), re.I)
            for q, a in key.items()]


def test_the_interview_weeks_have_quizzes():
    weeks = {p.parent.name for p, _, _ in quizzes()}
    assert {f"week{n}" for n in range(20, 27)} <= weeks, sorted(weeks)


@pytest.mark.parametrize("path,cell_id,key", quizzes(),
                         ids=lambda v: getattr(v, "name", None) or (v if isinstance(v, str)
                                                                     else "key"))
def test_quiz_answers_are_not_in_the_release(path, cell_id, key):
    release = REPO / "notebooks" / path.parent.name / path.name
    text = release.read_text(encoding="utf-8")
    # the import of check_answers may sit in the hidden region: look for the cell itself
    assert cell_id in {c["id"] for c in json.loads(text)["cells"]}, \
        f"the release lost the quiz cell {cell_id}"
    leaked = [p.pattern for p in answer_patterns(key) if p.search(text)]
    assert not leaked, f"{release.relative_to(REPO)} shows answers: {leaked[:3]}"


def test_the_leak_check_can_fail():
    text = json.dumps({"source": ['return {"q1": "b", "q2": "tcp"}']})
    assert any(p.search(text) for p in answer_patterns({"q1": "b"}))
    assert not any(p.search(text) for p in answer_patterns({"q1": "c"}))


def test_check_answers_names_wrong_questions_but_not_their_answers():
    with pytest.raises(AssertionError) as failure:
        check_answers({"q1": "a", "q2": "B"}, {"q1": "c", "q2": "b", "q3": "SYN_SENT"})
    message = str(failure.value)
    assert "q1" in message and "q3" in message and "q2" not in message.split("wrong:")[1]
    assert "SYN_SENT" not in message and "'c'" not in message
    check_answers({"q1": " C ", "q2": "b", "q3": "syn_sent"},
                  {"q1": "c", "q2": "b", "q3": "SYN_SENT"})
