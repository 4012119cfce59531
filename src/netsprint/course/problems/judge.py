"""Time limits for a problem's large input, checked inside the learner's kernel.

A hidden test wraps its large input in `within(seconds, what)`. The limit is on the CPU time
this process spends (SIGPROF through `setitimer(ITIMER_PROF)`), not on the wall clock: a
busy machine (other notebooks graded beside this one, a test run) slows the wall clock but
not the work a solution does, so the verdict stays the same under load. A solution of the
wrong complexity is interrupted with a message that names the input and the complexity to
aim for, instead of hanging the notebook until the cell's own timeout (which still stops a
solution that waits instead of computing). Sizes are chosen so the reference solution needs a
small fraction of the limit (see docs/problems.md).
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from netsprint.errors import CourseError

DEFAULT_LIMIT_SECONDS = 0.5


class TimeLimitExceeded(CourseError, AssertionError):
    """A solution ran past its large input's limit (an AssertionError, so it fails a test)."""


@contextmanager
def within(seconds: float = DEFAULT_LIMIT_SECONDS, what: str = "the large input",
           hint: str = "") -> Iterator[None]:
    """Fail with TimeLimitExceeded if the body uses more than `seconds` of CPU time."""
    if threading.current_thread() is not threading.main_thread():
        raise CourseError("within() needs the main thread: signals are delivered only there")
    advice = hint or "look for an approach of lower complexity"
    started = time.process_time()

    def expire(signum, frame):
        raise TimeLimitExceeded(f"{what} took longer than {seconds:g} s of CPU: {advice}")

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
    # A body that finished inside C code (a long sort) may never see the alarm: check again.
    elapsed = time.process_time() - started
    if elapsed > seconds:
        raise TimeLimitExceeded(f"{what} took {elapsed:.2f} s of CPU, more than {seconds:g} s: "
                                f"{advice}")
