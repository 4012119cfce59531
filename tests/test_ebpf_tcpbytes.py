"""tcpbytes: per-connection and per-remote-IP payload bytes, against ground truth the tests
create on loopback (every byte count below is what the test's own calls returned).

Measured facts this file pins down (kernel 6.18):
- send, sendall, sendmsg, write, sendfile and splice *into* a socket all pass through
  sock_sendmsg (sendfile/splice via splice_to_socket since 6.5), so sock_send_length sees them;
- recv, recv_into, recvmsg and read pass through sock_recvmsg; a MSG_PEEK read is reported
  with flags & MSG_PEEK and is not counted;
- splice *out of* a TCP socket (tcp_splice_read) bypasses sock_recvmsg: not counted;
- data read after the state reached TCP_CLOSE (shutdown(SHUT_WR), then the peer's FIN) is
  counted, because the record is emitted when the socket is destroyed.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import random
import socket
import tempfile
import threading
import time
from dataclasses import dataclass

import pytest
from bpfutil import assert_mirror_matches, assert_refuses_short, fill, our_programs

from netsprint.ebpf.tcpbytes.loader import (
    HEADER, RECORD_SIZE, ConnBytes, ConnRecord, ConnRecordError, IpKey, IpTotals, IpTotalsRecord,
    TcpBytesTracer, decode, decode_ip_totals,
)

WAIT_SECONDS = 5.0  # bound on waiting for a record that must come

# --- pure: mirrors and decoding ---------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("mirror, struct", [
    (ConnRecord, "struct tcpbytes_conn"),
    (IpKey, "struct tcpbytes_ip_key"),
    (IpTotalsRecord, "struct tcpbytes_ip_totals"),
])
def test_ctypes_mirrors_match_the_header(mirror, struct):
    assert_mirror_matches(mirror, HEADER, struct)


def record(**fields) -> ConnRecord:
    return fill(ConnRecord, **fields)


@pytest.mark.unit
def test_decode_an_ipv4_record():
    rec = record(sk=0xFFFF8881_00001000, start_ns=5_000_000_000, end_ns=7_500_000_000,
                 sent_bytes=1234, received_bytes=99, send_calls=3, recv_calls=2,
                 saddr=bytes([192, 0, 2, 1]), daddr=bytes([198, 51, 100, 7]), pid=4242,
                 sport=40000, dport=443, family=socket.AF_INET, direction=1, established=1,
                 comm=b"curl")
    conn = decode(bytes(rec))
    assert conn == ConnBytes(sk=0xFFFF8881_00001000, family=socket.AF_INET, local_ip="192.0.2.1",
                             local_port=40000, remote_ip="198.51.100.7", remote_port=443, active=True,
                             pid=4242, comm="curl", sent_bytes=1234, received_bytes=99, send_calls=3,
                             recv_calls=2, start_ns=5_000_000_000, end_ns=7_500_000_000)
    assert conn.closed and conn.duration_seconds() == pytest.approx(2.5)
    assert conn.as_dict()["remote"] == "198.51.100.7:443"


@pytest.mark.unit
def test_decode_an_open_ipv6_passive_record():
    rec = record(saddr=socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
                 daddr=socket.inet_pton(socket.AF_INET6, "::1"), family=socket.AF_INET6,
                 sport=80, dport=51000, direction=2, established=1, start_ns=1_000_000_000)
    conn = decode(bytes(rec) + b"extra")  # a ring-buffer record may be padded: the tail is ignored
    assert (conn.local_ip, conn.remote_ip, conn.active, conn.closed) == ("2001:db8::1", "::1", False, False)
    assert conn.duration_seconds(now_ns=4_000_000_000) == pytest.approx(3.0)


@pytest.mark.unit
def test_a_short_record_is_a_decode_error_with_its_offset():
    assert_refuses_short(decode, RECORD_SIZE, ConnRecordError)


@pytest.mark.unit
def test_an_unknown_family_is_a_decode_error():
    with pytest.raises(ConnRecordError, match="family 7"):
        decode(bytes(record(family=7)))


@pytest.mark.unit
def test_decode_a_per_ip_entry():
    key = IpKey(family=socket.AF_INET)
    ctypes.memmove(key.addr, bytes([203, 0, 113, 9]), 4)
    assert decode_ip_totals(bytes(key), bytes(IpTotalsRecord(3, 100, 200))) == \
        ("203.0.113.9", IpTotals(connections=3, sent_bytes=100, received_bytes=200))


# --- ground truth: what the test's own calls moved --------------------------------------------

@dataclass
class Moved:
    """Bytes and successful calls one socket made, as its calls returned them.

    The program counts sock_sendmsg() calls, not syscalls: one sendfile() is one
    sock_sendmsg per batch the splice pipe carries (up to 16 pages), so after a sendfile
    only a lower bound on the send calls is known."""

    sent_bytes: int = 0
    received_bytes: int = 0
    send_calls: int = 0
    recv_calls: int = 0
    send_calls_exact: bool = True

    def sent(self, n: int, exact_calls: bool = True) -> None:
        if n > 0:
            self.sent_bytes += n
            self.send_calls += 1
            self.send_calls_exact &= exact_calls

    def received(self, n: int) -> None:
        if n > 0:
            self.received_bytes += n
            self.recv_calls += 1


class Side:
    """One socket of a test connection and the ground truth of what it moved."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.moved = sock, Moved()
        self.local, self.remote = sock.getsockname()[:2], sock.getpeername()[:2]

    def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self.sock.send(view)
            self.moved.sent(n)
            view = view[n:]

    def write_all(self, data: bytes) -> None:  # write(2) on a socket is sock_sendmsg too
        view = memoryview(data)
        while view:
            n = os.write(self.sock.fileno(), view)
            self.moved.sent(n)
            view = view[n:]

    def sendmsg(self, parts: list[bytes]) -> None:
        n = self.sock.sendmsg(parts)
        assert n == sum(map(len, parts))
        self.moved.sent(n)

    def sendfile(self, path: str, offset: int, count: int) -> None:
        with open(path, "rb") as file:
            while count:
                n = os.sendfile(self.sock.fileno(), file.fileno(), offset, count)
                assert n > 0
                self.moved.sent(n, exact_calls=False)
                offset, count = offset + n, count - n

    def recv_exactly(self, count: int, how: str = "recv_into") -> bytes:
        buffer = bytearray(count)
        view = memoryview(buffer)
        got = 0
        while got < count:
            if how == "recvmsg":
                data, *_ = self.sock.recvmsg(count - got)
                view[got:got + len(data)] = data
                n = len(data)
            elif how == "read":
                data = os.read(self.sock.fileno(), count - got)
                view[got:got + len(data)] = data
                n = len(data)
            else:
                n = self.sock.recv_into(view[got:])
            assert n > 0, "peer closed early"
            self.moved.received(n)
            got += n
        return bytes(buffer)

    def peek(self, count: int) -> int:
        """A MSG_PEEK read: moves nothing, so the ground truth does not change."""
        return len(self.sock.recv(count, socket.MSG_PEEK))


def transfer(sender: Side, receiver: Side, count: int, send, how: str = "recv_into") -> None:
    """`send()` on one thread while `receiver` reads `count` bytes on another (so a large
    transfer cannot fill both socket buffers and block)."""
    result: dict[str, object] = {}

    def read() -> None:
        try:
            result["data"] = receiver.recv_exactly(count, how)
        except Exception as exc:  # re-raised on the test's thread below
            result["error"] = exc

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    send()
    reader.join(WAIT_SECONDS)
    assert not reader.is_alive(), "the receiver did not get every byte"
    if "error" in result:
        raise result["error"]


_subnets = itertools.count(random.randrange(1, 200))
_RANDOM_OCTET = random.randrange(1, 255)


def fresh_ips() -> tuple[str, str]:
    """(server, client) addresses inside 127.0.0.0/8 that only this test uses, so the
    per-IP totals for them are exactly this test's connections."""
    third = next(_subnets) % 254 + 1
    return f"127.{_RANDOM_OCTET}.{third}.1", f"127.{_RANDOM_OCTET}.{third}.2"


class Pair:
    """A connected client/server pair on loopback; owns both sockets and the listener."""

    def __init__(self, server_ip: str, client_ip: str | None = None, family=socket.AF_INET) -> None:
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((server_ip, 0))
        self.listener.listen(1)
        client = socket.socket(family, socket.SOCK_STREAM)
        if client_ip:
            client.bind((client_ip, 0))
        client.connect(self.listener.getsockname()[:2])
        server, _ = self.listener.accept()
        self.client, self.server = Side(client), Side(server)

    def sides(self) -> list[Side]:
        return [self.client, self.server]

    def close(self) -> None:
        for sock in (self.client.sock, self.server.sock, self.listener):
            sock.close()


def tuple_of(conn: ConnBytes) -> tuple:
    return (conn.local_ip, conn.local_port), (conn.remote_ip, conn.remote_port)


def side_tuple(side: Side) -> tuple:
    return tuple(side.local), tuple(side.remote)


def collect_closed(tracer: TcpBytesTracer, wanted: set[tuple]) -> dict[tuple, ConnBytes]:
    """Poll until a record arrived for every 4-tuple in `wanted` (or the bound passes)."""
    found: dict[tuple, ConnBytes] = {}
    deadline = time.monotonic() + WAIT_SECONDS
    while set(found) != wanted and time.monotonic() < deadline:
        for conn in tracer.poll(0.2):
            if tuple_of(conn) in wanted:
                assert tuple_of(conn) not in found, f"two records for {tuple_of(conn)}"
                found[tuple_of(conn)] = conn
    return found


def assert_counts(conn: ConnBytes, side: Side) -> None:
    moved = side.moved
    assert (conn.sent_bytes, conn.received_bytes) == (moved.sent_bytes, moved.received_bytes), side_tuple(side)
    assert conn.recv_calls == moved.recv_calls, side_tuple(side)
    if moved.send_calls_exact:
        assert conn.send_calls == moved.send_calls, side_tuple(side)
    else:  # at least one sock_sendmsg per sendfile() that moved bytes
        assert conn.send_calls >= moved.send_calls, side_tuple(side)


# --- the loaded program -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tracer():
    """One tracer for the module (a compile costs ~1-2 s)."""
    from conftest import have_bcc, is_root

    if not is_root() or not have_bcc():
        pytest.skip("needs root and bcc (run `sudo make test`; provision installs python3-bpfcc)")
    loaded = TcpBytesTracer()
    try:
        yield loaded
    finally:
        loaded.close()
    assert not [n for n in our_programs().values() if n.startswith("ns_tcpb_")], "left loaded after close()"


@pytest.fixture
def payload_file():
    with tempfile.NamedTemporaryFile(prefix="tcpbytes-") as file:
        file.write(random.randbytes(300_000))
        file.flush()
        yield file.name


def drive_ipv4_connections(pairs: list[Pair], payload_file: str) -> None:
    plain, sendfile, messages = pairs
    # plain send/recv_into, a peek that must not count, write/read
    transfer(plain.client, plain.server, 3000, lambda: plain.client.send_all(random.randbytes(3000)))
    transfer(plain.server, plain.client, 1234, lambda: plain.server.send_all(random.randbytes(1234)))
    plain.client.send_all(b"p" * 500)
    deadline = time.monotonic() + WAIT_SECONDS
    while plain.server.peek(500) < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    plain.server.recv_exactly(500, how="read")
    transfer(plain.client, plain.server, 777, lambda: plain.client.write_all(b"w" * 777), how="read")
    # sendfile both ways, larger than the socket buffers, from an offset
    transfer(sendfile.client, sendfile.server, 250_000,
             lambda: sendfile.client.sendfile(payload_file, 1000, 250_000))
    transfer(sendfile.server, sendfile.client, 7777,
             lambda: sendfile.server.sendfile(payload_file, 123, 7777))
    # scatter/gather sendmsg and recvmsg
    parts = [b"a" * 10, b"b" * 2000, b"c" * 333]
    transfer(messages.client, messages.server, 2343, lambda: messages.client.sendmsg(parts), how="recvmsg")
    transfer(messages.server, messages.client, 64, lambda: messages.server.sendmsg([b"r" * 64]), how="recvmsg")


@contextlib.contextmanager
def driven_pairs(payload_file, count: int = 3):
    """`count` IPv4 connections between two fresh loopback addresses, each driven through
    `drive_ipv4_connections`: yields (server_ip, client_ip, pairs), closes them on leaving."""
    server_ip, client_ip = fresh_ips()
    pairs: list[Pair] = []
    try:
        for _ in range(count):
            pairs.append(Pair(server_ip, client_ip))
        drive_ipv4_connections(pairs, payload_file)
        yield server_ip, client_ip, pairs
    finally:
        for pair in pairs:
            pair.close()


@pytest.mark.bpf
def test_ipv4_connections_count_every_byte_on_both_sockets(tracer, payload_file):
    with driven_pairs(payload_file) as (_, _, pairs):
        sides = [side for pair in pairs for side in pair.sides()]
        open_now = {tuple_of(c): c for c in tracer.snapshot()}
        for side in sides:  # open: the snapshot already has the counts so far
            assert_counts(open_now[side_tuple(side)], side)
            assert open_now[side_tuple(side)].end_ns == 0
    closed = collect_closed(tracer, {side_tuple(s) for s in sides})
    assert set(closed) == {side_tuple(s) for s in sides}, "a record is missing after close"
    for pair in pairs:
        assert closed[side_tuple(pair.client)].active and not closed[side_tuple(pair.server)].active
        for side in pair.sides():
            conn = closed[side_tuple(side)]
            assert_counts(conn, side)
            assert conn.pid == os.getpid() and conn.closed and conn.end_ns >= conn.start_ns > 0
    still_open = {tuple_of(c) for c in tracer.snapshot()}
    assert not still_open & set(closed), "a closed connection is still in the map"


@pytest.mark.bpf
def test_per_ip_totals_are_the_sums_of_the_connections(tracer, payload_file):
    with driven_pairs(payload_file) as (server_ip, client_ip, pairs):
        totals = tracer.per_ip()
    clients = [pair.client.moved for pair in pairs]
    servers = [pair.server.moved for pair in pairs]
    # the client sockets' remote address is the server's, and the other way round
    assert totals[server_ip] == IpTotals(3, sum(m.sent_bytes for m in clients),
                                         sum(m.received_bytes for m in clients))
    assert totals[client_ip] == IpTotals(3, sum(m.sent_bytes for m in servers),
                                         sum(m.received_bytes for m in servers))


@pytest.mark.bpf
def test_ipv6_on_the_loopback(tracer, payload_file):
    try:
        pair = Pair("::1", family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here ({exc}): `sysctl net.ipv6.conf.lo.disable_ipv6=0`")
    try:
        transfer(pair.client, pair.server, 4096, lambda: pair.client.send_all(random.randbytes(4096)))
        transfer(pair.server, pair.client, 20_000, lambda: pair.server.sendfile(payload_file, 0, 20_000))
    finally:
        pair.close()
    closed = collect_closed(tracer, {side_tuple(s) for s in pair.sides()})
    for side in pair.sides():
        conn = closed[side_tuple(side)]
        assert conn.family == socket.AF_INET6 and conn.remote_ip == "::1"
        assert_counts(conn, side)


@pytest.mark.bpf
def test_splice_into_a_socket_counts_but_splice_out_of_one_does_not(tracer):
    server_ip, client_ip = fresh_ips()
    pair = Pair(server_ip, client_ip)
    pipe_in, pipe_out = os.pipe(), os.pipe()
    try:
        os.write(pipe_in[1], b"s" * 4000)
        sent = os.splice(pipe_in[0], pair.client.sock.fileno(), 4000)
        pair.client.moved.sent(sent)
        # tcp_splice_read moves socket data into the pipe without sock_recvmsg: invisible
        spliced_out = 0
        deadline = time.monotonic() + WAIT_SECONDS
        while spliced_out < sent and time.monotonic() < deadline:
            spliced_out += os.splice(pair.server.sock.fileno(), pipe_out[1], sent - spliced_out)
        assert spliced_out == sent
        counts = {tuple_of(c): c for c in tracer.snapshot()}
    finally:
        pair.close()
        for fd in (*pipe_in, *pipe_out):
            os.close(fd)
    assert counts[side_tuple(pair.client)].sent_bytes == 4000
    assert counts[side_tuple(pair.server)].received_bytes == 0  # the documented blind spot


@pytest.mark.bpf
def test_reads_after_the_state_reached_close_still_count(tracer):
    """shutdown(SHUT_WR), then the peer's reply and FIN: the socket is in TCP_CLOSE while
    the reply still waits in its receive queue. The record comes at destroy, so it counts."""
    server_ip, client_ip = fresh_ips()
    pair = Pair(server_ip, client_ip)
    try:
        pair.client.send_all(b"q" * 100)
        pair.client.sock.shutdown(socket.SHUT_WR)
        pair.server.recv_exactly(100)
        pair.server.send_all(b"r" * 900)
        pair.server.sock.close()
        time.sleep(0.2)  # FIN and ACKs cross the loopback: the client reaches TCP_CLOSE
        pair.client.recv_exactly(900)
        assert pair.client.sock.recv(10) == b""
    finally:
        pair.close()
    closed = collect_closed(tracer, {side_tuple(s) for s in pair.sides()})
    for side in pair.sides():
        assert_counts(closed[side_tuple(side)], side)


@pytest.mark.bpf
def test_a_refused_connect_is_not_a_connection(tracer):
    server_ip, client_ip = fresh_ips()
    nobody = socket.socket()
    nobody.bind((server_ip, 0))  # a port bound but not listening: the connect is refused
    client = socket.socket()
    client.bind((client_ip, 0))
    port = client.getsockname()[1]
    try:
        with pytest.raises(ConnectionRefusedError):
            client.connect(nobody.getsockname())
    finally:
        client.close()
        nobody.close()
    later = tracer.poll(0.3) + tracer.snapshot()
    assert not [c for c in later if c.local_port == port and c.local_ip == client_ip]
    assert client_ip not in tracer.per_ip() and server_ip not in tracer.per_ip()
