"""Non-blocking TCP on the reactor: TcpListener (accept) and TcpConnection (one stream).

Level-triggered (default) vs edge-triggered (`edge=True`, epoll only):
- LT: epoll reports an fd while it *is* readable/writable. Reading once per event is
  enough (leftover bytes are reported again), and WRITABLE is asked for only while the
  output buffer holds bytes, because an empty socket send buffer is writable almost always
  and would wake the loop for nothing.
- ET: epoll reports a *transition* (new bytes arrived, send space freed). Bytes left unread
  after an event are never reported again, so reads drain the socket until recv raises
  BlockingIOError (EAGAIN); the interest set READABLE|WRITABLE|EDGE is set once and never
  modified, since an unwanted WRITABLE costs nothing when it only fires on transitions.

Sending never uses `sendall` (it would block or loop): `write()` sends once and keeps
only the unsent tail. Python ignores SIGPIPE at start-up, so writing to a reset
connection raises EPIPE/ECONNRESET instead of killing the process. EINTR never reaches this
code: CPython retries interrupted reads, writes and accepts itself (PEP 475).

A protocol callback that raises costs the connection (as in asyncio): it is aborted with
`connection_lost(exc)` and the exception goes on to the loop, which logs it. Carrying on
instead would strand bytes an edge-triggered read had not drained yet, or spin a
level-triggered loop on an EOF that `eof_received` never got to handle.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from typing import Any, Callable

from netsprint.errors import ReactorError
from netsprint.reactor.addresses import resolve, short_addr
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.poller import EDGE, ERROR, HANGUP, READABLE, WRITABLE
from netsprint.reactor.protocols import Protocol

log = logging.getLogger(__name__)

# One read per readiness event (LT). Kept below glibc's 128 KiB mmap threshold: CPython
# allocates the full size before shrinking the bytes to what arrived, and a larger
# buffer (asyncio reads 256 KiB) costs an mmap + munmap system call pair on every read.
RECV_SIZE_BYTES = 65536
HIGH_WATER_BYTES = 64 * 1024
LOW_WATER_BYTES = 16 * 1024
ACCEPT_BATCH = 64  # accepts per readiness event: bounded so one listener cannot starve I/O
ACCEPT_RETRY_DELAY = 0.1  # seconds to stop accepting when even the spare fd is gone

# os.read/os.write on the socket's fd are recv/send with no flags (recv(2): "the only
# difference"), and cost less per call in CPython than the socket methods, whose
# argument parsing and timeout handling an always-non-blocking socket does not need.
_read = os.read
_write = os.write

_READ_BITS = READABLE | ERROR | HANGUP  # ERR/HUP: the next recv returns the error or b""
_WRITE_BITS = WRITABLE | ERROR | HANGUP
_EDGE_EVENTS = READABLE | WRITABLE | EDGE

# Why write() is refused: None means writes are allowed.
_CONNECTING = "the connection is not established yet (write from connection_made)"
_AFTER_EOF = "write() after write_eof()"
_AFTER_CLOSE = "write() after close()"
_LOST = "lost"  # writes after connection_lost are dropped silently, as in asyncio

# accept(2): "Linux accept() passes already-pending network errors on the new socket as
# an error code from accept()" -- the listening socket itself is fine; take the next one.
_ACCEPT_SKIP_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.ENOPROTOOPT,
                                 errno.EHOSTDOWN, errno.ENONET, errno.EHOSTUNREACH,
                                 errno.EOPNOTSUPP, errno.ENETUNREACH, errno.ENETDOWN,
                                 errno.EPERM})
_OUT_OF_FDS_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
_OUT_OF_MEMORY_ERRNOS = frozenset({errno.ENOBUFS, errno.ENOMEM})


def _refuse_edge_without_epoll(loop: EventLoop, edge: bool) -> None:
    if edge and not loop.supports_edge:
        raise ReactorError(f"edge-triggered connections need the epoll backend, "
                           f"not {loop.backend}")


def _socket_error(sock: socket.socket) -> OSError | None:
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return OSError(err, os.strerror(err)) if err else None


class TcpConnection:
    """One TCP stream. Owns the socket and its output buffer; does not own the loop, and
    the protocol only through the callbacks it is given.

    Memory: `__slots__`, and the output buffer exists only while bytes wait to be sent,
    so an idle connection is a few hundred bytes of Python objects.
    """

    __slots__ = ("_loop", "_sock", "_fd", "_protocol", "_out", "_events", "_edge",
                 "_reading", "_eof", "_no_write", "_eof_pending", "_closing", "_paused",
                 "high_water_bytes", "low_water_bytes", "bytes_sent", "bytes_received",
                 "_registry", "_peername")

    def __init__(self, loop: EventLoop, sock: socket.socket, protocol: Protocol, *,
                 edge: bool = False, high_water_bytes: int = HIGH_WATER_BYTES,
                 low_water_bytes: int = LOW_WATER_BYTES,
                 registry: set[TcpConnection] | None = None,
                 _connected: bool = True) -> None:
        """Adopt a connected socket: register it and call protocol.connection_made(self).

        `registry`: a set the connection stays in while open, so its owner (a listener,
        a sub-reactor) can abort what is still open when it shuts down.
        """
        _refuse_edge_without_epoll(loop, edge)
        if not 0 <= low_water_bytes <= high_water_bytes:
            raise ReactorError("watermarks must satisfy 0 <= low_water_bytes <= high_water_bytes")
        sock.setblocking(False)
        self._loop = loop
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._out: bytearray | None = None
        self._events = 0
        self._edge = edge
        self._reading = False
        self._eof = False
        self._no_write: str | None = _CONNECTING
        self._eof_pending = False
        self._closing = False
        self._paused = False
        self.high_water_bytes = high_water_bytes
        self.low_water_bytes = low_water_bytes
        self.bytes_sent = 0
        self.bytes_received = 0
        self._registry = registry
        self._peername: Any = None  # asked of the kernel on first use, kept after close
        if _connected:
            self._start()

    # -- client side -----------------------------------------------------------------------

    @classmethod
    def connect(cls, loop: EventLoop, host: str, port: int, protocol: Protocol, *,
                edge: bool = False, high_water_bytes: int = HIGH_WATER_BYTES,
                low_water_bytes: int = LOW_WATER_BYTES) -> TcpConnection:
        """Start a non-blocking connect and return at once.

        On success `protocol.connection_made(conn)` runs; on failure connection_made never
        runs and `protocol.connection_lost(exc)` gets the error (e.g. ConnectionRefusedError).
        """
        family, addr = resolve(host, port, socket.SOCK_STREAM)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            # EINPROGRESS: the handshake continues in the kernel; connect(2) says to wait
            # for writability, then read SO_ERROR. EINTR means the same for a
            # non-blocking socket ("the connection is established asynchronously").
            if err not in (0, errno.EINPROGRESS, errno.EINTR):
                raise OSError(err, f"connect to {short_addr(addr)}: {os.strerror(err)}")
            conn = cls(loop, sock, protocol, edge=edge, high_water_bytes=high_water_bytes,
                       low_water_bytes=low_water_bytes, _connected=False)
            loop.register(sock, WRITABLE, conn._on_connect_ready)
        except BaseException:
            sock.close()
            raise
        conn._events = WRITABLE
        return conn

    def _on_connect_ready(self, fd: int, events: int) -> None:
        exc = _socket_error(self._sock)
        if exc is not None:
            self._teardown(exc)
            return
        self._start()

    def _start(self) -> None:
        sock = self._sock
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Request/response traffic: do not let Nagle hold a small reply back while
            # waiting for the ACK of the previous one (asyncio sets this too).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reading = True
        self._no_write = None
        try:
            if self._edge:
                self._set_events(_EDGE_EVENTS, self._on_event_edge)
            else:
                self._set_events(READABLE, self._on_event)
            if self._registry is not None:
                self._registry.add(self)
            self._protocol.connection_made(self)
        except BaseException as exc:
            # Neither a registered fd nor a registry entry may outlive a failed start.
            self._teardown(exc)
            raise

    # -- readiness callbacks (the hot path) ------------------------------------------------

    def _on_event(self, fd: int, events: int) -> None:
        """Level-triggered: one recv per event; the loop reports leftovers again."""
        try:
            if events & _READ_BITS and self._reading:
                try:
                    data = _read(fd, RECV_SIZE_BYTES)
                except BlockingIOError:
                    data = None  # readiness was stale (another reader, or a spurious wake-up)
                except OSError as exc:
                    self._teardown(exc)
                    return
                if data:
                    self.bytes_received += len(data)
                    self._protocol.data_received(data)
                elif data is not None:
                    self._on_eof()
            if events & _WRITE_BITS and self._sock is not None:
                self._on_writable_or_error(events)
        except BaseException as exc:  # from a protocol callback (module docstring)
            self._teardown(exc)
            raise

    def _on_event_edge(self, fd: int, events: int) -> None:
        """Edge-triggered: an event is a transition, so read until EAGAIN or nothing more
        will be reported for bytes already queued."""
        try:
            if events & _READ_BITS and self._reading:
                protocol = self._protocol
                while True:
                    try:
                        data = _read(fd, RECV_SIZE_BYTES)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        self._teardown(exc)
                        return
                    if not data:
                        self._on_eof()
                        break
                    self.bytes_received += len(data)
                    protocol.data_received(data)
                    if not self._reading:  # the protocol paused, closed or aborted
                        break
            if events & _WRITE_BITS and self._sock is not None:
                self._on_writable_or_error(events)
        except BaseException as exc:  # from a protocol callback (module docstring)
            self._teardown(exc)
            raise

    def _on_writable_or_error(self, events: int) -> None:
        if self._out:
            self._flush()
        elif events & (ERROR | HANGUP) and not self._reading:
            # Nothing to send and no read to surface the error: ask the socket.
            exc = _socket_error(self._sock)
            if exc is not None:
                self._teardown(exc)

    def _on_eof(self) -> None:
        self._eof = True
        self._reading = False
        keep_open = self._protocol.eof_received()
        if self._sock is None or self._closing:
            return  # the protocol closed or aborted from eof_received
        if keep_open:
            if not self._edge:
                # At EOF the socket stays readable forever: drop READABLE or LT spins.
                self._update_events()
        else:
            self.close()

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send now what the kernel takes; buffer the rest and send it when writable."""
        if self._no_write is not None:
            self._refuse_write()
            return
        out = self._out
        if out is not None:
            out += data  # ordering: never send around bytes already waiting
            if len(out) > self.high_water_bytes and not self._paused:
                self._pause_protocol()
            return
        try:
            sent = _write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._teardown(exc)
            return
        self.bytes_sent += sent
        if sent != len(data):
            self._buffer_tail(data, sent)

    def _buffer_tail(self, data: bytes | bytearray | memoryview, sent: int) -> None:
        with memoryview(data) as view:
            if view.nbytes == sent:
                return  # len() counted items of a non-byte memoryview: all sent
            self._out = bytearray(view.cast("B")[sent:])  # one copy of the tail only
        if not self._edge:
            self._update_events()  # start watching WRITABLE
        if len(self._out) > self.high_water_bytes and not self._paused:
            self._pause_protocol()

    def _flush(self) -> None:
        out = self._out
        fd = self._fd
        while out:
            try:
                sent = _write(fd, out)
            except BlockingIOError:
                break
            except OSError as exc:
                self._teardown(exc)
                return
            self.bytes_sent += sent
            # bytearray drops a prefix by moving its start pointer (amortised O(1)), so
            # a big buffer drained in many sends is not copied over and over.
            del out[:sent]
            if not self._edge:
                break  # LT: the loop reports WRITABLE again if there is room
        if self._paused and len(out) <= self.low_water_bytes:
            self._paused = False
            self._protocol.resume_writing()
            if self._sock is None:
                return
        if out:
            return
        self._out = None  # an idle connection keeps no buffer
        if self._eof_pending:
            self._eof_pending = False
            self._shutdown_write()
        if self._closing:
            self._teardown(None)
        elif self._sock is not None and not self._edge:
            self._update_events()  # stop watching WRITABLE

    def _refuse_write(self) -> None:
        if self._no_write is _LOST:
            return
        raise ReactorError(self._no_write)

    def _pause_protocol(self) -> None:
        self._paused = True
        self._protocol.pause_writing()

    def write_eof(self) -> None:
        """Half-close: shutdown(SHUT_WR) once the buffer drains; reading goes on."""
        if self._no_write is not None:
            if self._no_write is _CONNECTING:
                raise ReactorError(_CONNECTING)
            return  # already half-closed, closing or lost
        self._no_write = _AFTER_EOF
        if self._out:
            self._eof_pending = True
        else:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._teardown(exc)

    @property
    def buffered_bytes(self) -> int:
        """Bytes accepted by write() that the kernel has not taken yet."""
        return len(self._out) if self._out else 0

    # -- reading flow control --------------------------------------------------------------

    def pause_reading(self) -> None:
        if self._sock is None or not self._reading:
            return
        self._reading = False
        if not self._edge:
            self._update_events()

    def resume_reading(self) -> None:
        if self._sock is None or self._reading or self._eof or self._closing \
                or self._no_write is _CONNECTING:
            return
        self._reading = True
        if self._edge:
            # No new edge will report bytes that arrived while paused: look now.
            self._loop.call_soon(self._resume_edge_read)
        else:
            self._update_events()

    def _resume_edge_read(self) -> None:
        if self._sock is not None:
            self._on_event_edge(self._fd, READABLE)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, send what is buffered, then close (connection_lost(None))."""
        if self._sock is None or self._closing:
            return
        self._closing = True
        self._reading = False
        if self._no_write is not _CONNECTING:
            self._no_write = _AFTER_CLOSE
        if self._out:
            if not self._edge:
                self._update_events()
        else:
            self._teardown(None)

    def abort(self) -> None:
        """Close now and drop the buffer (connection_lost(None))."""
        self._teardown(None)

    def _teardown(self, exc: BaseException | None) -> None:
        sock = self._sock
        if sock is None:
            return  # connection_lost must run exactly once
        self._sock = None
        self._out = None
        self._reading = False
        if self._no_write is None or self._no_write is _CONNECTING:
            self._no_write = _LOST  # closed under the protocol: later writes are dropped
        loop = self._loop
        if self._events and not loop.is_closed:
            loop.unregister(self._fd)  # before close: the fd number may be reused at once
        self._events = 0
        if self._peername is None:
            self._peername = _peer_of(sock)
        sock.close()
        if self._registry is not None:
            self._registry.discard(self)
        if not loop.is_closed:
            # Later, not now: the protocol may be in the middle of data_received.
            loop.call_soon(self._protocol.connection_lost, exc)

    # -- registration ----------------------------------------------------------------------

    def _update_events(self) -> None:
        """LT only: ask for READABLE while reading, WRITABLE while bytes wait."""
        events = (READABLE if self._reading else 0) | (WRITABLE if self._out else 0)
        self._set_events(events, self._on_event)

    def _set_events(self, events: int, callback: Callable[[int, int], None]) -> None:
        if events == self._events:
            return
        loop = self._loop
        if not events:
            # Leave epoll entirely rather than keep an empty interest set: ERROR/HANGUP
            # are reported even then, and a level-triggered HANGUP would spin the loop.
            loop.unregister(self._fd)
        elif not self._events:
            loop.register(self._fd, events, callback)
        else:
            loop.modify(self._fd, events, callback)
        self._events = events

    # -- introspection ---------------------------------------------------------------------

    @property
    def protocol(self) -> Protocol:
        return self._protocol

    @property
    def closed(self) -> bool:
        """True once the socket is closed (connection_lost is then scheduled or done)."""
        return self._sock is None

    @property
    def peername(self) -> Any:
        if self._peername is None and self._sock is not None:
            self._peername = _peer_of(self._sock)
        return self._peername

    @property
    def sockname(self) -> Any:
        return self._sock.getsockname() if self._sock is not None else None

    @property
    def socket(self) -> socket.socket | None:
        return self._sock

    def __enter__(self) -> TcpConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else "closing" if self._closing else "open"
        return (f"<TcpConnection {state} peer={short_addr(self.peername)} "
                f"sent={self.bytes_sent} received={self.bytes_received} "
                f"buffered={self.buffered_bytes}>")


def _peer_of(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return None  # not connected (yet, or any more)


class TcpListener:
    """Accepts connections. Owns the listening socket, one spare fd, and the connections it
    created (closing the listener aborts them); does not own the loop.

    Out of fds: accept() fails with EMFILE while the connection stays queued, so the
    listening socket stays readable and a level-triggered loop would spin at 100% CPU.
    The listener keeps one spare fd (/dev/null) open; on EMFILE it closes the spare,
    accepts the queued connection into the freed slot, closes it at once (the client sees
    the close), and reopens the spare. Established clients keep being served.
    The listener itself is level-triggered even with `edge=True` (that flag applies to the
    accepted connections): accepts are bounded per event, which ET would not re-report.
    """

    def __init__(self, loop: EventLoop, host: str, port: int,
                 protocol_factory: Callable[[], Protocol], *, backlog: int = 1024,
                 reuse_port: bool = False, edge: bool = False,
                 high_water_bytes: int = HIGH_WATER_BYTES,
                 low_water_bytes: int = LOW_WATER_BYTES, accept_batch: int = ACCEPT_BATCH,
                 on_accept: Callable[[socket.socket, Any], Any] | None = None) -> None:
        _refuse_edge_without_epoll(loop, edge)
        self._loop = loop
        self._protocol_factory = protocol_factory
        self._edge = edge
        self._high_water_bytes = high_water_bytes
        self._low_water_bytes = low_water_bytes
        self.accept_batch = accept_batch
        self._on_accept = on_accept or self._make_connection
        self._connections: set[TcpConnection] = set()
        self.accepted_connections = 0
        self.shed_connections = 0
        self._shedding = False
        self._shed_in_burst = 0
        self._retry_timer = None
        self._sock = self._listen(host, port, backlog, reuse_port)
        try:
            loop.register(self._sock, READABLE, self._on_readable)
        except BaseException:
            self._sock.close()
            raise
        self._spare_fd = _open_spare_fd()

    @staticmethod
    def _listen(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
        family, addr = resolve(host, port, socket.SOCK_STREAM, passive=True)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Rebind while old connections sit in TIME_WAIT (server restarts).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- accepting -------------------------------------------------------------------------

    def _on_readable(self, fd: int, events: int) -> None:
        accept = self._sock.accept
        for _ in range(self.accept_batch):
            try:
                sock, addr = accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS_ERRNOS:
                    if not self._shed_one(exc):
                        return
                    continue
                if exc.errno in _ACCEPT_SKIP_ERRNOS:
                    continue
                if exc.errno in _OUT_OF_MEMORY_ERRNOS:
                    self._pause_accepting(exc)
                    return
                raise
            if self._shedding:
                self._end_shed_burst()
            self.accepted_connections += 1
            try:
                self._on_accept(sock, addr)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                log.exception("setting up the connection from %s failed", short_addr(addr))
                sock.close()

    def _make_connection(self, sock: socket.socket, addr: Any) -> None:
        # `addr` is not kept: a tuple and a str per idle connection is ~150 bytes of the
        # 1 KB budget; `peername` asks the kernel on first use instead.
        TcpConnection(self._loop, sock, self._protocol_factory(), edge=self._edge,
                      high_water_bytes=self._high_water_bytes,
                      low_water_bytes=self._low_water_bytes, registry=self._connections)

    def _shed_one(self, exc: OSError) -> bool:
        """Accept one queued connection into the spare fd's slot and close it.
        Returns False when accepting should stop for this event."""
        if self._spare_fd is None:
            # Another thread took the slot our spare freed; back off instead of spinning.
            self._pause_accepting(exc)
            return False
        if not self._shedding:
            self._shedding = True
            self._shed_in_burst = 0
            log.warning("out of file descriptors (%s): shedding new connections on %s "
                        "until some close", errno.errorcode.get(exc.errno, exc.errno),
                        short_addr(self.sockname))
        os.close(self._spare_fd)
        self._spare_fd = None
        try:
            doomed, _ = self._sock.accept()
        except BlockingIOError:
            return False  # the queue emptied meanwhile
        except OSError:
            # ECONNABORTED & co, or another thread took the slot again: the caller's next
            # accept() gets the same error and deals with it.
            return True
        else:
            doomed.close()
            self.shed_connections += 1
            self._shed_in_burst += 1
            return True
        finally:
            self._spare_fd = _open_spare_fd()

    def _end_shed_burst(self) -> None:
        self._shedding = False
        log.warning("accepting again on %s after shedding %d connections",
                    short_addr(self.sockname), self._shed_in_burst)

    def _pause_accepting(self, exc: OSError) -> None:
        log.warning("accept on %s failed (%s): pausing accepts for %.1f s",
                    short_addr(self.sockname), exc, ACCEPT_RETRY_DELAY)
        self._loop.unregister(self._sock)
        self._retry_timer = self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._retry_timer = None
        if self._spare_fd is None:
            self._spare_fd = _open_spare_fd()
        self._loop.register(self._sock, READABLE, self._on_readable)

    # -- introspection and lifetime --------------------------------------------------------

    @property
    def connections(self) -> frozenset[TcpConnection]:
        return frozenset(self._connections)

    @property
    def sockname(self) -> Any:
        return self._sock.getsockname() if self._sock is not None else None

    @property
    def port(self) -> int:
        return self.sockname[1]

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        """Stop listening and abort the connections this listener accepted."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        elif not self._loop.is_closed:
            self._loop.unregister(sock)
        sock.close()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
        for conn in list(self._connections):
            conn.abort()

    def __enter__(self) -> TcpListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<TcpListener {short_addr(self.sockname)} connections={len(self._connections)} "
                f"accepted={self.accepted_connections} shed={self.shed_connections}>")


def _open_spare_fd() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
