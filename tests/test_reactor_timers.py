"""TimerQueue: deadline order, FIFO ties, lazy cancellation, compaction (no sockets)."""

from __future__ import annotations

import pytest

from netsprint.clock import FakeClock
from netsprint.reactor.timers import TimerQueue

pytestmark = pytest.mark.unit


def fire_due(queue: TimerQueue, now: float) -> list:
    """What a loop does with pop_due: run each timer unless an earlier one cancelled it."""
    fired = []
    for timer in queue.pop_due(now):
        if not timer.cancelled:
            fired.append(timer.callback(*timer.args))
    return fired


def test_timers_fire_in_deadline_order_not_insertion_order():
    clock = FakeClock()
    queue = TimerQueue()
    for when in (3.0, 1.0, 2.5, 0.5):
        queue.call_at(when, lambda w=when: w)
    assert queue.next_deadline() == 0.5
    clock.advance(2.5)
    assert fire_due(queue, clock.now()) == [0.5, 1.0, 2.5]
    assert queue.next_deadline() == 3.0
    assert len(queue) == 1


def test_equal_deadlines_fire_fifo():
    queue = TimerQueue()
    for i in range(50):
        queue.call_at(1.0, lambda i=i: i)
    assert fire_due(queue, 1.0) == list(range(50))


def test_nothing_is_due_before_its_deadline():
    queue = TimerQueue()
    queue.call_at(1.0, lambda: "x")
    assert queue.pop_due(0.999) == []
    assert [t.when for t in queue.pop_due(1.0)] == [1.0]
    assert queue.next_deadline() is None
    assert not queue


def test_args_are_passed_and_when_is_kept():
    queue = TimerQueue()
    timer = queue.call_at(2, lambda a, b: a + b, 40, 2)
    assert timer.when == 2.0 and not timer.cancelled
    assert fire_due(queue, 2.0) == [42]


def test_cancelled_timer_never_fires_and_next_deadline_skips_it():
    queue = TimerQueue()
    first = queue.call_at(1.0, lambda: "first")
    queue.call_at(2.0, lambda: "second")
    first.cancel()
    first.cancel()  # idempotent: counted once
    assert first.cancelled
    assert len(queue) == 1
    assert queue.next_deadline() == 2.0
    assert fire_due(queue, 5.0) == ["second"]
    assert len(queue) == 0


def test_cancel_after_firing_does_not_corrupt_the_count():
    queue = TimerQueue()
    timer = queue.call_at(1.0, lambda: None)
    queue.call_at(9.0, lambda: None)
    assert queue.pop_due(1.0) == [timer]
    timer.cancel()
    assert len(queue) == 1


def test_a_due_timer_cancelled_by_an_earlier_one_in_the_same_batch_is_flagged():
    queue = TimerQueue()
    victim = None

    def killer():
        victim.cancel()
        return "killer"

    queue.call_at(1.0, killer)
    victim = queue.call_at(1.0, lambda: "victim")
    assert fire_due(queue, 1.0) == ["killer"]


def test_compaction_drops_cancelled_entries_and_keeps_order():
    queue = TimerQueue()
    timers = [queue.call_at(float(i % 10), lambda i=i: i) for i in range(1000)]
    for timer in timers[:900]:
        timer.cancel()
    # Lazy cancellation must not let cancelled timers pile up: past the compaction
    # minimum, at most half the heap is cancelled entries.
    assert len(queue._heap) <= 2 * len(queue)
    assert len(queue) == 100
    fired = fire_due(queue, 100.0)
    expected = sorted(range(900, 1000), key=lambda i: (i % 10, i))
    assert fired == expected


def test_fake_clock_drives_a_schedule_exactly():
    """An RTO-style doubling schedule, asserted in exact test time."""
    clock = FakeClock()
    queue = TimerQueue()
    sent_at: list[float] = []

    def retransmit(rto: float) -> None:
        sent_at.append(clock.now())
        if len(sent_at) < 4:
            queue.call_at(clock.now() + rto, retransmit, rto * 2)

    queue.call_at(0.0, retransmit, 0.5)
    while (deadline := queue.next_deadline()) is not None:
        clock.set(deadline)
        fire_due(queue, clock.now())
    assert sent_at == [0.0, 0.5, 1.5, 3.5]
