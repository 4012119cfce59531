"""Signaling clients: one on the reactor (callbacks, automatic heartbeat) and one blocking.

`SignalingClient` lives on an EventLoop next to other work (a UDP socket punching holes,
week 4): it calls `on_message(msg)` for every message from the server and `on_close(exc)`
once at the end. `BlockingSignalingClient` is for notebooks and scripts, one call at a
time: `register`, `send`, `receive(timeout)`.

Both frame with `FrameDecoder` and decode with `decode_message`: a frame the server should
never send (oversized, not a message) ends the connection, since a client cannot answer
its own server with an error.
"""

from __future__ import annotations

import collections
import logging
import socket
import time
from typing import Any, Callable

from netsprint.errors import DecodeError, NetsprintError
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.protocols import Protocol
from netsprint.reactor.tcp import TcpConnection
from netsprint.signaling import protocol as p
from netsprint.signaling.core import HEARTBEAT_TIMEOUT
from netsprint.signaling.framing import MAX_FRAME_BYTES, FrameDecoder, encode_frame

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = HEARTBEAT_TIMEOUT / 3  # seconds: one lost heartbeat is not fatal


class SignalingClosed(NetsprintError, ConnectionError):
    """The server closed the connection (or it broke)."""


class SignalingTimeout(NetsprintError, TimeoutError):
    """No message arrived within the timeout."""


class SignalingRejected(NetsprintError):
    """The server answered with an `error` message; `error` is that message."""

    def __init__(self, error: p.Error) -> None:
        super().__init__(f"server refused: {error.code}: {error.reason}")
        self.error = error
        self.code = error.code


def _discard_message(msg: p.Message) -> None:
    """Default on_message: ignore."""


def _discard_close(exc: BaseException | None) -> None:
    """Default on_close: ignore."""


class SignalingClient(Protocol):
    """A signaling connection on the reactor. Owns its TcpConnection, frame decoder and
    heartbeat timer; does not own the loop.

    Messages sent before the TCP handshake completes are queued and sent in order.
    """

    def __init__(self, loop: EventLoop, host: str, port: int, *,
                 on_message: Callable[[p.Message], Any] = _discard_message,
                 on_close: Callable[[BaseException | None], Any] = _discard_close,
                 heartbeat_interval: float | None = HEARTBEAT_INTERVAL,
                 max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._loop = loop
        self.on_message = on_message
        self.on_close = on_close
        self.heartbeat_interval = heartbeat_interval
        self.max_frame_bytes = max_frame_bytes
        self._decoder = FrameDecoder(max_frame_bytes)
        self._pending: list[bytes] = []
        self._heartbeat_seq = 0
        self._heartbeat_timer: Any = None
        self._error: BaseException | None = None
        self.connected = False
        self.closed = False
        self.peer_id: str | None = None  # set when `registered` arrives
        self.observed: p.Endpoint | None = None
        self._conn = TcpConnection.connect(loop, host, port, self)

    # -- sending --------------------------------------------------------------------------

    def register(self, peer_id: str) -> None:
        self.send(p.Register(peer_id=peer_id))

    def send(self, msg: p.Message) -> None:
        if self.closed:
            raise SignalingClosed("send() on a closed signaling client")
        frame = encode_frame(p.encode_message(msg), self.max_frame_bytes)
        if self.connected:
            self._conn.write(frame)
        else:
            self._pending.append(frame)

    def close(self) -> None:
        """Close after what was sent; on_close(None) follows on the loop."""
        self._stop_heartbeat()
        self._conn.close()

    # -- reactor callbacks ----------------------------------------------------------------

    def connection_made(self, conn: TcpConnection) -> None:
        self.connected = True
        for frame in self._pending:
            conn.write(frame)
        self._pending.clear()
        self._schedule_heartbeat()

    def data_received(self, data: bytes) -> None:
        try:
            for payload in self._decoder.feed(data):
                self._handle(p.decode_message(payload))
                if self._conn.closed:
                    return
        except DecodeError as exc:  # FrameError or MessageError: a broken server
            log.warning("signaling server sent something unreadable: %s", exc)
            self._error = exc
            self._conn.abort()

    def _handle(self, msg: p.Message) -> None:
        if isinstance(msg, p.Registered):
            self.peer_id = msg.peer_id
            self.observed = msg.observed
        self.on_message(msg)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.connected = False
        self.closed = True
        self._stop_heartbeat()
        self.on_close(exc if exc is not None else self._error)

    # -- heartbeat ------------------------------------------------------------------------

    def _schedule_heartbeat(self) -> None:
        if self.heartbeat_interval is not None and not self.closed:
            self._heartbeat_timer = self._loop.call_later(self.heartbeat_interval,
                                                          self._send_heartbeat)

    def _send_heartbeat(self) -> None:
        self._heartbeat_timer = None
        if self._conn.closed:
            return
        self.send(p.Heartbeat(seq=self._heartbeat_seq))
        self._heartbeat_seq += 1
        self._schedule_heartbeat()

    def _stop_heartbeat(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None


class BlockingSignalingClient:
    """A blocking signaling connection for notebooks and scripts. Owns its socket.

    No automatic heartbeat: send `Heartbeat(seq)` yourself if you stay silent for longer
    than the server's timeout (HEARTBEAT_TIMEOUT, 30 s by default).
    """

    def __init__(self, host: str, port: int, timeout: float = 5.0,
                 max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes
        try:
            self._sock: socket.socket | None = socket.create_connection((host, port), timeout)
        except OSError as exc:
            raise SignalingClosed(f"cannot connect to {host}:{port}: {exc}") from exc
        self._decoder = FrameDecoder(max_frame_bytes)
        self._inbox: collections.deque[p.Message] = collections.deque()
        self.peer_id: str | None = None
        self.observed: p.Endpoint | None = None

    def register(self, peer_id: str) -> p.Registered:
        """Register and wait for the answer; SignalingRejected if the server refuses."""
        self.send(p.Register(peer_id=peer_id))
        early: list[p.Message] = []  # what came before the answer, kept for receive()
        try:
            while True:
                msg = self._read_message(self.timeout)
                if isinstance(msg, p.Registered):
                    self.peer_id, self.observed = msg.peer_id, msg.observed
                    return msg
                if isinstance(msg, p.Error) and msg.ref == p.Register.TYPE:
                    raise SignalingRejected(msg)
                # Not into the inbox yet: _read_message would hand it straight back.
                early.append(msg)
        finally:
            self._inbox.extendleft(reversed(early))  # ahead of what arrived after them

    def send(self, msg: p.Message) -> None:
        frame = encode_frame(p.encode_message(msg), self.max_frame_bytes)
        try:
            self._socket().sendall(frame)
        except OSError as exc:
            raise SignalingClosed(f"send failed: {exc}") from exc

    def receive(self, timeout: float | None = None) -> p.Message:
        """The next message from the server; SignalingTimeout if none comes in time."""
        if self._inbox:
            return self._inbox.popleft()
        return self._read_message(self.timeout if timeout is None else timeout)

    def _read_message(self, timeout: float) -> p.Message:
        sock = self._socket()
        deadline = time.monotonic() + timeout  # for the whole message, not per recv
        while not self._inbox:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SignalingTimeout(f"no message within {timeout} s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                raise SignalingTimeout(f"no message within {timeout} s") from None
            except OSError as exc:
                raise SignalingClosed(f"connection broke: {exc}") from exc
            if not data:
                raise SignalingClosed("the server closed the connection")
            # FrameError / MessageError propagate: a DecodeError names what was wrong.
            self._inbox.extend(p.decode_message(f) for f in self._decoder.feed(data))
        return self._inbox.popleft()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise SignalingClosed("the client is closed")
        return self._sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> BlockingSignalingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
