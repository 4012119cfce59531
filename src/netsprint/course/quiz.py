"""Self-check quizzes: the learner's answers are checked against a key kept in hidden tests.

The key lives only in the solution notebook's hidden test region, which the release strips,
and a failed check names the questions that are wrong, never the right answers.
"""

from __future__ import annotations

from typing import Mapping

from netsprint.errors import CourseError


def _normal(answer: object) -> str:
    return str(answer).strip().lower()


def check_answers(answers: Mapping[str, object], key: Mapping[str, object]) -> None:
    """Raise AssertionError naming missing and wrong questions (not their answers)."""
    if not isinstance(answers, Mapping):
        raise CourseError("answers must be a dict such as {'q1': 'b', 'q2': 'a'}")
    unknown = sorted(set(answers) - set(key))
    missing = sorted(q for q in key if q not in answers or answers[q] in (None, ""))
    wrong = sorted(q for q in key if q not in missing and _normal(answers[q]) != _normal(key[q]))
    problems = []
    if unknown:
        problems.append(f"no such question: {', '.join(unknown)}")
    if missing:
        problems.append(f"unanswered: {', '.join(missing)}")
    if wrong:
        problems.append(f"{len(wrong)} of {len(key)} wrong: {', '.join(wrong)} (re-read the "
                        "section above each one)")
    if problems:
        raise AssertionError("; ".join(problems))
