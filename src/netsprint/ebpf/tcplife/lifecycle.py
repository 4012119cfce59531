"""The rules of tcplife.bpf.c as a pure function: TCP state transitions in, lifecycle events out.

Sans-I/O: the caller supplies `(now, sock, oldstate, newstate)` tuples (state names as the
tracepoint prints them, without "TCP_"), so the rules can be tested, and taught, with fake
timestamps. The BPF program applies the same rules in the kernel, keyed by the socket address.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import NamedTuple


class Lifecycle(NamedTuple):
    """One event: `seconds` is the connect latency (CONNECT, CONNECT_FAILED: since SYN_SENT;
    ACCEPT: since SYN_RECV) or the lifetime since ESTABLISHED (CLOSE)."""

    kind: str  # "CONNECT", "CONNECT_FAILED", "ACCEPT" or "CLOSE"
    sock: Hashable
    now: float
    seconds: float


@dataclass
class _Conn:
    start: float
    active: bool
    established: float | None = None


class LifecycleTracker:
    """Owns what is known about each socket between its transitions (when it started, which
    side it is, when it was established); forgets a socket at CLOSE."""

    def __init__(self) -> None:
        self._conns: dict[Hashable, _Conn] = {}

    def __len__(self) -> int:
        return len(self._conns)

    def on_transition(self, now: float, sock: Hashable, old: str, new: str) -> Lifecycle | None:
        # A listener's own CLOSE->LISTEN and LISTEN->CLOSE; its children start LISTEN->SYN_RECV.
        if new == "LISTEN" or (old == "LISTEN" and new != "SYN_RECV"):
            return None
        if new == "SYN_SENT":
            self._conns[sock] = _Conn(start=now, active=True)
            return None
        if old == "LISTEN":  # LISTEN -> SYN_RECV: a passive child
            self._conns[sock] = _Conn(start=now, active=False)
            return None
        conn = self._conns.get(sock)
        if conn is None:  # began before we looked (or a simultaneous-open step): unknown
            return None
        if new == "ESTABLISHED":
            conn.established = now
            return Lifecycle("CONNECT" if conn.active else "ACCEPT", sock, now, now - conn.start)
        if new == "CLOSE":
            del self._conns[sock]
            if conn.established is not None:
                return Lifecycle("CLOSE", sock, now, now - conn.established)
            if conn.active:
                return Lifecycle("CONNECT_FAILED", sock, now, now - conn.start)
        return None


def classify(transitions: Iterable[tuple[float, Hashable, str, str]]) -> list[Lifecycle]:
    """Every lifecycle event in a sequence of `(now, sock, oldstate, newstate)` transitions."""
    tracker = LifecycleTracker()
    events = (tracker.on_transition(*t) for t in transitions)
    return [e for e in events if e is not None]
