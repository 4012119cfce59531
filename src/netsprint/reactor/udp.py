"""Non-blocking UDP on the reactor, with ICMP errors reported for every socket.

ICMP errors: when a datagram hits a closed port, the peer's kernel answers with ICMP port
unreachable. Without IP_RECVERR, Linux passes that on only to a *connected* socket, as
ECONNREFUSED on its next send/recv, with no word of which datagram caused it (udp(7):
"all fatal errors will be passed to the user ... only when the socket is connected").
A hole-punching peer talks to many addresses from one unconnected socket, so every
UdpSocket sets IP_RECVERR (and IPV6_RECVERR on IPv6 sockets). The kernel then queues each
error on the socket's *error queue* and reports EPOLLERR (ip(7), IP_RECVERR). On that event
the socket reads the queue with `recvmsg(..., MSG_ERRQUEUE)`: the control message holds a
`struct sock_extended_err` (errno, origin, ICMP type and code), followed by the address of
the node that sent the ICMP (SO_EE_OFFENDER), and `msg_name` holds the destination of the
datagram that failed.

`error_received(exc)` therefore gets an OSError of the right class (ConnectionRefusedError
for port unreachable, `exc.errno` set) carrying `exc.address`, the (host, port) the failed
datagram was sent to; errors from the queue also carry `exc.offender` (who sent the ICMP,
or None) and `exc.icmp` ((type, code), or None for errors raised locally). An error that
did not come through the queue (e.g. EACCES from sendto) carries the destination given to
sendto, or None.

A queued error also sets the socket's pending error, which the kernel hands to the next
send or recv. Such a send fails *without sending*: UdpSocket reads the queue then (so the
error is reported once, with its address) and sends the datagram again, once.

Give `remote_addr` to connect the socket (send() then needs no address).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import struct
from typing import Any

from netsprint.errors import ReactorError
from netsprint.reactor.addresses import resolve, short_addr
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.poller import ERROR, READABLE, WRITABLE
from netsprint.reactor.protocols import DatagramProtocol

log = logging.getLogger(__name__)

DATAGRAM_MAX_BYTES = 65535  # largest UDP payload over IPv4 plus header room: never truncates
RECV_BATCH = 32  # datagrams per readiness event, so one busy socket cannot starve others
SEND_QUEUE_MAX = 256  # datagrams kept while the socket buffer is full; more are dropped

# Python 3.11's socket module lacks these; values from linux/in.h and linux/in6.h.
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
# struct sock_extended_err (linux/errqueue.h): u32 ee_errno, u8 ee_origin, u8 ee_type,
# u8 ee_code, u8 ee_pad, u32 ee_info, u32 ee_data; the offender sockaddr follows it.
_SOCK_EXTENDED_ERR = struct.Struct("=IBBBBII")
_SO_EE_ORIGIN_ICMP = 2
_SO_EE_ORIGIN_ICMP6 = 3
# Room for the struct plus a sockaddr_in6 (28 bytes), with slack.
_ERRQUEUE_ANCILLARY_BYTES = socket.CMSG_SPACE(_SOCK_EXTENDED_ERR.size + 64)


class UdpSocket:
    """One UDP socket. Owns the socket and its small queue of unsent datagrams; does not
    own the loop or the protocol."""

    def __init__(self, loop: EventLoop, local_addr: tuple[str, int] | None,
                 protocol: DatagramProtocol, *, remote_addr: tuple[str, int] | None = None,
                 send_queue_max: int = SEND_QUEUE_MAX,
                 recv_buffer_bytes: int | None = None,
                 sock: socket.socket | None = None) -> None:
        """Bind a new socket to `local_addr`, or adopt `sock` (already bound, e.g. the one a
        peer used for STUN: its NAT mapping is what the other side was told about)."""
        if sock is None:
            if local_addr is None:
                raise ValueError("UdpSocket needs local_addr or an existing sock")
            family, addr = resolve(local_addr[0], local_addr[1], socket.SOCK_DGRAM, passive=True)
            sock = socket.socket(family, socket.SOCK_DGRAM)
        else:
            family, addr = sock.family, None
        try:
            sock.setblocking(False)
            _enable_error_queue(sock, family)
            if recv_buffer_bytes is not None:
                # socket(7): the kernel doubles the value and caps it at net.core.rmem_max;
                # a burst larger than the buffer is dropped before we ever see it.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer_bytes)
            if addr is not None:
                sock.bind(addr)
            if remote_addr is not None:
                _, raddr = resolve(remote_addr[0], remote_addr[1], socket.SOCK_DGRAM)
                sock.connect(raddr)
            loop.register(sock, READABLE, self._on_event)
        except BaseException:
            sock.close()
            raise
        self._loop = loop
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self.send_queue_max = send_queue_max
        self.dropped_datagrams = 0
        self.datagrams_sent = 0
        self.datagrams_received = 0
        try:
            protocol.connection_made(self)
        except BaseException:
            self.close()  # nobody else holds this object: do not leave its fd registered
            raise

    # -- receiving -------------------------------------------------------------------------

    def _on_event(self, fd: int, events: int) -> None:
        if events & ERROR:
            # Read the error queue first: that clears the pending error, so the recv
            # batch below does not report the same error again without its address.
            if not self._report_queued_errors(None) and self._sock is not None:
                self._report_pending_error()
            if self._sock is None:
                return
        if events & READABLE:
            self._read_batch()
        if events & WRITABLE and self._sock is not None:
            self._drain_queue()

    def _read_batch(self) -> None:
        recvfrom = self._sock.recvfrom
        protocol = self._protocol
        for _ in range(RECV_BATCH):
            try:
                data, addr = recvfrom(DATAGRAM_MAX_BYTES)
            except BlockingIOError:
                return
            except OSError as exc:
                # The pending error of an ICMP message that arrived since the poll: the
                # socket is still fine, the error belonged to an earlier datagram.
                self._report_queued_errors(exc)
                if self._sock is None:
                    return
                continue
            self.datagrams_received += 1
            protocol.datagram_received(data, addr)
            if self._sock is None:
                return

    def _report_queued_errors(self, fallback: OSError | None) -> int:
        """Pass each error waiting in the error queue to error_received; if there was
        none, report `fallback` (an error that came some other way). Returns how many
        queued errors were reported."""
        reported = 0
        for _ in range(RECV_BATCH):  # bounded, like reads: the queue may keep filling
            exc = self._read_error_queue()
            if exc is None:
                break
            reported += 1
            self._protocol.error_received(exc)
            if self._sock is None:
                return reported
        if not reported and fallback is not None:
            _attach_destination(fallback, None)  # error_received may always read .address
            self._protocol.error_received(fallback)
        return reported

    def _report_pending_error(self) -> None:
        """EPOLLERR with an empty queue: a pending error that was never queued. Reading
        SO_ERROR clears it; otherwise level-triggered EPOLLERR would spin the loop."""
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            exc = OSError(err, os.strerror(err))
            exc.address = None
            self._protocol.error_received(exc)

    def _read_error_queue(self) -> OSError | None:
        try:
            _, ancdata, _, addr = self._sock.recvmsg(0, _ERRQUEUE_ANCILLARY_BYTES,
                                                     socket.MSG_ERRQUEUE)
        except BlockingIOError:  # EAGAIN: the queue is empty
            return None
        for level, kind, data in ancdata:
            if (level, kind) in ((socket.IPPROTO_IP, IP_RECVERR),
                                 (socket.IPPROTO_IPV6, IPV6_RECVERR)):
                return _error_from_extended_err(data, addr)
        return None  # nothing we can read: treat the queue as drained this time

    # -- sending ---------------------------------------------------------------------------

    def sendto(self, data: bytes, addr: tuple | None = None) -> None:
        """Send one datagram now, or queue it (bounded) if the socket buffer is full.
        `addr` may be None on a connected socket."""
        if self._sock is None:
            raise ReactorError("sendto() on a closed UdpSocket")
        if self._queue:
            self._enqueue(data, addr)  # keep datagrams in order
            return
        exc = self._send_or_queue(data, addr)
        if exc is not None:
            self._send_failed(exc, data, addr)

    def _send_or_queue(self, data: bytes, addr: tuple | None) -> OSError | None:
        """Send now, or queue (bounded) if the socket buffer is full; the error of a send
        that failed otherwise, carrying its destination."""
        try:
            self._send(data, addr)
        except BlockingIOError:
            self._enqueue(data, addr)
        except OSError as exc:
            _attach_destination(exc, addr)
            return exc
        return None

    def _send_failed(self, exc: OSError, data: bytes, addr: tuple | None) -> None:
        """A failed send may have only returned an earlier datagram's error (see the
        module docstring): report the queued errors and try this datagram once more."""
        _attach_destination(exc, addr)
        if not self._report_queued_errors(exc) or self._sock is None:
            return
        again = self._send_or_queue(data, addr)
        if again is not None:
            self._protocol.error_received(again)

    def send(self, data: bytes) -> None:
        """sendto() the connected peer."""
        self.sendto(data, None)

    def _send(self, data: bytes, addr: tuple | None) -> None:
        if addr is None:
            self._sock.send(data)
        else:
            self._sock.sendto(data, addr)
        self.datagrams_sent += 1

    def _enqueue(self, data: bytes, addr: tuple | None) -> None:
        if len(self._queue) >= self.send_queue_max:
            self.dropped_datagrams += 1  # UDP may drop anyway; memory must stay bounded
            return
        if not self._queue:
            self._loop.modify(self._fd, READABLE | WRITABLE)
        self._queue.append((bytes(data), addr))

    def _drain_queue(self) -> None:
        queue = self._queue
        while queue:
            data, addr = queue[0]
            try:
                self._send(data, addr)
            except BlockingIOError:
                return
            except OSError as exc:
                queue.popleft()  # _send_failed may queue it again (at the end: rare)
                self._send_failed(exc, data, addr)
                if self._sock is None:
                    return
                continue
            queue.popleft()
        self._loop.modify(self._fd, READABLE)  # empty queue: WRITABLE would spin (LT)

    # -- lifetime and introspection --------------------------------------------------------

    @property
    def sockname(self) -> Any:
        return self._sock.getsockname() if self._sock is not None else None

    @property
    def queued_datagrams(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._queue.clear()
        if not self._loop.is_closed:
            self._loop.unregister(self._fd)
            self._loop.call_soon(self._protocol.connection_lost, None)
        sock.close()

    def __enter__(self) -> UdpSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else "open"
        return (f"<UdpSocket {state} {short_addr(self.sockname)} sent={self.datagrams_sent} "
                f"received={self.datagrams_received} dropped={self.dropped_datagrams}>")


def _enable_error_queue(sock: socket.socket, family: int) -> None:
    """IP_RECVERR (ip(7)): queue ICMP errors with their addresses, on any socket."""
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)  # IPv4 (and v4-mapped on v6)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)


def _error_from_extended_err(data: bytes, dest: Any) -> OSError:
    """An OSError from a `struct sock_extended_err` and the failed datagram's destination."""
    ee_errno, origin, icmp_type, icmp_code, _, _, _ = _SOCK_EXTENDED_ERR.unpack_from(data)
    # OSError(errno, ...) picks the subclass itself (ECONNREFUSED -> ConnectionRefusedError).
    exc = OSError(ee_errno, os.strerror(ee_errno))
    exc.address = dest
    from_icmp = origin in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6)
    exc.icmp = (icmp_type, icmp_code) if from_icmp else None
    exc.offender = _offender(data[_SOCK_EXTENDED_ERR.size:]) if from_icmp else None
    return exc


def _offender(sockaddr: bytes) -> str | None:
    """The IP in the sockaddr after the struct (SO_EE_OFFENDER): who sent the ICMP."""
    if len(sockaddr) < 2:
        return None
    family = struct.unpack_from("=H", sockaddr)[0]
    if family == socket.AF_INET and len(sockaddr) >= 8:
        return socket.inet_ntop(socket.AF_INET, sockaddr[4:8])
    if family == socket.AF_INET6 and len(sockaddr) >= 24:
        return socket.inet_ntop(socket.AF_INET6, sockaddr[8:24])
    return None


def _attach_destination(exc: OSError, addr: Any) -> None:
    if getattr(exc, "address", None) is None:
        exc.address = addr

