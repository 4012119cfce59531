"""Stopping a loop cleanly on SIGINT/SIGTERM, for the servers the CLI runs.

A KeyboardInterrupt can land anywhere, half-way through a callback; a handler that only asks
the loop to stop lets the current iteration finish, so servers close their sockets and print
their counters.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from netsprint.reactor.loop import EventLoop


class StopOnSignals:
    """While entered, SIGINT/SIGTERM stop the loop. Owns the previous handlers until exit
    (only the main thread may install handlers; elsewhere this does nothing)."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self._SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        # stop() also writes the loop's eventfd: after this handler returns, PEP 475
        # resumes the interrupted epoll_wait, which must find something ready.
        self._loop.stop()

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
