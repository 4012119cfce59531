"""EventLoop: dispatch re-checks, timers, call_soon, wake-ups, errors, signals."""

from __future__ import annotations

import logging
import signal
import socket
import threading

import pytest

from netsprint.clock import FakeClock
from netsprint.errors import NetsprintError, ReactorError
from netsprint.reactor import EDGE, READABLE, WRITABLE, EventLoop, LoopTimeout, Poller


class ScriptedPoller(Poller):
    """A poller whose batches the test writes; records the timeouts the loop asks for."""

    name = "scripted"

    def __init__(self) -> None:
        self.registered: dict[int, int] = {}
        self.batches: list[list[tuple[int, int]]] = []
        self.timeouts: list[float | None] = []

    def register(self, fd, events):
        self.registered[fd] = events

    def modify(self, fd, events):
        self.registered[fd] = events

    def unregister(self, fd):
        del self.registered[fd]

    def poll(self, timeout):
        self.timeouts.append(timeout)
        return self.batches.pop(0) if self.batches else []

    def close(self):
        pass


@pytest.fixture
def scripted():
    poller = ScriptedPoller()
    clock = FakeClock(100.0)
    loop = EventLoop(poller, clock)
    try:
        yield loop, poller, clock
    finally:
        loop.close()


# -- the fd re-check -----------------------------------------------------------------------

@pytest.mark.unit
def test_callback_unregistering_a_later_fd_stops_its_stale_event(scripted):
    loop, poller, _ = scripted
    calls = []
    loop.register(50, READABLE, lambda fd, ev: (calls.append(fd), loop.unregister(51)))
    loop.register(51, READABLE, lambda fd, ev: calls.append(fd))
    poller.batches.append([(50, READABLE), (51, READABLE)])
    loop.run_once(0)
    assert calls == [50]


@pytest.mark.unit
def test_a_reused_fd_number_does_not_get_the_old_registrations_event(scripted):
    loop, poller, _ = scripted
    calls = []

    def first(fd, ev):
        calls.append("first")
        loop.unregister(51)  # "close" fd 51 ...
        loop.register(51, READABLE, lambda fd, ev: calls.append("new 51"))  # ... reuse it

    loop.register(50, READABLE, first)
    loop.register(51, READABLE, lambda fd, ev: calls.append("old 51"))
    poller.batches.append([(50, READABLE), (51, READABLE)])
    loop.run_once(0)
    assert calls == ["first"]
    poller.batches.append([(51, READABLE)])  # a fresh batch is for the new registration
    loop.run_once(0)
    assert calls == ["first", "new 51"]


@pytest.mark.unit
def test_an_fd_modified_mid_batch_waits_for_the_next_poll(scripted):
    """The polled event may be for bits no longer asked for: skip it; the kernel re-reports
    whatever is still ready for the new interest set on the next poll."""
    loop, poller, _ = scripted
    got = []
    loop.register(50, READABLE, lambda fd, ev: loop.modify(51, WRITABLE))
    loop.register(51, READABLE | WRITABLE, lambda fd, ev: got.append(ev))
    poller.batches.append([(50, READABLE), (51, READABLE | WRITABLE)])
    loop.run_once(0)
    assert got == []
    assert poller.registered[51] == WRITABLE
    poller.batches.append([(51, WRITABLE)])
    loop.run_once(0)
    assert got == [WRITABLE]


@pytest.mark.net
def test_epoll_re_reports_a_ready_fd_after_modify_even_edge_triggered(pair):
    """The kernel fact the re-check relies on: EPOLL_CTL_MOD re-checks readiness."""
    a, b = pair
    got = []
    with EventLoop("epoll") as loop:
        loop.register(a, READABLE | EDGE, lambda fd, ev: got.append(ev))
        b.send(b"x")
        loop.run_once(0)
        loop.run_once(0)
        assert len(got) == 1  # edge-triggered: reported once
        loop.modify(a, READABLE | WRITABLE | EDGE)
        loop.run_once(0)
        assert got[1] & READABLE  # reported again after the modify
        loop.unregister(a)


@pytest.mark.net
def test_fd_reuse_with_real_sockets_in_one_epoll_batch():
    """Both fds are ready in one batch; whichever callback runs first closes the other
    socket and registers a new socket that the kernel gives the same fd number."""
    pairs = {}
    for _ in range(2):
        a, b = socket.socketpair()
        pairs[a.fileno()] = (a, b)
    fresh: list[socket.socket] = []
    calls: list[str] = []
    reused: list[int] = []
    with EventLoop("epoll") as loop:
        def on_ready(fd, ev):
            calls.append("old")
            loop.unregister(fd)
            (other_fd,) = [f for f in pairs if f != fd]
            loop.unregister(other_fd)
            for s in pairs.pop(other_fd):
                s.close()
            fresh.extend(socket.socketpair())  # lowest free fds: other_fd is one of them
            for s in fresh:
                if s.fileno() == other_fd:
                    reused.append(other_fd)
                    loop.register(s, READABLE | WRITABLE, lambda f, e: calls.append("new"))

        try:
            for a, b in pairs.values():
                loop.register(a, READABLE, on_ready)
                b.send(b"x")
            loop.run_once(0)
            assert reused, "the kernel did not reuse the fd number; the test proves nothing"
            assert calls == ["old"]
            loop.run_once(0)
            assert calls == ["old", "new"]  # the new registration works from the next poll
        finally:
            for s in [s for p in pairs.values() for s in p] + fresh:
                s.close()


# -- call_soon, timers, poll timeout -------------------------------------------------------

@pytest.mark.unit
def test_poll_timeout_follows_ready_work_and_the_next_timer(scripted):
    loop, poller, clock = scripted
    loop.run_once()
    assert poller.timeouts[-1] is None  # nothing to do: block until an fd is ready
    loop.run_once(1.5)
    assert poller.timeouts[-1] == 1.5
    timer = loop.call_later(2.0, lambda: None)
    loop.run_once()
    assert poller.timeouts[-1] == pytest.approx(2.0)
    loop.run_once(0.5)
    assert poller.timeouts[-1] == 0.5
    loop.call_soon(lambda: None)
    loop.run_once()
    assert poller.timeouts[-1] == 0.0  # ready work must not wait for I/O
    timer.cancel()
    loop.run_once()
    assert poller.timeouts[-1] is None
    loop.call_at(clock.now() - 5, lambda: None)
    loop.run_once()
    assert poller.timeouts[-1] == 0.0  # overdue timers do not make a negative timeout


@pytest.mark.unit
def test_timers_run_on_the_loop_clock(scripted):
    loop, _, clock = scripted
    fired = []
    loop.call_later(5.0, fired.append, "late")
    loop.call_later(1.0, fired.append, "early")
    loop.call_at(clock.now() + 1.0, fired.append, "early too")
    loop.run_once(0)
    assert fired == []
    clock.advance(1.0)
    loop.run_once(0)
    assert fired == ["early", "early too"]
    clock.advance(4.0)
    loop.run_once(0)
    assert fired == ["early", "early too", "late"]
    assert loop.time() == 105.0


@pytest.mark.unit
def test_call_soon_runs_fifo_and_new_work_waits_a_turn(scripted):
    loop, _, _ = scripted
    order = []

    def again():
        order.append("again")

    def first():
        order.append("first")
        loop.call_soon(again)

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    handle = loop.call_soon(order.append, "cancelled")
    handle.cancel()
    loop.run_once(0)
    assert order == ["first", "second"]
    loop.run_once(0)
    assert order == ["first", "second", "again"]


@pytest.mark.unit
def test_run_until_raises_a_netsprint_timeout(scripted):
    loop, _, clock = scripted
    loop.call_later(1.0, clock.advance, 10.0)  # FakeClock: time moves when the test says
    clock.advance(1.0)
    with pytest.raises(LoopTimeout) as info:
        loop.run_until(lambda: False, timeout=5.0)
    assert isinstance(info.value, NetsprintError) and isinstance(info.value, TimeoutError)


@pytest.mark.unit
def test_register_twice_and_unknown_fds_are_loop_misuse(scripted):
    loop, _, _ = scripted
    loop.register(50, READABLE, lambda fd, ev: None)
    with pytest.raises(ReactorError, match="already registered"):
        loop.register(50, READABLE, lambda fd, ev: None)
    with pytest.raises(ReactorError, match="not registered"):
        loop.modify(51, READABLE)
    with pytest.raises(ReactorError, match="not registered"):
        loop.unregister(51)
    loop.unregister(50)


@pytest.mark.unit
def test_closed_loop_refuses_work():
    loop = EventLoop()
    loop.close()
    loop.close()  # idempotent
    with pytest.raises(ReactorError, match="closed"):
        loop.register(0, READABLE, lambda fd, ev: None)
    with pytest.raises(ReactorError, match="closed"):
        loop.run_forever()
    # A handle queued on a closed loop would never run: refuse it instead of dropping it.
    with pytest.raises(ReactorError, match="closed"):
        loop.call_soon(print)
    with pytest.raises(ReactorError, match="closed"):
        loop.call_soon_threadsafe(print)
    loop.stop()  # harmless: nothing to wake


@pytest.mark.unit
def test_stop_before_run_forever_returns_without_an_iteration(scripted):
    loop, poller, _ = scripted
    loop.stop()
    loop.run_forever()
    assert poller.timeouts == []  # never polled
    assert not loop.is_running


@pytest.mark.net
def test_register_accepts_objects_with_fileno(pair):
    a, b = pair
    got = []
    with EventLoop() as loop:
        loop.register(a, READABLE, lambda fd, ev: got.append((fd, a.recv(10))))
        b.send(b"hi")
        loop.run_until(lambda: got, timeout=2)
        assert got == [(a.fileno(), b"hi")]
        assert loop.is_registered(a)
        loop.unregister(a)
        assert not loop.is_registered(a)


# -- errors in callbacks -------------------------------------------------------------------

@pytest.mark.net
def test_exceptions_in_callbacks_are_logged_and_the_loop_goes_on(pair, caplog):
    a, b = pair
    got = []
    with EventLoop() as loop:
        loop.register(a, READABLE, lambda fd, ev: 1 / 0)
        loop.call_soon(lambda: [][1])
        loop.call_later(0, lambda: {}["missing"])
        loop.call_soon(got.append, "still running")
        b.send(b"x")
        with caplog.at_level(logging.ERROR, logger="netsprint.reactor.loop"):
            loop.run_once(0)
            loop.run_once(0)
        assert "still running" in got
        text = caplog.text
        assert "ZeroDivisionError" in text and "IndexError" in text and "KeyError" in text
        assert "Traceback" in text
        loop.unregister(a)


@pytest.mark.unit
def test_keyboard_interrupt_and_system_exit_propagate(scripted):
    loop, _, _ = scripted

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_once(0)

    def leave():
        raise SystemExit(3)

    loop.call_soon(leave)
    with pytest.raises(SystemExit):
        loop.run_once(0)


# -- wake-ups and signals ------------------------------------------------------------------

# Without a wake-up these loops would sleep until FALLBACK_S; a timer then records that,
# so the tests assert on what happened, not on wall-clock time.
FALLBACK_S = 30.0


@pytest.mark.net
def test_call_soon_threadsafe_wakes_a_blocked_poll():
    got = []
    with EventLoop() as loop:
        loop.call_later(FALLBACK_S, got.append, "not woken")
        # The delay only makes it likely the loop is already blocked in epoll_wait.
        thread = threading.Timer(0.1, loop.call_soon_threadsafe, (got.append, "woken"))
        thread.start()
        try:
            loop.run_once()  # blocks until the wake-up (or the fallback timer)
        finally:
            thread.join()
        assert got == ["woken"]


@pytest.mark.net
def test_stop_from_another_thread_ends_run_forever():
    fell_back = []
    with EventLoop() as loop:
        loop.call_later(FALLBACK_S, lambda: (fell_back.append(True), loop.stop()))
        thread = threading.Timer(0.05, loop.stop)
        thread.start()
        try:
            loop.run_forever()  # returns only if the stop woke the blocked poll
        finally:
            thread.join()
        assert not fell_back
        assert not loop.is_running


@pytest.mark.net
def test_signals_during_poll_do_not_break_the_loop(pair):
    """EINTR: a periodic SIGALRM keeps interrupting epoll_wait; timers and I/O still work."""
    a, b = pair
    signals = []
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: signals.append(signum))
    try:
        with EventLoop() as loop:
            loop.register(a, READABLE, lambda fd, ev: fired.append(a.recv(10)))
            loop.call_later(0.3, b.send, b"late")
            signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
            loop.run_until(lambda: fired, timeout=5)
            signal.setitimer(signal.ITIMER_REAL, 0)
            assert fired == [b"late"]
            assert len(signals) >= 3  # the poll really was interrupted, repeatedly
            loop.unregister(a)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
