"""Time as an injectable dependency.

Protocol cores and timers never call `time` themselves: they are handed a `Clock`, so tests
drive them with a `FakeClock` and assert schedules exactly. Time is seconds as a float,
monotonic (never wall-clock time, which can jump).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic()`."""

    def now(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to; owns nothing but its current time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a monotonic clock cannot go back")
        self._now = when
