"""TcpListener / TcpConnection on loopback: echo, flow control, resets, half-close, LT/ET,
and 1,000 concurrent clients."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import struct
import time

import pytest

from netsprint.errors import ReactorError
from netsprint.reactor import (READABLE, WRITABLE, EventLoop, Protocol, TcpConnection,
                               TcpListener)
from netsprint.reactor.background import serving_in_thread
from netsprint.reactor.echo import EchoProtocol
from netsprint.reactor.tcp import HIGH_WATER_BYTES, RECV_SIZE_BYTES

pytestmark = pytest.mark.net

HOST = "127.0.0.1"


class Recorder(Protocol):
    """Remembers every callback, in order."""

    def __init__(self, keep_open: bool = False) -> None:
        self.keep_open = keep_open
        self.conn: TcpConnection | None = None
        self.data = bytearray()
        self.events: list[str] = []
        self.lost: list[BaseException | None] = []

    def connection_made(self, conn):
        self.conn = conn
        self.events.append("made")

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.events.append("eof")
        return self.keep_open

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.append(exc)

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")


@pytest.fixture
def loop():
    with EventLoop() as lp:
        yield lp


@pytest.fixture
def recorders():
    """A listener whose protocols are Recorders, kept in the returned list."""
    made: list[Recorder] = []

    def factory(**kwargs):
        rec = Recorder(**kwargs)
        made.append(rec)
        return rec

    return made, factory


@contextlib.contextmanager
def raw_client(port: int, **opts):
    sock = socket.create_connection((HOST, port), timeout=5)
    # Blocking mode: with a timeout set, CPython waits in poll() *before* recv even with
    # MSG_DONTWAIT, which would stall the single-threaded test loop.
    sock.settimeout(None)
    for opt, value in opts.items():
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, opt), value)
    try:
        yield sock
    finally:
        sock.close()


class RawReader:
    """Reads a plain client socket from the test's loop (at most `max_bytes` per event),
    so the server and this independent client make progress in one thread."""

    def __init__(self, loop: EventLoop, sock: socket.socket, max_bytes: int = 65536) -> None:
        self.loop = loop
        self.sock = sock
        self.max_bytes = max_bytes
        self.data = bytearray()
        self.eof = False
        loop.register(sock, READABLE, self._on_readable)

    def _on_readable(self, fd: int, events: int) -> None:
        chunk = self.sock.recv(self.max_bytes, socket.MSG_DONTWAIT)
        self.data += chunk
        if not chunk:
            self.eof = True
            self.loop.unregister(fd)


# -- echo ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend,edge", [("epoll", False), ("epoll", True),
                                          ("poll", False), ("select", False)])
def test_echo_round_trip_between_our_listener_and_our_client(backend, edge):
    with EventLoop(backend) as loop, \
            TcpListener(loop, HOST, 0, EchoProtocol, edge=edge) as listener:
        client = Recorder()
        conn = TcpConnection.connect(loop, HOST, listener.port, client, edge=edge)
        loop.run_until(lambda: client.events == ["made"], timeout=5)
        conn.write(b"hello ")
        conn.write(memoryview(b"world"))
        loop.run_until(lambda: bytes(client.data) == b"hello world", timeout=5)

        (server_conn,) = listener.connections
        assert server_conn.peername == conn.sockname
        assert server_conn.sockname == conn.peername == (HOST, listener.port)
        assert server_conn.bytes_received == server_conn.bytes_sent == 11
        assert conn.bytes_sent == conn.bytes_received == 11

        conn.close()  # server sees EOF, echo closes its side, our client sees EOF
        loop.run_until(lambda: client.lost and not listener.connections, timeout=5)
        assert client.lost == [None]
        assert listener.accepted_connections == 1


def test_connect_refused_reports_connection_lost_without_made(loop):
    probe = socket.socket()
    probe.bind((HOST, 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    client = Recorder()
    TcpConnection.connect(loop, HOST, port, client)
    loop.run_until(lambda: client.lost, timeout=5)
    assert client.events == ["lost"]
    assert isinstance(client.lost[0], ConnectionRefusedError)


def test_write_before_connected_and_after_close_is_misuse(loop, recorders):
    made, factory = recorders
    with TcpListener(loop, HOST, 0, factory) as listener:
        client = Recorder()
        conn = TcpConnection.connect(loop, HOST, listener.port, client)
        with pytest.raises(ReactorError, match="not established"):
            conn.write(b"early")
        loop.run_until(lambda: client.conn is not None, timeout=5)
        conn.close()
        with pytest.raises(ReactorError, match="after close"):
            conn.write(b"late")
        loop.run_until(lambda: client.lost, timeout=5)
        with pytest.raises(ReactorError, match="after close"):
            conn.write(b"later still")


# -- flow control: partial sends, watermarks -----------------------------------------------

class Producer(Recorder):
    """Writes `total` bytes of a counting pattern, obeying pause/resume."""

    CHUNK = 16 * 1024

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total
        self.produced = 0
        self.paused = False

    def connection_made(self, conn):
        super().connection_made(conn)
        conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self._produce()

    def pause_writing(self):
        super().pause_writing()
        self.paused = True

    def resume_writing(self):
        super().resume_writing()
        self.paused = False
        self._produce()

    def _produce(self):
        while not self.paused and self.produced < self.total:
            self.conn.write(pattern(self.produced, self.CHUNK))
            self.produced += self.CHUNK
        if self.produced >= self.total:
            self.conn.close()  # flush, then close


def pattern(offset: int, size: int) -> bytes:
    """Bytes whose content encodes their stream offset, so reordering is detectable."""
    words = range(offset // 4, (offset + size) // 4)
    return struct.pack(f"!{len(words)}I", *words)


def test_partial_sends_pause_and_resume_and_keep_byte_order(loop):
    total = 2 * 1024 * 1024
    producers: list[Producer] = []

    def factory():
        producers.append(Producer(total))
        return producers[-1]

    with TcpListener(loop, HOST, 0, factory, high_water_bytes=64 * 1024,
                     low_water_bytes=16 * 1024) as listener:
        with raw_client(listener.port, SO_RCVBUF=65536) as client:
            reader = RawReader(loop, client, max_bytes=8192)  # slower than the producer
            saw_writable_interest = False

            def finished() -> bool:
                nonlocal saw_writable_interest
                conn = producers[0].conn if producers else None
                if conn is not None and not conn.closed:
                    fd = conn.socket.fileno()
                    saw_writable_interest |= bool(loop.registered_events(fd) & WRITABLE)
                return reader.eof

            loop.run_until(finished, timeout=20)
            received = reader.data
        (producer,) = producers
        assert len(received) == total
        assert received == pattern(0, total)
        # At least one pause/resume cycle, always alternating, starting with pause.
        flow = [e for e in producer.events if e in ("pause", "resume")]
        assert flow[:2] == ["pause", "resume"]
        assert all(a != b for a, b in zip(flow, flow[1:]))
        assert saw_writable_interest  # EPOLLOUT was asked for while bytes waited
        assert producer.conn.bytes_sent == total
        loop.run_until(lambda: producer.lost, timeout=5)
        assert producer.lost == [None]


def test_writable_interest_only_while_bytes_wait(loop, recorders):
    made, factory = recorders
    with TcpListener(loop, HOST, 0, factory) as listener:
        with raw_client(listener.port, SO_RCVBUF=65536) as client:
            loop.run_until(lambda: made and made[0].conn, timeout=5)
            conn = made[0].conn
            conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            fd = conn.socket.fileno()
            assert loop.registered_events(fd) == READABLE
            conn.write(b"x" * 1024 * 1024)
            assert conn.buffered_bytes > 0
            assert loop.registered_events(fd) == READABLE | WRITABLE
            reader = RawReader(loop, client)
            loop.run_until(lambda: len(reader.data) == 1024 * 1024, timeout=10)
            loop.unregister(client)
            loop.run_until(lambda: conn.buffered_bytes == 0, timeout=5)
            assert loop.registered_events(fd) == READABLE  # dropped once drained
            assert conn._out is None  # and the buffer itself is freed


def test_peer_reset_mid_write_reports_connection_lost_once(loop, recorders):
    made, factory = recorders
    with TcpListener(loop, HOST, 0, factory) as listener:
        client = socket.create_connection((HOST, listener.port), timeout=5)
        client.settimeout(None)
        try:
            loop.run_until(lambda: made and made[0].conn, timeout=5)
            server = made[0]
            server.conn.write(b"y" * 4 * 1024 * 1024)  # far more than the socket buffers
            assert server.conn.buffered_bytes > 0
            loop.run_once(0)
            assert client.recv(1000)  # data was flowing
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            client.close()
        loop.run_until(lambda: server.lost, timeout=5)
        for _ in range(5):
            loop.run_once(0.01)
        assert len(server.lost) == 1
        assert isinstance(server.lost[0], (ConnectionResetError, BrokenPipeError))
        assert server.conn.closed and not listener.connections
        server.conn.write(b"into the void")  # lost under the protocol: dropped, as in asyncio


# -- half-close ----------------------------------------------------------------------------

class AnswerAfterEof(Recorder):
    """Reads a question until the peer's FIN, then answers and closes (half-close)."""

    def eof_received(self):
        super().eof_received()
        self.conn.write(b"answer to " + bytes(self.data))
        self.conn.close()
        return True


def test_half_close_server_writes_after_client_shutdown(loop):
    servers: list[AnswerAfterEof] = []
    with TcpListener(loop, HOST, 0, lambda: servers.append(AnswerAfterEof()) or servers[-1]) \
            as listener:
        with raw_client(listener.port) as client:
            client.sendall(b"the question")
            client.shutdown(socket.SHUT_WR)
            reader = RawReader(loop, client)
            loop.run_until(lambda: reader.eof, timeout=5)
            assert reader.data == b"answer to the question"
        loop.run_until(lambda: servers[0].lost, timeout=5)
        assert servers[0].events == ["made", "eof", "lost"]
        assert servers[0].lost == [None]


def test_eof_without_keep_open_closes_after_flushing(loop, recorders):
    made, factory = recorders
    payload = bytes(range(256)) * 4096  # 1 MiB: far more than the socket buffers hold
    with TcpListener(loop, HOST, 0, factory) as listener:
        with raw_client(listener.port, SO_RCVBUF=65536) as client:
            loop.run_until(lambda: made and made[0].conn, timeout=5)
            conn = made[0].conn
            conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            conn.write(payload)
            assert conn.buffered_bytes > 0  # still buffered when the peer's FIN arrives
            client.shutdown(socket.SHUT_WR)
            reader = RawReader(loop, client)
            loop.run_until(lambda: reader.eof, timeout=10)
            assert reader.data == payload  # every byte, then our FIN
        loop.run_until(lambda: made[0].lost, timeout=5)
        assert [e for e in made[0].events if e in ("made", "eof", "lost")] == \
            ["made", "eof", "lost"]
        assert made[0].lost == [None]


def test_write_eof_half_closes_our_side_and_keeps_reading(loop):
    with TcpListener(loop, HOST, 0, EchoProtocol) as listener:
        client = Recorder(keep_open=True)
        conn = TcpConnection.connect(loop, HOST, listener.port, client)
        loop.run_until(lambda: client.conn, timeout=5)
        conn.write(b"x" * 300_000)
        conn.write_eof()  # shutdown(SHUT_WR) only once the buffer has drained
        with pytest.raises(ReactorError, match="after write_eof"):
            conn.write(b"more")
        loop.run_until(lambda: "eof" in client.events, timeout=5)
        assert client.data == b"x" * 300_000  # the echo kept reading until our FIN
        conn.close()
        loop.run_until(lambda: client.lost, timeout=5)
        assert client.lost == [None]


def test_abort_drops_the_buffer_and_closes_now(loop, recorders):
    made, factory = recorders
    with TcpListener(loop, HOST, 0, factory) as listener:
        with raw_client(listener.port):
            loop.run_until(lambda: made and made[0].conn, timeout=5)
            conn = made[0].conn
            conn.write(b"z" * 4 * 1024 * 1024)
            assert conn.buffered_bytes > 0
            conn.abort()
            assert conn.closed and conn.buffered_bytes == 0
            loop.run_until(lambda: made[0].lost, timeout=5)
            assert made[0].lost == [None]


def test_connection_context_manager_closes(loop):
    with TcpListener(loop, HOST, 0, EchoProtocol) as listener:
        client = Recorder()
        with TcpConnection.connect(loop, HOST, listener.port, client):
            loop.run_until(lambda: client.conn, timeout=5)
        loop.run_until(lambda: client.lost and not listener.connections, timeout=5)


# -- failures in protocols and during setup ------------------------------------------------

class Raises(Recorder):
    """A buggy protocol: raises from data_received or eof_received."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def data_received(self, data):
        super().data_received(data)
        if self.where == "data":
            raise RuntimeError("bug in data_received")

    def eof_received(self):
        super().eof_received()
        if self.where == "eof":
            raise RuntimeError("bug in eof_received")


@pytest.mark.parametrize("edge,where", [(False, "data"), (True, "data"), (False, "eof")])
def test_a_protocol_that_raises_loses_its_connection(edge, where, loop, caplog):
    """Otherwise ET strands the bytes it had not drained yet, and LT spins on an EOF that
    eof_received never handled. The exception still reaches the loop's log."""
    servers: list[Raises] = []

    def factory():
        servers.append(Raises(where))
        return servers[-1]

    with TcpListener(loop, HOST, 0, factory, edge=edge) as listener:
        with raw_client(listener.port) as client:
            client.sendall(b"x" * 100_000)  # more than one read of RECV_SIZE_BYTES
            if where == "eof":
                client.shutdown(socket.SHUT_WR)
            with caplog.at_level(logging.ERROR, logger="netsprint.reactor.loop"):
                loop.run_until(lambda: servers and servers[0].lost, timeout=5)
        (server,) = servers
        assert len(server.lost) == 1 and isinstance(server.lost[0], RuntimeError)
        assert server.conn.closed and not listener.connections
        assert f"RuntimeError: bug in {where}_received" in caplog.text


def test_a_failing_connection_made_closes_the_connection(loop, caplog):
    class FailsToStart(Recorder):
        def connection_made(self, conn):
            super().connection_made(conn)
            raise RuntimeError("bug in connection_made")

    servers: list[FailsToStart] = []
    with TcpListener(loop, HOST, 0, lambda: servers.append(FailsToStart()) or servers[-1]) \
            as listener:
        with raw_client(listener.port) as client:
            with caplog.at_level(logging.ERROR):
                loop.run_until(lambda: servers and servers[0].lost, timeout=5)
            client.settimeout(5)
            assert client.recv(10) == b""  # the server closed it
        assert isinstance(servers[0].lost[0], RuntimeError)
        assert not listener.connections
        assert "bug in connection_made" in caplog.text


def test_a_connection_that_cannot_register_leaves_nothing_behind(pair):
    a, _ = pair
    registry: set[TcpConnection] = set()
    loop = EventLoop()
    loop.close()
    with pytest.raises(ReactorError, match="closed"):
        TcpConnection(loop, a, Recorder(), registry=registry)
    assert registry == set()  # the owner will not try to abort a half-made connection
    assert a.fileno() == -1  # and the socket is closed


def test_a_listener_that_cannot_register_leaks_no_fd():
    loop = EventLoop()
    loop.close()
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(ReactorError, match="closed"):
        TcpListener(loop, HOST, 0, EchoProtocol)
    assert set(os.listdir("/proc/self/fd")) <= before  # neither the socket nor the spare


# -- edge-triggered reads drain the socket -------------------------------------------------

@pytest.mark.parametrize("edge", [False, True])
def test_a_burst_bigger_than_one_recv_is_fully_echoed(edge, loop):
    payload = bytes(range(256)) * 4096  # 1 MiB, one write from the client
    with TcpListener(loop, HOST, 0, EchoProtocol, edge=edge) as listener:
        client = Recorder()
        conn = TcpConnection.connect(loop, HOST, listener.port, client, edge=edge)
        loop.run_until(lambda: client.conn, timeout=5)
        conn.write(payload)
        loop.run_until(lambda: len(client.data) >= len(payload), timeout=10)
        assert client.data == payload
        conn.abort()


class WatchedEcho(EchoProtocol):
    """The echo protocol, noting when the watermarks pause and resume it."""

    __slots__ = ("flow",)

    def connection_made(self, conn):
        self.flow = []
        super().connection_made(conn)

    def pause_writing(self):
        self.flow.append("pause")
        super().pause_writing()

    def resume_writing(self):
        self.flow.append("resume")
        super().resume_writing()


@pytest.mark.parametrize("edge", [False, True])
def test_echo_stops_reading_from_a_client_that_does_not_read(edge, loop):
    """A client that only sends: past the high watermark the echo stops reading it, so the
    server buffers a bounded amount; once the client reads, the echo reads again and
    every byte comes back in order."""
    total = 4 * 1024 * 1024
    payload = pattern(0, total)
    with TcpListener(loop, HOST, 0, WatchedEcho, edge=edge) as listener, \
            socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        client.connect((HOST, listener.port))
        client.setblocking(False)
        loop.run_until(lambda: listener.connections, timeout=5)
        (server_conn,) = listener.connections
        sent, got = 0, bytearray()

        def push() -> None:
            nonlocal sent
            with contextlib.suppress(BlockingIOError):
                while sent < total:
                    sent += client.send(payload[sent:sent + 65536])

        def paused() -> bool:
            push()
            return "pause" in server_conn.protocol.flow

        loop.run_until(paused, timeout=10)
        received_at_pause = server_conn.bytes_received
        for _ in range(20):  # the client keeps sending: bytes wait in the kernel, unread
            push()
            loop.run_once(0.01)
        assert sent > received_at_pause
        assert server_conn.bytes_received == received_at_pause
        assert server_conn.buffered_bytes <= HIGH_WATER_BYTES + RECV_SIZE_BYTES

        def all_echoed() -> bool:
            push()
            with contextlib.suppress(BlockingIOError):
                while chunk := client.recv(65536):
                    got.extend(chunk)
            return len(got) == total

        loop.run_until(all_echoed, timeout=30)
        assert got == payload
        assert "resume" in server_conn.protocol.flow  # reading resumed as the buffer drained


def test_edge_mode_needs_epoll():
    with EventLoop("poll") as loop:
        with pytest.raises(ReactorError, match="epoll"):
            TcpListener(loop, HOST, 0, EchoProtocol, edge=True)


# -- many clients --------------------------------------------------------------------------

def echo_clients(port: int, count: int, rounds: int = 2, timeout: float = 20.0) -> int:
    """`count` concurrent non-blocking clients, each doing `rounds` echo exchanges with a
    unique message; returns how many finished correctly."""
    sel = selectors.DefaultSelector()
    done = 0
    socks = []
    try:
        for i in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            err = sock.connect_ex((HOST, port))
            assert err in (0, errno.EINPROGRESS), err
            socks.append(sock)
            state = {"msg": f"<client {i:05d}>".encode(), "got": bytearray(), "left": rounds}
            sel.register(sock, selectors.EVENT_WRITE, state)
        deadline = time.monotonic() + timeout
        while done < count and time.monotonic() < deadline:
            for key, events in sel.select(timeout=1.0):
                sock, state = key.fileobj, key.data
                if events & selectors.EVENT_WRITE:
                    sock.send(state["msg"])  # 13 bytes always fit a fresh send buffer
                    sel.modify(sock, selectors.EVENT_READ, state)
                    continue
                chunk = sock.recv(4096)
                assert chunk, "server closed a client early"
                state["got"] += chunk
                if len(state["got"]) < len(state["msg"]):
                    continue
                assert state["got"] == state["msg"]
                state["got"].clear()
                state["left"] -= 1
                if state["left"]:
                    sock.send(state["msg"])
                else:
                    sel.unregister(sock)
                    done += 1
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    return done


def test_a_thousand_concurrent_clients(fd_limit):
    fd_limit(2 * 1000 + 200)
    with serving_in_thread(lambda loop: TcpListener(loop, HOST, 0, EchoProtocol,
                                                    backlog=2048)) as listener:
        assert echo_clients(listener.port, 1000) == 1000
        assert listener.accepted_connections == 1000
