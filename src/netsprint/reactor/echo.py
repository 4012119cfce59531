"""The echo server: the week-1 deliverable and the reactor's benchmark subject.

`netsprint echo-server --port P [--sub-reactors N] [--backend epoll|poll|select] [--edge]`
runs `run_server`. Port 0 picks a free port; the printed line says which.
"""

from __future__ import annotations

from typing import Any

from netsprint.errors import ReactorError
from netsprint.reactor.addresses import short_addr
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.multireactor import MultiReactorServer
from netsprint.reactor.protocols import Protocol
from netsprint.reactor.signals import StopOnSignals
from netsprint.reactor.tcp import TcpConnection, TcpListener


class EchoProtocol(Protocol):
    """Writes back every byte it reads; owns nothing but references to its connection.

    Backpressure: a client that sends but does not read would make the output buffer grow
    without bound. Past the high watermark the connection stops reading from it (the
    kernel's buffers fill and the client's own send blocks), and reads again once the
    buffer has drained to the low watermark."""

    # The fast path: `data_received` is a slot holding the connection's bound `write`
    # (a subclass slot shadows the base class method), so each message goes from the
    # connection's read callback straight into write(): one Python call fewer.
    __slots__ = ("data_received", "_conn")

    def connection_made(self, conn: TcpConnection) -> None:
        self._conn = conn
        self.data_received = conn.write

    def pause_writing(self) -> None:
        self._conn.pause_reading()

    def resume_writing(self) -> None:
        self._conn.resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        # Drop the connection and its bound method: no protocol <-> conn cycle.
        self._conn = None
        self.data_received = _discard


def _discard(data: bytes) -> None:
    """data_received after connection_lost: nothing to write to."""


def run_server(host: str = "127.0.0.1", port: int = 7000, sub_reactors: int = 0,
               backend: str = "epoll", *, edge: bool = False) -> None:
    """Serve echo until SIGINT/SIGTERM (or KeyboardInterrupt); blocks the calling thread."""
    with EventLoop(backend) as loop:
        server: Any
        try:
            if sub_reactors > 0:
                server = MultiReactorServer(loop, host, port, EchoProtocol,
                                            sub_reactors=sub_reactors, edge=edge)
            else:
                server = TcpListener(loop, host, port, EchoProtocol, edge=edge)
        except OSError as exc:  # EADDRINUSE, EACCES: say it in one line, not a traceback
            raise ReactorError(f"cannot listen on {short_addr((host, port))}: "
                               f"{exc.strerror or exc}") from exc
        try:
            print(f"netsprint echo server listening on {short_addr(server.sockname)} "
                  f"(backend {backend}, sub-reactors {sub_reactors}"
                  f"{', edge-triggered' if edge else ''})", flush=True)
            with StopOnSignals(loop):
                loop.run_forever()
        finally:
            server.close()
            loop.run_once(0)  # deliver connection_lost to the aborted connections
        print(f"netsprint echo server stopped: accepted={server.accepted_connections} "
              f"shed={server.shed_connections}", flush=True)
