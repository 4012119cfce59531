"""The three poller backends on socketpairs, and LT vs ET through the loop."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket

import pytest

from netsprint.errors import ReactorError
from netsprint.reactor import (EDGE, HANGUP, READABLE, WRITABLE, EventLoop, event_names,
                               make_poller)
from netsprint.reactor.pollcost import measure_poll_cost
from netsprint.reactor.poller import ERROR, FD_SETSIZE

pytestmark = pytest.mark.net

BACKENDS = ["epoll", "poll", "select"]


@pytest.fixture(params=BACKENDS)
def poller(request):
    p = make_poller(request.param)
    try:
        yield p
    finally:
        p.close()


def events_of(poller, fd: int) -> int:
    return sum(ev for f, ev in poller.poll(0) if f == fd)


def test_names_and_edge_support():
    pollers = [make_poller(n) for n in BACKENDS]
    try:
        assert [p.name for p in pollers] == BACKENDS
        assert [p.supports_edge for p in pollers] == [True, False, False]
    finally:
        for p in pollers:
            p.close()
    with pytest.raises(ReactorError, match="unknown poller backend"):
        make_poller("kqueue")


def test_bits_are_plain_ints_with_epoll_values():
    assert type(READABLE) is int and READABLE == select.EPOLLIN == select.POLLIN
    assert WRITABLE == select.EPOLLOUT == select.POLLOUT
    assert event_names(READABLE | WRITABLE) == "READABLE|WRITABLE"


def test_readable_only_after_data_arrives(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE)
    assert events_of(poller, a.fileno()) == 0
    b.send(b"x")
    assert events_of(poller, a.fileno()) & READABLE
    a.recv(1)
    assert events_of(poller, a.fileno()) == 0


def test_modify_and_unregister(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE)
    assert events_of(poller, a.fileno()) == 0  # nothing to read; writability not asked
    poller.modify(a.fileno(), READABLE | WRITABLE)
    assert events_of(poller, a.fileno()) == WRITABLE
    b.send(b"x")
    assert events_of(poller, a.fileno()) == READABLE | WRITABLE
    poller.unregister(a.fileno())
    assert poller.poll(0) == []


def test_peer_close_is_reported_as_readable(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE)
    b.close()
    assert events_of(poller, a.fileno()) & READABLE
    assert a.recv(1) == b""


class RecordingWait:
    """Stands in for the object a backend waits with; records the timeout it is given."""

    def __init__(self) -> None:
        self.timeouts: list = []

    def poll(self, timeout=None):
        self.timeouts.append(timeout)
        return []

    def select(self, readers, writers, errors, timeout=None):
        self.timeouts.append(timeout)
        return [], [], []


@pytest.mark.parametrize("backend,kernel_timeouts", [
    ("epoll", [0.05, 0.0004, -1]),  # epoll.poll takes seconds; -1 blocks
    ("poll", [50, 1, None]),  # poll.poll takes ms, rounded up: 0.4 ms must not become 0
    ("select", [0.05, 0.0004, None]),  # select.select takes seconds
])
def test_poll_timeout_is_seconds_in_the_unit_each_system_call_takes(backend,
                                                                   kernel_timeouts,
                                                                   monkeypatch):
    """0.05 means 50 ms: not 0 (a busy loop), not 50 s (a units mix-up); None blocks."""
    wait = RecordingWait()
    p = make_poller(backend)
    if backend == "epoll":
        p._epoll.close()
        p._epoll = wait
    elif backend == "poll":
        p._poll = wait
    else:
        monkeypatch.setattr(select, "select", wait.select)
    for timeout in (0.05, 0.0004, None):
        assert p.poll(timeout) == []
    assert wait.timeouts == kernel_timeouts


@pytest.mark.parametrize("backend", ["poll", "select"])
def test_edge_is_refused_where_the_kernel_has_none(backend, pair):
    with contextlib.closing(make_poller(backend)) as p:
        with pytest.raises(ReactorError, match="no edge-triggered mode"):
            p.register(pair[0].fileno(), READABLE | EDGE)
        p.register(pair[0].fileno(), READABLE)
        with pytest.raises(ReactorError, match="no edge-triggered mode"):
            p.modify(pair[0].fileno(), READABLE | EDGE)


def test_select_refuses_fds_beyond_fd_setsize(pair, fd_limit):
    fd_limit(FD_SETSIZE + 64)  # F_DUPFD needs a soft limit above the fd it asks for
    big = fcntl.fcntl(pair[0].fileno(), fcntl.F_DUPFD_CLOEXEC, FD_SETSIZE)
    try:
        assert big >= FD_SETSIZE
        with pytest.raises(ReactorError, match="FD_SETSIZE"):
            make_poller("select").register(big, READABLE)
        for backend in ("poll", "epoll"):  # the others have no such limit
            with contextlib.closing(make_poller(backend)) as p:
                p.register(big, READABLE)
    finally:
        os.close(big)


def test_poll_reports_a_closed_registered_fd_as_error():
    a, b = socket.socketpair()
    p = make_poller("poll")
    p.register(a.fileno(), READABLE)
    fd = a.fileno()
    a.close()
    b.close()
    assert p.poll(0) == [(fd, ERROR | select.POLLNVAL)]  # POLLNVAL kept, ERROR added


def test_epoll_reports_hangup_when_the_peer_is_gone(pair):
    a, b = pair
    with contextlib.closing(make_poller("epoll")) as p:
        p.register(a.fileno(), READABLE)
        b.close()
        assert events_of(p, a.fileno()) & HANGUP


# -- level- vs edge-triggered, through the loop --------------------------------------------

def count_calls(loop: EventLoop, fd: int, events: int) -> list[int]:
    calls: list[int] = []
    loop.register(fd, events, lambda f, ev: calls.append(ev))
    return calls


@pytest.mark.parametrize("backend", BACKENDS)
def test_level_triggered_reports_unread_data_again(backend, pair):
    a, b = pair
    with EventLoop(backend) as loop:
        calls = count_calls(loop, a, READABLE)
        b.send(b"abc")
        loop.run_once(0)
        loop.run_once(0)
        loop.run_once(0)
        assert len(calls) == 3  # still readable: reported every time
        a.recv(3)
        loop.run_once(0)
        assert len(calls) == 3
        loop.unregister(a)


def test_edge_triggered_reports_a_transition_once(pair):
    a, b = pair
    with EventLoop("epoll") as loop:
        calls = count_calls(loop, a, READABLE | EDGE)
        b.send(b"abc")
        loop.run_once(0)
        loop.run_once(0)
        loop.run_once(0)
        assert len(calls) == 1  # unread data is not reported again
        b.send(b"more")  # a new arrival is a new edge
        loop.run_once(0)
        loop.run_once(0)
        assert len(calls) == 2
        assert a.recv(100) == b"abcmore"
        loop.unregister(a)


# -- the cost of one poll (week 1's plot) --------------------------------------------------

def test_poll_cost_leaves_out_what_select_cannot_watch_and_leaks_no_fd(fd_limit):
    big = FD_SETSIZE + 16
    fd_limit(2 * big + 64)
    before = set(os.listdir("/proc/self/fd"))
    costs = measure_poll_cost([8, big], backends=("select", "epoll"))
    assert [n for n, _ in costs["select"]] == [8]  # select's fd_set ends at FD_SETSIZE
    assert [n for n, _ in costs["epoll"]] == [8, big]
    assert all(us > 0 for points in costs.values() for _, us in points)
    assert set(os.listdir("/proc/self/fd")) <= before  # every pipe closed again
