"""nbgrader configuration for the workbook (read by Jupyter's nbgrader panels).

Source notebooks (solutions + hidden tests) live in `solutions/weekNN/`, the learner's
release in `notebooks/weekNN/`; one assignment per week, week00 .. week26. The settings
themselves are in `netsprint.course.nbconfig`, shared with `netsprint release` and
`netsprint grade`.
"""

from pathlib import Path

from netsprint.course.nbconfig import configure

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)
# Among them: CourseDirectory.source_directory = "solutions", release_directory = "notebooks".
configure(c, Path(__file__).resolve().parent)
