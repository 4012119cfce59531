"""A heap of timers: which callback is due when. Pure: it never reads a clock.

The loop asks `next_deadline()` to size its poll timeout and `pop_due(now)` after polling.
Cancelling is lazy (O(1): the entry stays in the heap, flagged) because cancels are far more
common than fires for protocol timeouts; when cancelled entries outnumber live ones the heap
is rebuilt so memory and `heappop` work stay proportional to the live timers.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable

# Rebuilding a tiny heap is not worth it; asyncio uses the same two knobs.
_COMPACT_MIN_ENTRIES = 64
_COMPACT_CANCELLED_FRACTION = 0.5


class Timer:
    """One scheduled call; owns its callback and args, not the queue it sits in."""

    __slots__ = ("when", "callback", "args", "cancelled", "_queue")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple,
                 queue: TimerQueue | None) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._queue = queue

    def cancel(self) -> None:
        """Stop the call from happening; harmless if already cancelled or fired."""
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = None  # drop references early: a cancelled timer may linger
        self.args = ()
        queue, self._queue = self._queue, None
        if queue is not None:
            queue._note_cancelled()

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer when={self.when:.6f}{state} {self.callback!r}>"


class TimerQueue:
    """Owns the heap of pending timers; does not own a clock and does not run callbacks."""

    __slots__ = ("_heap", "_seq", "_cancelled_count")

    def __init__(self) -> None:
        # (when, seq, timer): seq breaks ties so equal deadlines fire in FIFO order and
        # Timer objects are never compared.
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cancelled_count = 0

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(float(when), callback, args, self)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    def __len__(self) -> int:
        """Live (not cancelled) timers."""
        return len(self._heap) - self._cancelled_count

    def __bool__(self) -> bool:
        """True while the heap holds entries, cancelled ones included: the loop's cheap
        "anything to look at?" test (`len()` counts only live timers)."""
        return bool(self._heap)

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due, or None if there is none."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled_count -= 1
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[Timer]:
        """Remove and return the live timers with `when <= now`, in deadline order.

        A callback run from this list may cancel a later timer in the same list: check
        `timer.cancelled` before running each one.
        """
        heap = self._heap
        due = []
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.cancelled:
                self._cancelled_count -= 1
                continue
            timer._queue = None  # fired: a later cancel() must not count it again
            due.append(timer)
        return due

    def _note_cancelled(self) -> None:
        self._cancelled_count += 1
        if (len(self._heap) > _COMPACT_MIN_ENTRIES
                and self._cancelled_count > _COMPACT_CANCELLED_FRACTION * len(self._heap)):
            self._compact()

    def _compact(self) -> None:
        # (when, seq) keys are unique, so heapify keeps deadline order and FIFO ties.
        self._heap = [entry for entry in self._heap if not entry[2].cancelled]
        heapq.heapify(self._heap)
        self._cancelled_count = 0
