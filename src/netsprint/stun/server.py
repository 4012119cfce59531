"""A STUN Binding server (RFC 8489) with RFC 5780's NAT-behaviour-discovery extras.

`StunServerCore` decides, sans-I/O, what to answer: datagram + source + the local address
it arrived on -> (response bytes, local address to send from, destination) or None.
`StunServer` is the thin shell: one week-1 `UdpSocket` per local address.

With an alternate IP the server listens on 2 IPs x 2 ports (RFC 5780 §6):

    (primary ip, port)   (primary ip, alt port)   (alt ip, port)   (alt ip, alt port)

CHANGE-REQUEST picks the socket the answer leaves from (flip the IP and/or the port of the
one the request came in on); RESPONSE-ORIGIN names that socket; OTHER-ADDRESS names the
socket differing in both IP and port (RFC 5780 §7.4: where "change IP and port" answers
from); RESPONSE-PORT redirects the answer to another port of the client's IP (§7.5).
Without an alternate IP, CHANGE-REQUEST is an attribute the server cannot honour: it gets
420 Unknown Attribute, as RFC 5780 §6.1 says, and OTHER-ADDRESS is never sent.

Dropped silently (and counted): non-STUN datagrams, malformed STUN, a wrong FINGERPRINT,
indications and responses. Amplification is bounded: an answer is never larger than
max(80 bytes, the request), so a bare 20-byte request (the cheapest to spoof) gets at
most 80 bytes back, and PADDING (§7.6) only pads up to the request's own size (a request
too small for that still gets the PADDING §6.1 requires, as short as fits the 80 bytes).
When an answer would not fit, the redundant MAPPED-ADDRESS goes first, then OTHER-ADDRESS
and RESPONSE-ORIGIN (only IPv6 answers ever need this).

Hot path: a bare 20-byte IPv4 Binding request, the bulk of a STUN server's traffic, is
answered from one struct unpack and one struct pack with per-socket bytes precomputed.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket
import struct
from typing import Any

from netsprint.reactor import background
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.protocols import DatagramProtocol
from netsprint.reactor.udp import UdpSocket
from netsprint.stun import attributes as attrs
from netsprint.stun.attributes import MAGIC_COOKIE, ChangeRequest, ErrorCode, StunDecodeError
from netsprint.stun.integrity import FINGERPRINT_TLV_BYTES, add_fingerprint, verify_fingerprint
from netsprint.stun.message import (BINDING, ERROR_RESPONSE, HEADER_BYTES, HEADER_STRUCT,
                                    REQUEST, SUCCESS_RESPONSE, Attribute, Message,
                                    append_attribute, decode, encode, encode_attribute,
                                    is_stun, message_type)

log = logging.getLogger(__name__)

AMPLIFICATION_FLOOR_BYTES = 80  # what a bare request may get back at most (coturn's size)
RECV_BUFFER_BYTES = 4 << 20  # as coturn asks for: a burst of requests must not overflow
ADDRESS_ATTR_V4_BYTES = 12      # TLV header + family/port + IPv4 address

# Header + XOR-MAPPED-ADDRESS + MAPPED-ADDRESS (IPv4): the fast path's variable part.
_FAST_RESPONSE = struct.Struct("!HHI12sHHBBHIHHBBH4s")
_BINDING_REQUEST_TYPE = message_type(BINDING, REQUEST)
_BINDING_SUCCESS_TYPE = message_type(BINDING, SUCCESS_RESPONSE)
_COOKIE_HIGH = MAGIC_COOKIE >> 16

Address = tuple[str, int]
Reply = tuple[bytes, Address, Address]


# What `_fit` leaves out first when an answer exceeds the amplification budget: the
# redundant plain MAPPED-ADDRESS, then the RFC 5780 extras a Binding client can live without.
_DROP_ORDER = (attrs.MAPPED_ADDRESS, attrs.OTHER_ADDRESS, attrs.RESPONSE_ORIGIN)


def _is_unspecified(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_unspecified


def _padding_with_response_port(request: Message) -> bool:
    """RFC 5780 §6.1/§7.5: PADDING (to test fragmentation) and RESPONSE-PORT together must
    not be processed; the answer is 400."""
    return attrs.PADDING in request and attrs.RESPONSE_PORT in request


class StunServerCore:
    """Owns the server's address set and its counters; decides each answer. No sockets,
    no clock."""

    def __init__(self, primary: Address, alt_ip: str | None = None,
                 alt_port: int | None = None) -> None:
        self.primary = (primary[0], int(primary[1]))
        self.alt_ip = alt_ip
        self.alt_port = alt_port if alt_port is not None else self.primary[1] + 1
        self.rfc5780 = alt_ip is not None
        self.requests = 0
        self.responses = 0
        self.errors_420 = 0
        self.errors_400 = 0
        self.dropped_malformed = 0
        self.dropped_not_stun = 0
        self.dropped_not_request = 0
        # local address -> (body length, RESPONSE-ORIGIN + OTHER-ADDRESS bytes) for the
        # fast path: both depend only on the socket the request came in on.
        self._fast_suffix: dict[Address, tuple[int, bytes]] = {
            local: self._fast_suffix_for(local) for local in self.local_addresses}

    # -- the address set -------------------------------------------------------------------

    @property
    def local_addresses(self) -> list[Address]:
        ip, port = self.primary
        if not self.rfc5780:
            return [self.primary]
        return [(ip, port), (ip, self.alt_port), (self.alt_ip, port),
                (self.alt_ip, self.alt_port)]

    def _flip(self, local: Address, change_ip: bool, change_port: bool) -> Address:
        ip, port = local
        if change_ip:
            ip = self.alt_ip if ip == self.primary[0] else self.primary[0]
        if change_port:
            port = self.alt_port if port == self.primary[1] else self.primary[1]
        return (ip, port)

    def other_address(self, local: Address) -> Address | None:
        """RFC 5780 §7.4: where a change-IP-and-port answer to `local` would come from."""
        return self._flip(local, True, True) if self.rfc5780 else None

    def _origin_attributes(self, sender: Address, received_on: Address) -> list[Attribute]:
        found = []
        if not _is_unspecified(sender[0]):  # a wildcard bind cannot name its origin
            found.append(Attribute(attrs.RESPONSE_ORIGIN, sender))
        other = self.other_address(received_on)
        if other is not None:
            found.append(Attribute(attrs.OTHER_ADDRESS, other))
        return found

    def _fast_suffix_for(self, local: Address) -> tuple[int, bytes]:
        tid = bytes(12)  # neither attribute is XORed: the transaction id does not matter
        suffix = b"".join(encode_attribute(a.type, a.value, tid)
                          for a in self._origin_attributes(local, local))
        return 2 * ADDRESS_ATTR_V4_BYTES + len(suffix), suffix

    # -- deciding --------------------------------------------------------------------------

    def handle(self, data: bytes, source: Address, local: Address) -> Reply | None:
        """(response, local address to send from, destination) or None to stay silent."""
        if len(data) == HEADER_BYTES:
            msg_type, length, cookie, tid = HEADER_STRUCT.unpack(data)
            if msg_type == _BINDING_REQUEST_TYPE and length == 0 and cookie == MAGIC_COOKIE:
                fast = self._fast_binding(tid, source, local)
                if fast is not None:
                    return fast
        return self._handle_general(data, source, local)

    def _fast_binding(self, tid: bytes, source: Address, local: Address) -> Reply | None:
        ip, port = source[0], source[1]
        suffix = self._fast_suffix.get(local)
        if suffix is None or ":" in ip:
            return None  # IPv6 or an unknown socket: the general path handles it
        body_len, tail = suffix
        raw_ip = socket.inet_aton(ip)
        xaddr = int.from_bytes(raw_ip, "big") ^ MAGIC_COOKIE
        self.requests += 1
        self.responses += 1
        response = _FAST_RESPONSE.pack(_BINDING_SUCCESS_TYPE, body_len, MAGIC_COOKIE, tid,
                                       attrs.XOR_MAPPED_ADDRESS, 8, 0, attrs.FAMILY_IPV4,
                                       port ^ _COOKIE_HIGH, xaddr,
                                       attrs.MAPPED_ADDRESS, 8, 0, attrs.FAMILY_IPV4, port,
                                       raw_ip) + tail
        return response, local, source

    def _handle_general(self, data: bytes, source: Address, local: Address) -> Reply | None:
        if not is_stun(data):
            self.dropped_not_stun += 1
            return None
        try:
            request = decode(data)
        except StunDecodeError as exc:
            self.dropped_malformed += 1
            log.debug("malformed STUN from %s: %s", source, exc)
            return None
        has_fingerprint = attrs.FINGERPRINT in request
        if has_fingerprint and not verify_fingerprint(data):
            self.dropped_malformed += 1  # RFC 8489 §7.3: a bad FINGERPRINT is not STUN
            return None
        if request.msg_class != REQUEST:
            self.dropped_not_request += 1  # indications and stray responses get no answer
            return None
        self.requests += 1
        if request.method != BINDING:
            return self._bad_request(request, source, local)
        unknown = self._unsupported(request)
        if unknown:
            self.errors_420 += 1
            return self._error(request, source, local, ErrorCode(420, "Unknown Attribute"),
                               unknown)
        if _padding_with_response_port(request):  # usage checks come after STUN's (§6.1)
            return self._bad_request(request, source, local)
        return self._success(request, len(data), source, local, has_fingerprint)

    def _unsupported(self, request: Message) -> tuple[int, ...]:
        unknown = request.unknown_comprehension_required()
        if not self.rfc5780 and attrs.CHANGE_REQUEST in request:
            unknown += (attrs.CHANGE_REQUEST,)  # RFC 5780 §6.1: no alternate address
        return unknown

    def _success(self, request: Message, request_bytes: int, source: Address, local: Address,
                 fingerprint: bool) -> Reply:
        change = request.get(attrs.CHANGE_REQUEST, ChangeRequest(False, False))
        sender = self._flip(local, change.change_ip, change.change_port)
        response_port = request.get(attrs.RESPONSE_PORT)
        destination = (source[0], response_port) if response_port is not None else source
        mapped = (source[0], source[1])
        found = [Attribute(attrs.XOR_MAPPED_ADDRESS, mapped),
                 Attribute(attrs.MAPPED_ADDRESS, mapped)]
        found += self._origin_attributes(sender, local)
        fingerprint_bytes = FINGERPRINT_TLV_BYTES if fingerprint else 0
        budget = max(AMPLIFICATION_FLOOR_BYTES, request_bytes) - fingerprint_bytes
        data = self._fit(request.transaction_id, SUCCESS_RESPONSE, found, budget)
        if attrs.PADDING in request:
            data = self._pad(data, request_bytes - fingerprint_bytes, budget)
        if fingerprint:
            data = add_fingerprint(data)  # answer in kind (RFC 8445 relies on it)
        self.responses += 1
        return data, sender, destination

    @staticmethod
    def _fit(tid: bytes, msg_class: int, found: list[Attribute], budget: int) -> bytes:
        """Encode, leaving out attributes in `_DROP_ORDER` until within `budget` bytes
        (only IPv6 answers ever need this; XOR-MAPPED-ADDRESS always stays)."""
        for dropping in (None, *_DROP_ORDER):
            found = [a for a in found if a.type != dropping]
            data = encode(Message(BINDING, msg_class, tid, tuple(found)))
            if len(data) <= budget:
                break
        return data

    @staticmethod
    def _pad(data: bytes, target_bytes: int, budget: int) -> bytes:
        """RFC 5780 §6.1: a request with PADDING MUST get PADDING back, up to the request's
        own size (§7.6 wants the MTU, but that would amplify); when the request is smaller
        than the answer already is, the shortest PADDING that stays within `budget`."""
        pad_bytes = max(0, (target_bytes - len(data) - 4) & ~3)
        if len(data) + 4 + pad_bytes > budget:
            return data  # not even an empty PADDING fits the amplification bound
        return append_attribute(data, attrs.PADDING, bytes(pad_bytes))

    def _bad_request(self, request: Message, source: Address, local: Address) -> Reply:
        self.errors_400 += 1
        return self._error(request, source, local, ErrorCode(400, "Bad Request"), ())

    def _error(self, request: Message, source: Address, local: Address, error: ErrorCode,
               unknown: tuple[int, ...]) -> Reply:
        found = [Attribute(attrs.ERROR_CODE, error)]
        if unknown:
            found.append(Attribute(attrs.UNKNOWN_ATTRIBUTES, unknown))
        self.responses += 1
        return encode(Message(request.method, ERROR_RESPONSE, request.transaction_id,
                              tuple(found))), local, source

    def counters(self) -> dict[str, int]:
        return {"requests": self.requests, "responses": self.responses,
                "errors_420": self.errors_420, "errors_400": self.errors_400,
                "dropped_malformed": self.dropped_malformed,
                "dropped_not_stun": self.dropped_not_stun,
                "dropped_not_request": self.dropped_not_request}


class _Endpoint(DatagramProtocol):
    """One listening socket's callbacks; owns nothing but its local address."""

    __slots__ = ("server", "local")

    def __init__(self, server: StunServer, local: Address) -> None:
        self.server = server
        self.local = local

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        reply = self.server.core.handle(data, addr, self.local)
        if reply is not None:
            self.server.sockets[reply[1]].sendto(reply[0], reply[2])

    def error_received(self, exc: OSError) -> None:
        log.debug("STUN socket %s: %s", self.local, exc)


class StunServer:
    """Owns the 1 or 4 UDP sockets and the core; does not own the loop.

    A primary port of 0 picks a free port P such that P+1 is free too on both IPs."""

    BIND_ATTEMPTS = 20

    def __init__(self, loop: EventLoop, primary: Address, alt_ip: str | None = None, *,
                 alt_port: int | None = None,
                 core_class: type[StunServerCore] = StunServerCore) -> None:
        self.loop = loop
        self._core_class = core_class  # tests swap in a misbehaving core
        self.sockets: dict[Address, UdpSocket] = {}
        attempts = self.BIND_ATTEMPTS if primary[1] == 0 else 1
        for attempt in range(attempts):
            try:
                self._bind_all(primary, alt_ip, alt_port)
                return
            except OSError as exc:
                self.close()
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise

    def _bind_all(self, primary: Address, alt_ip: str | None, alt_port: int | None) -> None:
        endpoint = _Endpoint(self, primary)
        first = UdpSocket(self.loop, primary, endpoint, recv_buffer_bytes=RECV_BUFFER_BYTES)
        self.core = self._core_class((primary[0], first.sockname[1]), alt_ip, alt_port)
        endpoint.local = self.core.primary  # the real port, not the 0 asked for
        self.sockets[self.core.primary] = first
        for local in self.core.local_addresses[1:]:
            self.sockets[local] = UdpSocket(self.loop, local, _Endpoint(self, local),
                                            recv_buffer_bytes=RECV_BUFFER_BYTES)

    @property
    def primary(self) -> Address:
        return self.core.primary

    @property
    def other_address(self) -> Address | None:
        return self.core.other_address(self.core.primary)

    def counters(self) -> dict[str, int]:
        return self.core.counters()

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()

    def __enter__(self) -> StunServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def serving_in_thread(primary: Address = ("127.0.0.1", 0), alt_ip: str | None = None, *,
                      alt_port: int | None = None,
                      core_class: type[StunServerCore] = StunServerCore
                      ) -> contextlib.AbstractContextManager[StunServer]:
    """A StunServer on its own loop in a background thread, for tests and notebooks where
    the caller blocks in a client; stopped and closed on exit, even on failure."""
    return background.serving_in_thread(
        lambda loop: StunServer(loop, primary, alt_ip, alt_port=alt_port, core_class=core_class),
        name="stun-server")
