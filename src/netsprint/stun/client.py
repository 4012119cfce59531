"""A blocking STUN Binding client: the I/O shell around `ClientTransaction`.

`binding_request` sends one Binding request from a non-blocking UDP socket, waits with
`select` until the transaction's next deadline, and feeds every datagram that decodes as a
response with our transaction id to the transaction. It returns a `BindingResult`, or
None when no answer came in time (a missing answer is a result in NAT filtering tests,
not an error). Error responses (e.g. 420) are results too: `BindingResult.error`.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time
from dataclasses import dataclass

from netsprint.errors import NetsprintError
from netsprint.stun import attributes as attrs
from netsprint.stun.attributes import ChangeRequest, ErrorCode, StunDecodeError, TransportAddress
from netsprint.stun.message import Attribute, Message, binding_request as make_request
from netsprint.stun.message import decode, encode, is_stun
from netsprint.stun.transaction import (DEFAULT_RTO, ClientTransaction, TransactionFailed,
                                        Transmit)

RECV_BYTES = 65535
RECV_BATCH = 64  # datagrams read per readiness event before the deadline is checked again


class StunError(NetsprintError):
    """A STUN client problem the caller should see: a bad address, an unusable socket."""


@dataclass(frozen=True)
class BindingResult:
    """What one Binding transaction learned.

    `source_address` is where the answer really came from (the socket's view), which is
    what NAT filtering tests judge; `response_origin` is what the server says it sent from.
    `rtt` runs from the first transmission: with `transmissions` > 1 it is not a clean
    sample (Karn's rule), only an upper bound.
    """

    server: TransportAddress
    local_address: TransportAddress
    source_address: TransportAddress
    mapped_address: TransportAddress | None
    response_origin: TransportAddress | None
    other_address: TransportAddress | None
    error: ErrorCode | None
    rtt: float
    transmissions: int

    @property
    def ok(self) -> bool:
        return self.error is None and self.mapped_address is not None


def parse_ip(text: str) -> str:
    """A textual IP address, normalised; StunError if it is not one."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise StunError(f"{text!r} is not an IP address") from None


def parse_address(text: str) -> TransportAddress:
    """'IP:PORT' or '[IPv6]:PORT' -> TransportAddress; StunError saying why if not."""
    host, sep, port_text = text.rpartition(":")
    try:
        if not sep or not host:
            raise StunError("no IP before the port")
        ip = parse_ip(host)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise StunError(f"port {port_text!r} is not 1-65535")
    except StunError as exc:
        raise StunError(f"{text!r} is not IP:PORT ({exc}; e.g. 127.0.0.1:3478)") from None
    return TransportAddress(ip, int(port_text))


def _request_attributes(change_ip: bool, change_port: bool,
                        response_port: int | None) -> list[Attribute]:
    found = []
    if change_ip or change_port:
        found.append(Attribute(attrs.CHANGE_REQUEST, ChangeRequest(change_ip, change_port)))
    if response_port is not None:
        found.append(Attribute(attrs.RESPONSE_PORT, response_port))
    return found


def socket_family(ip: str) -> int:
    """AF_INET6 for an IPv6 address text, AF_INET otherwise."""
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _wildcard_address(server_ip: str) -> tuple[str, int]:
    """The wildcard address and port 0 of the server's family: an IPv4 socket cannot send
    to an IPv6 server, nor the other way round."""
    return ("::", 0) if socket_family(server_ip) == socket.AF_INET6 else ("0.0.0.0", 0)


def open_udp_socket(local_addr: tuple[str, int]) -> socket.socket:
    """A UDP socket bound to `local_addr`; StunError (the socket closed) if it cannot bind."""
    sock = socket.socket(socket_family(local_addr[0]), socket.SOCK_DGRAM)
    try:
        sock.bind(local_addr)
    except OSError as exc:
        sock.close()
        raise StunError(f"cannot bind {local_addr[0]}:{local_addr[1]}: {exc}") from exc
    return sock


def binding_request(server: tuple[str, int], *, sock: socket.socket | None = None,
                    local_addr: tuple[str, int] | None = None, change_ip: bool = False,
                    change_port: bool = False, response_port: int | None = None,
                    timeout: float | None = None,
                    rto: float = DEFAULT_RTO) -> BindingResult | None:
    """One Binding transaction to `server`; None if no answer (RFC 8489 schedule, cut
    short at `timeout` seconds when given).

    `sock`: send from this socket (kept open; NAT tests reuse one local port); otherwise a
    socket bound to `local_addr` (default: any address of the server's family, any port) is
    made and closed. With `response_port`, the answer is awaited on a second socket bound
    to that port on the same local IP (RFC 5780 §7.5)."""
    own = sock is None
    if sock is None:
        sock = open_udp_socket(local_addr or _wildcard_address(server[0]))
    reply_sock = None
    try:
        if response_port is not None:
            reply_sock = open_udp_socket((sock.getsockname()[0], response_port))
        request = make_request(_request_attributes(change_ip, change_port, response_port))
        # Error responses ignore RESPONSE-PORT and come back to `sock`: listen on both.
        listen = [sock] if reply_sock is None else [sock, reply_sock]
        return _run(TransportAddress(*server[:2]), sock, listen, request, timeout, rto)
    finally:
        if reply_sock is not None:
            reply_sock.close()
        if own:
            sock.close()


def _run(server: TransportAddress, sock: socket.socket, listen: list[socket.socket],
         request: Message, timeout: float | None, rto: float) -> BindingResult | None:
    for each in listen:
        each.setblocking(False)
    txn = ClientTransaction(encode(request), request.transaction_id, rto=rto,
                            max_duration=timeout)
    actions = txn.start(time.monotonic())
    while True:
        for action in actions:
            if isinstance(action, TransactionFailed):
                return None
            if isinstance(action, Transmit):
                _send(sock, action.data, server)
        source = _wait_for_response(listen, txn)
        if source is not None:
            return _result(server, sock, source, txn)
        actions = txn.handle_timeout(time.monotonic())


def _send(sock: socket.socket, data: bytes, server: TransportAddress) -> None:
    try:
        sock.sendto(data, server)
    except (BlockingIOError, ConnectionRefusedError):
        pass  # a full buffer or an earlier ICMP error: the retransmission schedule covers it
    except OSError as exc:
        raise StunError(f"cannot send to {server.ip}:{server.port}: {exc}") from exc


def _wait_for_response(listen: list[socket.socket],
                       txn: ClientTransaction) -> TransportAddress | None:
    """Read until the transaction's next deadline; the source of the matching response."""
    deadline = txn.next_deadline()
    while deadline is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        readable, _, _ = select.select(listen, [], [], remaining)
        for sock in readable:
            source = _read_datagrams(sock, txn)
            if source is not None:
                return source
    return None


def _read_datagrams(sock: socket.socket, txn: ClientTransaction) -> TransportAddress | None:
    """Read a bounded batch: a flood of other traffic on this port must not keep the
    client from its retransmission and give-up deadlines."""
    for _ in range(RECV_BATCH):
        try:
            data, addr = sock.recvfrom(RECV_BYTES)
        except (BlockingIOError, ConnectionRefusedError):
            return None
        if not is_stun(data):
            continue  # not STUN: someone else's traffic on this port
        try:
            message = decode(data)
        except StunDecodeError:
            continue  # malformed: as if lost (RFC 8489 §6.3: discard)
        if txn.response_received(message):
            return TransportAddress(addr[0], addr[1])
    return None


def _result(server: TransportAddress, sock: socket.socket, source: TransportAddress,
            txn: ClientTransaction) -> BindingResult:
    response = txn.response
    local = sock.getsockname()
    mapped = response.get(attrs.XOR_MAPPED_ADDRESS) or response.get(attrs.MAPPED_ADDRESS)
    return BindingResult(
        server=server, local_address=TransportAddress(local[0], local[1]),
        source_address=source, mapped_address=mapped,
        response_origin=response.get(attrs.RESPONSE_ORIGIN),
        other_address=response.get(attrs.OTHER_ADDRESS),
        error=response.get(attrs.ERROR_CODE),
        rtt=time.monotonic() - txn.started_at, transmissions=txn.transmissions)
