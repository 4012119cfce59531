"""Readiness pollers: epoll, poll and select behind one small interface.

Like Redis's `ae_epoll.c` / `ae_select.c`, the loop sees only `register`, `modify`,
`unregister` and `poll`; which system call waits is a constructor argument.

Event bits are plain ints with the epoll values. On Linux `poll(2)` uses the same numbers
(POLLIN == EPOLLIN == 0x001, POLLOUT == 0x004, POLLERR == 0x008, POLLHUP == 0x010,
POLLRDHUP == EPOLLRDHUP == 0x2000), so the poll backend passes them through untouched. They
are deliberately not an `IntFlag`: every `|` or `&` on an IntFlag builds a new enum object,
which costs more than the rest of an echo round trip's dispatch.

A signal does not end a wait: CPython runs the Python handler and resumes the system call
with the remaining timeout (PEP 475), so no backend ever sees EINTR. A handler that must end
the wait calls `EventLoop.stop()`, which makes the loop's wake-up fd readable.
"""

from __future__ import annotations

import errno
import math
import select

from netsprint.errors import ReactorError

READABLE: int = select.EPOLLIN
WRITABLE: int = select.EPOLLOUT
ERROR: int = select.EPOLLERR  # always reported, whether asked for or not
HANGUP: int = select.EPOLLHUP  # always reported, whether asked for or not
PEER_CLOSED: int = select.EPOLLRDHUP  # peer sent FIN (shutdown(SHUT_WR) or close)
EDGE: int = select.EPOLLET  # a request flag, never reported back

# select(2) uses fixed-size bitmaps: glibc's fd_set has FD_SETSIZE bits and CPython refuses
# larger fds ("filedescriptor out of range in select()").
FD_SETSIZE = 1024

_POLL_NVAL = select.POLLNVAL


def event_names(events: int) -> str:
    """`READABLE|WRITABLE` for logs and notebooks (not for the hot path)."""
    names = [name for name, bit in _NAMED_BITS if events & bit]
    return "|".join(names) or "0"


_NAMED_BITS = (("READABLE", READABLE), ("WRITABLE", WRITABLE), ("ERROR", ERROR),
               ("HANGUP", HANGUP), ("PEER_CLOSED", PEER_CLOSED), ("EDGE", EDGE))


class Poller:
    """The interface: owns one kernel wait object (or fd sets); knows nothing of callbacks.

    `poll(timeout)` returns `[(fd, events), ...]`; `timeout` is seconds, None blocks.
    """

    name = "abstract"
    supports_edge = False

    def register(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def modify(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        raise NotImplementedError

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _refuse_edge(self, events: int) -> None:
        if events & EDGE and not self.supports_edge:
            raise ReactorError(
                f"the {self.name} backend has no edge-triggered mode (EDGE): only epoll "
                "reports transitions; use make_poller('epoll') or drop EDGE")


class EpollPoller(Poller):
    """Owns one epoll instance (an fd); the kernel keeps the interest list, not Python."""

    name = "epoll"
    supports_edge = True

    def __init__(self) -> None:
        self._epoll = select.epoll()  # EPOLL_CLOEXEC is CPython's default

    def register(self, fd: int, events: int) -> None:
        try:
            self._epoll.register(fd, events)
        except FileExistsError:
            raise ReactorError(f"fd {fd} is already registered with epoll") from None

    def modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except OSError as exc:
            # EBADF/ENOENT: the fd was closed first, and closing the last descriptor of a
            # file removes it from every epoll set (epoll(7), "Questions and answers" 6).
            if exc.errno not in (errno.EBADF, errno.ENOENT):
                raise

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        # CPython rounds the timeout *up* to whole milliseconds, so a 0.4 ms timer does not
        # turn into a busy loop of zero-timeout polls.
        return self._epoll.poll(-1 if timeout is None else timeout)

    def close(self) -> None:
        self._epoll.close()


class PollPoller(Poller):
    """Owns a `select.poll` object: the interest list is passed to the kernel on every call."""

    name = "poll"

    def __init__(self) -> None:
        self._poll = select.poll()

    def register(self, fd: int, events: int) -> None:
        self._refuse_edge(events)
        self._poll.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._refuse_edge(events)
        self._poll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        try:
            self._poll.unregister(fd)
        except KeyError:
            pass

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        # poll(2) takes milliseconds; round up for the same reason as epoll.
        ms = None if timeout is None else math.ceil(timeout * 1000.0)
        ready = self._poll.poll(ms)
        # POLLNVAL: the fd was closed while still registered. Report it as ERROR so the
        # owner's callback runs and unregisters it; otherwise poll returns at once forever.
        return [(fd, (ev | ERROR) if ev & _POLL_NVAL else ev) for fd, ev in ready]

    def close(self) -> None:
        self._poll = None  # nothing kernel-side to release


class SelectPoller(Poller):
    """Owns two fd sets for select(2); fds must be below FD_SETSIZE (1024).

    select reports only readable/writable: errors and hang-ups show up as "readable" (the
    next recv returns the error or b""), and PEER_CLOSED is never reported on its own.
    """

    name = "select"

    def __init__(self) -> None:
        self._readers: set[int] = set()
        self._writers: set[int] = set()

    def register(self, fd: int, events: int) -> None:
        self._refuse_edge(events)
        if fd >= FD_SETSIZE:
            raise ReactorError(
                f"fd {fd} is too large for select(): fd_set holds fds below FD_SETSIZE "
                f"({FD_SETSIZE}); use the poll or epoll backend")
        if fd in self._readers or fd in self._writers:
            raise ReactorError(f"fd {fd} is already registered with select")
        self._set(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._refuse_edge(events)
        self._readers.discard(fd)
        self._writers.discard(fd)
        self._set(fd, events)

    def _set(self, fd: int, events: int) -> None:
        if events & (READABLE | PEER_CLOSED):
            self._readers.add(fd)
        if events & WRITABLE:
            self._writers.add(fd)

    def unregister(self, fd: int) -> None:
        self._readers.discard(fd)
        self._writers.discard(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        r, w, _ = select.select(self._readers, self._writers, (), timeout)
        ready = dict.fromkeys(r, READABLE)
        for fd in w:
            ready[fd] = ready.get(fd, 0) | WRITABLE
        return list(ready.items())

    def close(self) -> None:
        self._readers.clear()
        self._writers.clear()


_BACKENDS = {"epoll": EpollPoller, "poll": PollPoller, "select": SelectPoller}


def make_poller(backend: str = "epoll") -> Poller:
    """A poller by name: "epoll", "poll" or "select"."""
    try:
        cls = _BACKENDS[backend]
    except KeyError:
        raise ReactorError(f"unknown poller backend {backend!r}; "
                           f"choose one of {', '.join(_BACKENDS)}") from None
    return cls()
