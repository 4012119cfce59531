"""Main/sub reactors: muduo's "one loop per thread" TCP server.

The main reactor only accepts; each accepted socket is handed round-robin to one of N
sub-reactor threads (through `call_soon_threadsafe`, which wakes that loop's eventfd), and
from then on only that thread touches the connection. No locks: ownership moves once.

The GIL, honestly: in CPython with the GIL only one thread runs Python bytecode at a time,
so N sub-reactors do not give N cores of Python work; an echo server gets about the same
throughput as one reactor (a little less, for the thread switches), and system calls are
the only part that overlaps. The pattern still matters: it is exactly the C/C++ design
(muduo, Netty's boss/worker groups, nginx workers per process) the learner writes in the
interview weeks, the sub-reactor hand-off is where its subtle bugs live, and on a
free-threaded CPython (3.13t+, PEP 703) the same code does scale across cores.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any, Callable

from netsprint.errors import ReactorError
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.protocols import Protocol
from netsprint.reactor.tcp import HIGH_WATER_BYTES, LOW_WATER_BYTES, TcpConnection, TcpListener

log = logging.getLogger(__name__)

_JOIN_TIMEOUT = 5.0  # seconds to wait for a sub-reactor thread to finish its loop


class SubReactor:
    """One thread running one EventLoop. Owns the thread, the loop and the connections
    handed to it; does not own the listener."""

    def __init__(self, index: int, protocol_factory: Callable[[], Protocol], *,
                 backend: str = "epoll", edge: bool = False,
                 high_water_bytes: int = HIGH_WATER_BYTES,
                 low_water_bytes: int = LOW_WATER_BYTES) -> None:
        self.index = index
        self.loop = EventLoop(backend)
        self._protocol_factory = protocol_factory
        self._edge = edge
        self._high_water_bytes = high_water_bytes
        self._low_water_bytes = low_water_bytes
        self._connections: set[TcpConnection] = set()
        self.adopted_connections = 0
        self._thread = threading.Thread(target=self._run, name=f"sub-reactor-{index}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def adopt(self, sock: socket.socket) -> None:
        """From any thread: make `sock` a connection served by this reactor's thread."""
        self.loop.call_soon_threadsafe(self._adopt, sock)

    def _adopt(self, sock: socket.socket) -> None:
        self.adopted_connections += 1
        try:
            TcpConnection(self.loop, sock, self._protocol_factory(), edge=self._edge,
                          high_water_bytes=self._high_water_bytes,
                          low_water_bytes=self._low_water_bytes, registry=self._connections)
        except Exception:
            sock.close()
            raise  # the loop logs it with the traceback

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def _run(self) -> None:
        loop = self.loop
        try:
            loop.run_forever()
        finally:
            loop.run_once(0)  # adopt sockets already handed over, so they get closed too
            for conn in list(self._connections):
                conn.abort()
            loop.run_once(0)  # deliver connection_lost
            loop.close()

    def stop(self) -> None:
        """From any thread: stop the loop, close its connections, join the thread."""
        if not self._thread.is_alive():
            if not self.loop.is_closed:
                self.loop.close()
            return
        self.loop.stop()
        self._thread.join(_JOIN_TIMEOUT)
        if self._thread.is_alive():
            raise ReactorError(f"sub-reactor {self.index} did not stop within "
                               f"{_JOIN_TIMEOUT} s")


class MultiReactorServer:
    """A TCP server on a main reactor with N sub-reactor threads. Owns the listener and the
    sub-reactors; does not own the main loop (the caller runs it). The sub-reactors use the
    main loop's poller backend."""

    def __init__(self, loop: EventLoop, host: str, port: int,
                 protocol_factory: Callable[[], Protocol], *, sub_reactors: int = 2,
                 edge: bool = False, backlog: int = 1024, reuse_port: bool = False,
                 high_water_bytes: int = HIGH_WATER_BYTES,
                 low_water_bytes: int = LOW_WATER_BYTES) -> None:
        if sub_reactors < 1:
            raise ReactorError("a multi-reactor server needs at least one sub-reactor")
        self._subs: list[SubReactor] = []
        self._next = 0
        try:
            for i in range(sub_reactors):
                self._subs.append(SubReactor(i, protocol_factory, backend=loop.backend,
                                             edge=edge, high_water_bytes=high_water_bytes,
                                             low_water_bytes=low_water_bytes))
            # The listener serves no connection itself; `edge` is passed so that a backend
            # without edge-triggering is refused now, not on every hand-off.
            self._listener = TcpListener(loop, host, port, protocol_factory, edge=edge,
                                         backlog=backlog, reuse_port=reuse_port,
                                         on_accept=self._hand_off)
        except BaseException:
            for sub in self._subs:
                sub.loop.close()
            raise
        for sub in self._subs:
            sub.start()

    def _hand_off(self, sock: socket.socket, addr: Any) -> None:
        sub = self._subs[self._next]
        self._next = (self._next + 1) % len(self._subs)
        sub.adopt(sock)

    @property
    def sub_reactors(self) -> list[SubReactor]:
        return list(self._subs)

    @property
    def listener(self) -> TcpListener:
        return self._listener

    @property
    def sockname(self) -> Any:
        return self._listener.sockname

    @property
    def port(self) -> int:
        return self._listener.port

    @property
    def accepted_connections(self) -> int:
        return self._listener.accepted_connections

    @property
    def shed_connections(self) -> int:
        return self._listener.shed_connections

    def close(self) -> None:
        """Stop accepting, then stop every sub-reactor (aborting its connections).

        Call it from the main loop's thread, or once that loop has stopped: the listener
        belongs to that loop, and no hand-off may race with the sub-reactors' shutdown."""
        self._listener.close()
        errors = []
        for sub in self._subs:
            try:
                sub.stop()
            except ReactorError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> MultiReactorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
