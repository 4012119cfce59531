"""UdpSocket: round trip, ICMP errors (connected and unconnected, with addresses), the bounded
send queue."""

from __future__ import annotations

import errno
import select
import socket

import pytest

from netsprint.errors import ReactorError
from netsprint.reactor import WRITABLE, DatagramProtocol, EventLoop, UdpSocket

pytestmark = pytest.mark.net

HOST = "127.0.0.1"


class Recorder(DatagramProtocol):
    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.transport = None
        self.datagrams: list[tuple[bytes, tuple]] = []
        self.errors: list[OSError] = []
        self.lost: list[BaseException | None] = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams.append((data, addr))
        if self.echo:
            self.transport.sendto(data.upper(), addr)

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        self.lost.append(exc)


@pytest.fixture
def loop():
    with EventLoop() as lp:
        yield lp


def closed_udp_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((HOST, 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def error_pending(sock: UdpSocket, timeout_ms: int = 5000) -> bool:
    """Wait until the socket has an error pending (poll(2) reports POLLERR whatever the
    events asked for), without reading it."""
    waiter = select.poll()
    waiter.register(sock._fd, 0)
    return any(events & select.POLLERR for _, events in waiter.poll(timeout_ms))


def test_round_trip_keeps_datagram_boundaries(loop):
    server_proto, client_proto = Recorder(echo=True), Recorder()
    with UdpSocket(loop, (HOST, 0), server_proto) as server, \
            UdpSocket(loop, (HOST, 0), client_proto) as client:
        for word in (b"one", b"two", b"three"):
            client.sendto(word, server.sockname)
        loop.run_until(lambda: len(client_proto.datagrams) == 3, timeout=5)
        assert [d for d, _ in client_proto.datagrams] == [b"ONE", b"TWO", b"THREE"]
        assert {a for _, a in client_proto.datagrams} == {server.sockname}
        assert {a for _, a in server_proto.datagrams} == {client.sockname}
        assert client.datagrams_sent == 3 and server.datagrams_received == 3
    loop.run_once(0)
    assert server_proto.lost == [None] and client_proto.lost == [None]


def test_icmp_port_unreachable_surfaces_as_error_received(loop):
    proto = Recorder()
    with UdpSocket(loop, (HOST, 0), proto, remote_addr=(HOST, closed_udp_port())) as sock:
        sock.send(b"anyone there?")
        loop.run_until(lambda: proto.errors, timeout=5)
        assert isinstance(proto.errors[0], ConnectionRefusedError)
        # The error was consumed; the socket still works (and keeps reporting).
        sock.send(b"again?")
        loop.run_until(lambda: len(proto.errors) == 2, timeout=5)


def test_full_socket_buffer_queues_a_bounded_number_and_drains_on_writable(loop):
    proto_a, proto_b = Recorder(), Recorder()
    with UdpSocket(loop, (HOST, 0), proto_b) as receiver, \
            UdpSocket(loop, (HOST, 0), proto_a, send_queue_max=3) as sender:
        real_send = sender._send
        sender._send = _raise_eagain  # the kernel buffer is "full"
        for i in range(5):
            sender.sendto(b"d%d" % i, receiver.sockname)
        assert sender.queued_datagrams == 3
        assert sender.dropped_datagrams == 2
        assert loop.registered_events(sender._fd) & WRITABLE
        sender._send = real_send  # room again: WRITABLE drains the queue in order
        loop.run_until(lambda: len(proto_b.datagrams) == 3, timeout=5)
        assert [d for d, _ in proto_b.datagrams] == [b"d0", b"d1", b"d2"]
        assert sender.queued_datagrams == 0
        assert not loop.registered_events(sender._fd) & WRITABLE


def _raise_eagain(data, addr):
    raise BlockingIOError(11, "Resource temporarily unavailable")


def test_sendto_after_close_is_misuse(loop):
    sock = UdpSocket(loop, (HOST, 0), Recorder())
    sock.close()
    sock.close()
    with pytest.raises(ReactorError, match="closed"):
        sock.sendto(b"x", (HOST, 9))


def test_a_failing_connection_made_closes_the_socket(loop):
    class FailsToStart(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            raise RuntimeError("bug in connection_made")

    proto = FailsToStart()
    with pytest.raises(RuntimeError, match="bug in connection_made"):
        UdpSocket(loop, (HOST, 0), proto)
    assert proto.transport.closed  # nobody else could have closed it
    assert not loop.is_registered(proto.transport._fd)
    loop.run_once(0)
    assert proto.lost == [None]


# -- IP_RECVERR: ICMP errors on unconnected sockets, with the failed destination ------------

def test_unconnected_socket_gets_econnrefused_with_the_closed_ports_address(loop):
    proto, echo_proto = Recorder(), Recorder(echo=True)
    dead = (HOST, closed_udp_port())
    with UdpSocket(loop, (HOST, 0), proto) as sock, \
            UdpSocket(loop, (HOST, 0), echo_proto) as echo_server:
        sock.sendto(b"anyone there?", dead)
        loop.run_until(lambda: proto.errors, timeout=5)
        exc = proto.errors[0]
        assert isinstance(exc, ConnectionRefusedError)
        assert exc.errno == errno.ECONNREFUSED
        assert exc.address == dead
        assert exc.offender == HOST  # loopback's own kernel sent the port unreachable
        assert exc.icmp == (3, 3)  # ICMP destination unreachable, port unreachable
        # The error was the earlier datagram's: the socket keeps working.
        sock.sendto(b"ping", echo_server.sockname)
        loop.run_until(lambda: proto.datagrams, timeout=5)
        assert proto.datagrams == [(b"PING", echo_server.sockname)]
        assert len(proto.errors) == 1


def test_errors_from_two_dead_ports_are_told_apart(loop):
    proto = Recorder()
    dead_ports = [closed_udp_port(), closed_udp_port()]
    with UdpSocket(loop, (HOST, 0), proto) as sock:
        for port in dead_ports:
            sock.sendto(b"x", (HOST, port))
        loop.run_until(lambda: len(proto.errors) == 2, timeout=5)
    assert sorted(exc.address[1] for exc in proto.errors) == sorted(dead_ports)


def test_a_send_that_only_returns_an_earlier_error_is_retried(loop):
    """The ICMP error pending on the socket fails the next sendto (the kernel hands the
    pending error to the next call); that datagram must still go out, and the error must
    be reported once, with the dead port's address."""
    proto, receiver_proto = Recorder(), Recorder()
    dead = (HOST, closed_udp_port())
    with UdpSocket(loop, (HOST, 0), proto) as sock, \
            UdpSocket(loop, (HOST, 0), receiver_proto) as receiver:
        sock.sendto(b"to nobody", dead)
        # No loop iteration in between, so nothing reads the error first; wait (outside
        # the loop) until the ICMP has arrived, so this sendto meets the pending error.
        assert error_pending(sock)
        sock.sendto(b"to someone", receiver.sockname)
        loop.run_until(lambda: proto.errors and receiver_proto.datagrams, timeout=5)
        for _ in range(3):
            loop.run_once(0)  # any duplicate report would be delivered by now
    assert [d for d, _ in receiver_proto.datagrams] == [b"to someone"]
    assert [exc.address for exc in proto.errors] == [dead]


def test_ipv6_socket_gets_the_error_with_its_address(loop):
    proto = Recorder()
    probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        probe.bind(("::1", 0))
    except OSError as exc:
        probe.close()
        pytest.skip(f"no IPv6 loopback here: {exc}")
    port = probe.getsockname()[1]
    probe.close()
    with UdpSocket(loop, ("::1", 0), proto) as sock:
        sock.sendto(b"x", ("::1", port))
        loop.run_until(lambda: proto.errors, timeout=5)
    exc = proto.errors[0]
    assert isinstance(exc, ConnectionRefusedError)
    assert exc.address[:2] == ("::1", port)
    assert exc.icmp == (1, 4)  # ICMPv6 destination unreachable, port unreachable


def test_recv_buffer_bytes_sets_the_kernel_receive_buffer(loop):
    with UdpSocket(loop, ("127.0.0.1", 0), Recorder()) as default:
        default_bytes = default._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    with UdpSocket(loop, ("127.0.0.1", 0), Recorder(), recv_buffer_bytes=default_bytes * 2) as big:
        got = big._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    with open("/proc/sys/net/core/rmem_max") as f:
        cap = int(f.read())
    # socket(7): Linux doubles the request (bookkeeping overhead), capped at rmem_max
    assert got == min(default_bytes * 4, 2 * cap) > default_bytes
