"""The event loop: wait for readiness, run fd callbacks, then due timers, then call_soon work.

One iteration (`run_once`) is Redis's `aeProcessEvents` in Python:

    timeout = 0 if call_soon work is queued, else until the next timer (or `timeout`)
    for fd, events in poller.poll(timeout): callback(fd, events)   # re-checked, see below
    run due timers; run the call_soon handles queued before this iteration

Re-checking each fd before its callback: one poll batch can hold events for fds A and B;
if A's callback unregisters B, or closes B and a new socket gets B's number and is
registered, B's event in the batch is stale and must not reach anyone. Every registration
(and every modify) gets a new sequence number; an event is delivered only if the fd's
registration is unchanged since the poll returned (seq <= the seq at poll time). An event
skipped because of a modify is not lost: EPOLL_CTL_MOD re-checks readiness and queues the
fd again if it is ready for the new events (that is how EPOLLONESHOT re-arms), even
edge-triggered, and poll/select are level-triggered anyway.

The loop is single-threaded: only `call_soon_threadsafe` and `stop` may be called from
other threads, and not once the loop may be closing (they would race with the close of the
wake-up fd).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
from typing import Any, Callable, Iterable

from netsprint.clock import Clock, MonotonicClock
from netsprint.errors import NetsprintError, ReactorError
from netsprint.reactor.poller import READABLE, Poller, make_poller
from netsprint.reactor.timers import Timer, TimerQueue

log = logging.getLogger(__name__)

FdCallback = Callable[[int, int], Any]

# What `_dispatch` finds for an fd nobody registers: its seq is newer than any batch.
_UNREGISTERED = (None, float("inf"), 0)


class LoopTimeout(NetsprintError, TimeoutError):
    """`run_until` gave up: the predicate stayed false for the whole timeout."""


class Handle:
    """A call_soon callback; owns the callback and its args, nothing else."""

    __slots__ = ("callback", "args", "cancelled")

    def __init__(self, callback: Callable[..., Any], args: tuple) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = None
        self.args = ()

    def __repr__(self) -> str:
        return f"<Handle{' cancelled' if self.cancelled else ''} {self.callback!r}>"


def fileno_of(fd_or_obj: int | Any) -> int:
    """An fd from an int or from anything with `fileno()` (socket, file, eventfd wrapper)."""
    fd = fd_or_obj if isinstance(fd_or_obj, int) else fd_or_obj.fileno()
    if fd < 0:
        raise ReactorError(f"invalid file descriptor {fd} (closed socket?)")
    return fd


def _run_handles(handles: Iterable[Handle | Timer], kind: str) -> None:
    """Run timers or call_soon handles in order; a failure is logged and the rest still run."""
    for handle in handles:
        if handle.cancelled:
            continue  # e.g. a timer cancelled by an earlier one in the same batch
        try:
            handle.callback(*handle.args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            log.exception("%s callback %r failed", kind, handle.callback)


class EventLoop:
    """Owns a poller, a timer queue, a call_soon queue and a wake-up eventfd.

    Does not own the fds registered with it: whoever registers an fd closes it, after
    unregistering (epoll forgets a closed fd on its own, poll and select do not).
    """

    def __init__(self, poller: Poller | str | None = None, clock: Clock | None = None) -> None:
        if poller is None or isinstance(poller, str):
            poller = make_poller(poller or "epoll")
        self._poller = poller
        self._clock = clock if clock is not None else MonotonicClock()
        self._now = self._clock.now  # bound once: read on every iteration that has timers
        # fd -> (callback, seq, events): a tuple unpacks faster than attribute access and
        # costs less memory than an object per fd.
        self._handlers: dict[int, tuple[FdCallback, int, int]] = {}
        self._seq = 0
        self._timers = TimerQueue()
        self._ready: collections.deque[Handle] = collections.deque()
        self._stopping = False
        self._running = False
        self._closed = False
        # An eventfd is a counter the kernel wakes epoll on: one fd instead of a pipe's two,
        # and a burst of wake-ups coalesces into one readable event.
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.register(self._wake_fd, READABLE, self._on_wake)

    # -- fds -------------------------------------------------------------------------------

    def register(self, fd: int | Any, events: int, callback: FdCallback) -> None:
        """Call `callback(fd, ready_bits)` whenever `fd` is ready for `events`."""
        self._check_open()
        fd = fileno_of(fd)
        if fd in self._handlers:
            raise ReactorError(f"fd {fd} is already registered (unregister it before "
                               "closing it, or use modify)")
        self._poller.register(fd, events)
        self._seq += 1
        self._handlers[fd] = (callback, self._seq, events)

    def modify(self, fd: int | Any, events: int, callback: FdCallback | None = None) -> None:
        """Change the events (and optionally the callback) of a registered fd."""
        fd = fileno_of(fd)
        try:
            old_callback = self._handlers[fd][0]
        except KeyError:
            raise ReactorError(f"fd {fd} is not registered") from None
        self._poller.modify(fd, events)
        self._seq += 1  # an event already polled may be for bits no longer asked for
        self._handlers[fd] = (callback or old_callback, self._seq, events)

    def unregister(self, fd: int | Any) -> None:
        fd = fileno_of(fd)
        if self._handlers.pop(fd, None) is None:
            raise ReactorError(f"fd {fd} is not registered")
        self._poller.unregister(fd)

    def is_registered(self, fd: int | Any) -> bool:
        return fileno_of(fd) in self._handlers

    def registered_events(self, fd: int | Any) -> int:
        """The events `fd` is registered for (0 if it is not registered)."""
        entry = self._handlers.get(fileno_of(fd))
        return entry[2] if entry is not None else 0

    # -- callbacks and timers --------------------------------------------------------------

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """Run `callback(*args)` on the next iteration, after I/O callbacks, in FIFO order."""
        self._check_open()  # a closed loop would drop the handle without a word
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """call_soon from any thread (or a signal handler): also wakes a blocked poll."""
        handle = self.call_soon(callback, *args)  # deque.append is atomic under the GIL
        self._wake()
        return handle

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run `callback(*args)` once `time() >= when`."""
        self._check_open()
        return self._timers.call_at(when, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self.call_at(self._now() + delay, callback, *args)

    def time(self) -> float:
        """The loop's clock, in seconds (monotonic)."""
        return self._now()

    # -- running ---------------------------------------------------------------------------

    def run_once(self, timeout: float | None = None) -> None:
        """One iteration; `timeout` caps the wait in seconds (None: until work arrives)."""
        poll_timeout = self._poll_timeout(timeout)
        events = self._poller.poll(poll_timeout)
        if events:
            self._dispatch(events)
        if self._timers:
            self._run_timers()
        if self._ready:
            self._run_ready()

    def _poll_timeout(self, timeout: float | None) -> float | None:
        if self._ready:
            return 0.0
        if not self._timers:
            return timeout
        deadline = self._timers.next_deadline()
        if deadline is None:
            return timeout
        until = deadline - self._now()
        if until < 0.0:
            until = 0.0
        return until if timeout is None or until < timeout else timeout

    def _dispatch(self, events: list[tuple[int, int]]) -> None:
        handlers_get = self._handlers.get
        polled_seq = self._seq  # registrations made during this batch have a larger seq
        for fd, ev in events:
            callback, seq, _ = handlers_get(fd, _UNREGISTERED)
            if seq > polled_seq:
                # Unregistered, modified, or the fd number reused by a new registration,
                # all by an earlier callback in this batch: the event is stale.
                continue
            try:
                callback(fd, ev)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                log.exception("fd %d callback %r failed", fd, callback)

    def _run_timers(self) -> None:
        _run_handles(self._timers.pop_due(self._now()), "timer")

    def _run_ready(self) -> None:
        # Only what was queued before this point runs now: a callback that call_soon()s
        # itself must not starve I/O by keeping this loop busy forever. (The range is
        # evaluated once, when the generator is made.)
        ready = self._ready
        _run_handles((ready.popleft() for _ in range(len(ready))), "call_soon")

    def run_forever(self) -> None:
        """Run iterations until `stop()`; after a `stop()` made while the loop was not
        running, this returns at once, without an iteration."""
        self._check_open()
        if self._running:
            raise ReactorError("the loop is already running")
        self._running = True
        try:
            while not self._stopping:
                self.run_once()
        finally:
            self._stopping = False
            self._running = False

    def run_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Run iterations until `predicate()` is true; raise LoopTimeout after `timeout` s.

        The timeout is measured on the loop's clock: with a FakeClock, advance it yourself.
        """
        self._check_open()
        deadline = self._now() + timeout
        while not predicate():
            remaining = deadline - self._now()
            if remaining <= 0.0:
                raise LoopTimeout(f"condition not met within {timeout} s: {predicate!r}")
            self.run_once(remaining)

    def stop(self) -> None:
        """Make run_forever return after the current iteration; safe from other threads
        and from signal handlers (PEP 475 resumes an interrupted poll, so wake it)."""
        self._stopping = True
        self._wake()

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def backend(self) -> str:
        return self._poller.name

    @property
    def supports_edge(self) -> bool:
        return self._poller.supports_edge

    # -- wake-up ---------------------------------------------------------------------------

    def _wake(self) -> None:
        fd = self._wake_fd
        if fd < 0:
            return  # closed loop: nothing to wake
        try:
            os.eventfd_write(fd, 1)
        except BlockingIOError:
            pass  # counter at its maximum: the loop is already due to wake up
        except OSError as exc:
            if exc.errno != errno.EBADF:  # closed by another thread just now
                raise

    def _on_wake(self, fd: int, events: int) -> None:
        try:
            os.eventfd_read(fd)  # reset the counter, or level-triggered epoll spins
        except BlockingIOError:
            pass

    # -- lifetime --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ReactorError("the event loop is closed")

    def close(self) -> None:
        """Release the poller and the wake-up fd; registered fds stay their owners' job."""
        if self._closed:
            return
        if self._running:
            raise ReactorError("cannot close a running loop; stop() it first")
        self._closed = True
        others = sorted(fd for fd in self._handlers if fd != self._wake_fd)
        if others:
            log.debug("closing loop with fds still registered: %s", others)
        self._handlers.clear()
        self._ready.clear()
        self._poller.close()
        wake_fd, self._wake_fd = self._wake_fd, -1
        os.close(wake_fd)

    def __enter__(self) -> EventLoop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        return (f"<EventLoop {self._poller.name} {state} fds={len(self._handlers)} "
                f"timers={len(self._timers)} ready={len(self._ready)}>")
