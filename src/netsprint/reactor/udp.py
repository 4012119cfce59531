"""Non-blocking UDP on the reactor (the basics; week 2 builds on it).

ICMP errors: when a datagram hits a closed port, the peer's kernel answers with ICMP port
unreachable. Linux turns that into ECONNREFUSED on the *next* send/recv of the socket only
if the socket is connected (udp(7): "all fatal errors will be passed to the user ... only
when the socket is connected" unless IP_RECVERR is set). Give `remote_addr` to connect the
socket; the error then reaches `error_received`.
"""

from __future__ import annotations

import collections
import logging
import socket
from typing import Any

from netsprint.errors import ReactorError
from netsprint.reactor.addresses import resolve, short_addr
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.poller import READABLE, WRITABLE
from netsprint.reactor.protocols import DatagramProtocol

log = logging.getLogger(__name__)

DATAGRAM_MAX_BYTES = 65535  # largest UDP payload over IPv4 plus header room: never truncates
RECV_BATCH = 32  # datagrams per readiness event, so one busy socket cannot starve others
SEND_QUEUE_MAX = 256  # datagrams kept while the socket buffer is full; more are dropped


class UdpSocket:
    """One UDP socket. Owns the socket and its small queue of unsent datagrams; does not
    own the loop or the protocol."""

    def __init__(self, loop: EventLoop, local_addr: tuple[str, int],
                 protocol: DatagramProtocol, *, remote_addr: tuple[str, int] | None = None,
                 send_queue_max: int = SEND_QUEUE_MAX) -> None:
        family, addr = resolve(local_addr[0], local_addr[1], socket.SOCK_DGRAM, passive=True)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
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
        if events & ~WRITABLE:  # READABLE, or ERROR: the recv below surfaces the error
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
                # e.g. ConnectionRefusedError from an ICMP port unreachable: the socket
                # is still fine, the error belonged to an earlier datagram.
                protocol.error_received(exc)
                if self._sock is None:
                    return
                continue
            self.datagrams_received += 1
            protocol.datagram_received(data, addr)
            if self._sock is None:
                return

    # -- sending ---------------------------------------------------------------------------

    def sendto(self, data: bytes, addr: tuple | None = None) -> None:
        """Send one datagram now, or queue it (bounded) if the socket buffer is full.
        `addr` may be None on a connected socket."""
        if self._sock is None:
            raise ReactorError("sendto() on a closed UdpSocket")
        if self._queue:
            self._enqueue(data, addr)  # keep datagrams in order
            return
        try:
            self._send(data, addr)
        except BlockingIOError:
            self._enqueue(data, addr)
        except OSError as exc:
            self._protocol.error_received(exc)

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
                self._protocol.error_received(exc)
                if self._sock is None:
                    return
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
