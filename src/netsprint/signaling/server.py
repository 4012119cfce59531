"""The signaling server on the week-1 reactor: the I/O shell around `SignalingCore`.

Per connection a `FrameDecoder` cuts the byte stream into payloads; the core decides; this
shell carries out its actions: `Send` frames a payload and writes it, `Close` closes the
connection after its output drains. One loop timer, armed at `core.next_deadline()`,
drives heartbeat expiry.

Slow consumers: a client that never reads makes the server's output buffer for it grow
without bound. After each write the shell compares the connection's unsent bytes with
`max_output_bytes`; over it, the client gets a `slow_consumer` error (queued behind the
rest) and a close. A close flushes first, and a client that never reads would hold that
memory forever, so every close is bounded by `close_grace` seconds, then aborted.

Relay (week 5): with `relay_limits`, the server also opens a UDP socket on the same host
and the same port number as its TCP listener (docs/signaling.md, "Relay"). Datagrams go
to a `RelayCore` and its Forward/Reply actions go out of that socket; the one timer also
serves the relay's expiry deadlines.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import logging
from typing import Any, Callable

from netsprint.clock import Clock
from netsprint.p2p.relay import RelayAction, RelayCore, RelayLimits
from netsprint.reactor import background
from netsprint.reactor.addresses import short_addr
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.protocols import DatagramProtocol, Protocol
from netsprint.reactor.tcp import TcpConnection, TcpListener
from netsprint.reactor.udp import UdpSocket
from netsprint.signaling.core import HEARTBEAT_TIMEOUT, Action, Close, Send, SignalingCore
from netsprint.signaling.framing import MAX_FRAME_BYTES, FrameDecoder, FrameError, encode_frame

log = logging.getLogger(__name__)

MAX_OUTPUT_BYTES = 1024 * 1024  # unsent bytes a connection may pile up before it is closed
CLOSE_GRACE = 5.0  # seconds a closing connection gets to take its last bytes
# With port 0 the kernel picks a free TCP port, which may be taken for UDP: try again.
RELAY_BIND_ATTEMPTS = 16
# The relay socket's receive buffer: a burst from many peers is dropped by the kernel
# once this fills (socket(7) doubles the value, capped at net.core.rmem_max).
RELAY_RECV_BUFFER_BYTES = 1024 * 1024


class _ServerConnection(Protocol):
    """The reactor protocol of one client: owns its FrameDecoder, hands frames to the server."""

    __slots__ = ("_server", "_conn_id", "_decoder", "_conn")

    def __init__(self, server: SignalingServer, conn_id: int, max_frame_bytes: int) -> None:
        self._server = server
        self._conn_id = conn_id
        self._decoder = FrameDecoder(max_frame_bytes)
        self._conn: TcpConnection | None = None

    def connection_made(self, conn: TcpConnection) -> None:
        self._conn = conn
        self._server._connection_made(self._conn_id, conn)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FrameError as exc:
            self._deliver(exc.frames)  # complete frames before the bad header still count
            self._server._frame_error(self._conn_id, exc)
            return
        self._deliver(frames)

    def _deliver(self, frames: list[bytes]) -> None:
        server, conn_id, conn = self._server, self._conn_id, self._conn
        for payload in frames:
            server._frame_received(conn_id, payload)
            if conn.closed or not server._is_open(conn_id):
                return  # the core closed this connection: the rest is not read

    def eof_received(self) -> None:
        # The peer sent FIN: the transport closes the connection once this returns, and
        # nothing may be written to it after that. So this, not connection_lost (which
        # runs later, on the loop), is when the peer leaves.
        self._server._peer_finished(self._conn_id)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._server._connection_lost(self._conn_id, exc)
        self._conn = None


class _RelayDatagrams(DatagramProtocol):
    """The relay socket's protocol: hands every datagram to the server."""

    __slots__ = ("_server",)

    def __init__(self, server: SignalingServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self._server._relay_datagram(data, addr)

    def error_received(self, exc: OSError) -> None:
        # An ICMP error for a forwarded datagram: the peer's NAT mapping may be gone. The
        # allocation's idle timeout frees it; nothing to do now.
        log.debug("relay: %s (to %s)", exc, short_addr(getattr(exc, "address", None)))


class SignalingServer:
    """Owns the listening socket (hence its connections), the relay's UDP socket (if
    any), the core and the one expiry timer; does not own the loop."""

    def __init__(self, loop: EventLoop, host: str = "127.0.0.1", port: int = 0, *,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
                 max_frame_bytes: int = MAX_FRAME_BYTES,
                 max_output_bytes: int = MAX_OUTPUT_BYTES, close_grace: float = CLOSE_GRACE,
                 clock: Clock | None = None, relay_limits: RelayLimits | None = None) -> None:
        self._loop = loop
        self._now: Callable[[], float] = clock.now if clock is not None else loop.time
        self.max_frame_bytes = max_frame_bytes
        self.max_output_bytes = max_output_bytes
        self.close_grace = close_grace
        self._conn_ids = itertools.count(1)
        self._open: dict[int, TcpConnection] = {}
        self._closing: dict[int, Any] = {}  # conn id -> its grace timer
        self._timer: Any = None
        self._timer_deadline: float | None = None
        self._udp: UdpSocket | None = None
        # The core exists before any connection: accepts run later, on the loop.
        if relay_limits is None:
            self._listener = TcpListener(loop, host, port, self._make_protocol)
            self.core = SignalingCore(heartbeat_timeout)
        else:
            self._listener, self._udp = self._listen_with_relay(host, port)
            self.core = SignalingCore(heartbeat_timeout, RelayCore(relay_limits),
                                      relay_port=self._listener.port)

    def _listen_with_relay(self, host: str, port: int) -> tuple[TcpListener, UdpSocket]:
        """A TCP listener and a UDP socket on the same host and port number."""
        attempts = RELAY_BIND_ATTEMPTS if port == 0 else 1
        for attempt in range(1, attempts + 1):
            listener = TcpListener(self._loop, host, port, self._make_protocol)
            try:
                # The listener's own address, not `host`: a name may resolve to several.
                udp = UdpSocket(self._loop, (listener.sockname[0], listener.port),
                                _RelayDatagrams(self),
                                recv_buffer_bytes=RELAY_RECV_BUFFER_BYTES)
            except BaseException as exc:
                listener.close()
                in_use = isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
                if not in_use or attempt == attempts:
                    raise
                continue
            return listener, udp
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _make_protocol(self) -> _ServerConnection:
        return _ServerConnection(self, next(self._conn_ids), self.max_frame_bytes)

    # -- events from the connections ------------------------------------------------------

    def _connection_made(self, conn_id: int, conn: TcpConnection) -> None:
        self._open[conn_id] = conn
        self._apply(self.core.connection_made(conn_id, conn.peername, self._now(),
                                              local_addr=conn.sockname))

    def _frame_received(self, conn_id: int, payload: bytes) -> None:
        self._apply(self.core.frame_received(conn_id, payload, self._now()))

    def _frame_error(self, conn_id: int, exc: FrameError) -> None:
        self._apply(self.core.frame_error(conn_id, exc, self._now()))

    def _peer_finished(self, conn_id: int) -> None:
        conn = self._open.pop(conn_id, None)
        if conn is None:
            return
        self._closing[conn_id] = self._loop.call_later(self.close_grace, conn.abort)
        self._apply(self.core.connection_lost(conn_id, self._now()))

    def _connection_lost(self, conn_id: int, exc: BaseException | None) -> None:
        self._open.pop(conn_id, None)
        timer = self._closing.pop(conn_id, None)
        if timer is not None:
            timer.cancel()
        if exc is not None:
            log.debug("connection %d lost: %s", conn_id, exc)
        self._apply(self.core.connection_lost(conn_id, self._now()))

    def _is_open(self, conn_id: int) -> bool:
        return conn_id in self._open

    # -- the relay's datagrams ------------------------------------------------------------

    def _relay_datagram(self, data: bytes, addr: tuple) -> None:
        actions: list[RelayAction] = self.relay.datagram_received(data, addr, self._now())
        for action in actions:  # Forward and Reply alike: one datagram to action.addr
            self._udp.sendto(action.data, action.addr)
        # No re-arm: a datagram only moves deadlines later, and an early timer re-arms.

    # -- actions --------------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        work = collections.deque(actions)
        while work:
            action = work.popleft()
            if isinstance(action, Send):
                work.extend(self._send(action))
            elif isinstance(action, Close):
                self._close(action)
        self._arm_timer()

    def _send(self, action: Send) -> list[Action]:
        conn = self._open.get(action.conn_id)  # only connections that may be written to
        if conn is None or conn.closed:
            return []  # gone meanwhile (reset, or the core has not heard yet)
        # The protocol's limit, not `max_frame_bytes`: that bounds what clients send; what
        # the server sends is bounded by validation and may be longer than a small limit.
        conn.write(encode_frame(action.payload, MAX_FRAME_BYTES))
        if conn.buffered_bytes > self.max_output_bytes:
            return self.core.output_overflow(action.conn_id, conn.buffered_bytes, self._now())
        return []

    def _close(self, action: Close) -> None:
        conn = self._open.pop(action.conn_id, None)
        if conn is None or conn.closed:
            return
        log.debug("closing connection %s (%s): %s", action.conn_id,
                  short_addr(conn.peername), action.reason)
        conn.close()
        if not conn.closed:  # output still waiting: bound the wait (module docstring)
            self._closing[action.conn_id] = self._loop.call_later(self.close_grace,
                                                                  conn.abort)

    # -- heartbeat expiry -----------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._listener.closed:
            return
        deadline = self.core.next_deadline()
        if deadline is None:
            return
        if self._timer is not None:
            # Heartbeat deadlines only move later, but a new relay allocation's idle
            # deadline may come before the armed one.
            if deadline >= self._timer_deadline:
                return
            self._timer.cancel()
        # call_later, not call_at: `clock` may differ from the loop's clock.
        self._timer = self._loop.call_later(max(0.0, deadline - self._now()), self._on_timer)
        self._timer_deadline = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self.tick()

    def tick(self) -> None:
        """Expire silent connections now (the timer does this; tests with a FakeClock
        call it after advancing the clock)."""
        self._apply(self.core.tick(self._now()))

    # -- introspection and lifetime -------------------------------------------------------

    @property
    def port(self) -> int:
        return self._listener.port

    @property
    def sockname(self) -> Any:
        return self._listener.sockname

    @property
    def relay(self) -> RelayCore | None:
        """The relay's logic (the core's; None without a relay)."""
        return self.core.relay

    @property
    def relay_port(self) -> int | None:
        """The relay's UDP port (the TCP port number), or None without a relay."""
        if self._udp is None or self._udp.closed:
            return None
        return self._udp.sockname[1]

    @property
    def stats(self) -> dict[str, int]:
        """The core's counters (frames_in, forwarded, errors.<code>, expired, ...); with a
        relay also its counters as relay.<name> (relay.relayed_packets, ...)."""
        if self.relay is None:
            return self.core.stats
        merged = collections.defaultdict(int, self.core.stats)
        merged.update((f"relay.{name}", value) for name, value in self.relay.stats.items())
        return merged

    @property
    def connection_count(self) -> int:
        return len(self._open) + len(self._closing)

    @property
    def closed(self) -> bool:
        return self._listener.closed

    def close(self) -> None:
        """Stop listening and abort every connection (connection_lost runs on the loop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for timer in self._closing.values():
            timer.cancel()
        self._listener.close()
        if self._udp is not None:
            self._udp.close()

    def __enter__(self) -> SignalingServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<SignalingServer {short_addr(self.sockname)} "
                f"connections={self.connection_count} peers={len(self.core.peer_ids())}>")


def serving_in_thread(host: str = "127.0.0.1", port: int = 0, **options: Any
                      ) -> contextlib.AbstractContextManager[SignalingServer]:
    """A SignalingServer (`options` as for the class) on its own loop in a background
    thread, for notebooks and tests that block in clients; closed on exit, even on failure."""
    return background.serving_in_thread(
        lambda loop: SignalingServer(loop, host, port, **options), name="signaling-server")
