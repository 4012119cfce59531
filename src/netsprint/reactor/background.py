"""A server on its own loop in a background thread.

Notebooks and tests often block in a client (a blocking socket, `input()`, an assert loop)
while a reactor server must keep answering: the server gets a loop of its own, in a thread,
and stops with the `with` block, even when the block raises.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, TypeVar

from netsprint.reactor.loop import EventLoop

ServerT = TypeVar("ServerT")
JOIN_TIMEOUT = 10.0  # a loop that does not stop by then is left running as a daemon thread


@contextlib.contextmanager
def serving_in_thread(make_server: Callable[[EventLoop], ServerT], *,
                      name: str = "server") -> Iterator[ServerT]:
    """`make_server(loop)` builds the server on a fresh loop; the loop runs in a daemon
    thread until the block ends, then the server and the loop are closed."""
    loop = EventLoop()
    try:
        server = make_server(loop)
    except BaseException:
        loop.close()
        raise
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        loop.stop()  # thread-safe: sets a flag and wakes the loop's eventfd
        thread.join(timeout=JOIN_TIMEOUT)
        server.close()
        if not thread.is_alive():  # closing a loop another thread still runs would race
            loop.close()
