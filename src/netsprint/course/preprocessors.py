"""nbgrader preprocessors of our own."""

from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import is_grade


class StderrIsNotFailure(NbGraderPreprocessor):
    """Turns stderr output of graded cells into stdout, marked `[stderr]`.

    nbgrader scores any graded cell with stderr output 0, but clang and bcc print warnings
    there (headers that don't match the running kernel) and libraries print deprecation
    warnings: noise, not failure. A failing test still raises, which nbgrader sees as an
    error output; that alone decides the grade.
    """

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and is_grade(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    output["name"] = "stdout"
                    output["text"] = "".join(
                        f"[stderr] {line}" for line in output["text"].splitlines(keepends=True))
        return cell, resources
