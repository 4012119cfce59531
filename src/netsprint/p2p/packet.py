"""The P2P datagram format: what peers send each other (directly or through the relay).

Every datagram starts with a 12-byte header:

    0      2   3     4                 12
    +------+---+-----+-----------------+--------
    | "NS" | v | typ | session (8 B)   | body ...
    +------+---+-----+-----------------+--------

The magic "NS" (0x4E 0x53) keeps these apart from STUN on the same socket: RFC 7983
section 7 demultiplexes by the first byte, and STUN's is 0 or 1 (its two top bits are 0,
RFC 8489 section 5). The session id (chosen by the offerer, sent as 16 hex digits in the
signaling `session` field) lets a peer drop strays from an earlier session or a stranger.

Bodies by type (network byte order):
- PROBE      txid (8 B)                      hole-punching check
- PROBE_ACK  txid (8 B) + observed address   the address the probe really came from
- KEEPALIVE  seq (u32)                       keeps NAT mappings open, proves the path alive
- DATA       opaque bytes                    a reliable-channel segment (p2p.channel)
- RELAY_BIND token (16 B)                    to the relay: bind my address to my grant
- RELAY_BOUND lifetime_s (u32)               from the relay: bound, for this long
- BYE        empty                           the sender closed the session

An observed address is family (u8: 4 or 6), port (u16), then 4 or 16 address bytes.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from netsprint.errors import DecodeError

MAGIC = b"NS"
VERSION = 1
HEADER = struct.Struct("!2sBB8s")
HEADER_BYTES = HEADER.size  # 12
SESSION_ID_BYTES = 8
TXID_BYTES = 8
TOKEN_BYTES = 16
# RFC 8085 section 3.2: without path MTU discovery keep UDP payloads under the IPv6
# minimum MTU (1280) less the IP and UDP headers; 1200 leaves room for a relay's tunnels.
MAX_PACKET_BYTES = 1200
MAX_BODY_BYTES = MAX_PACKET_BYTES - HEADER_BYTES


class PacketType(enum.IntEnum):
    PROBE = 1
    PROBE_ACK = 2
    KEEPALIVE = 3
    DATA = 4
    RELAY_BIND = 5
    RELAY_BOUND = 6
    BYE = 7


class PacketError(DecodeError):
    """A datagram that has our magic but is not a valid packet."""


@dataclass(frozen=True)
class Packet:
    type: PacketType
    session: bytes
    body: bytes = b""


def is_p2p(data: bytes) -> bool:
    """True when `data` starts like one of ours (a predicate: STUN and noise are not errors)."""
    return len(data) >= HEADER_BYTES and data[:2] == MAGIC


def encode_packet(packet: Packet) -> bytes:
    if len(packet.session) != SESSION_ID_BYTES:
        raise ValueError(f"a session id is {SESSION_ID_BYTES} bytes, not {len(packet.session)}")
    if len(packet.body) > MAX_BODY_BYTES:
        raise ValueError(f"body of {len(packet.body)} bytes exceeds {MAX_BODY_BYTES}")
    return HEADER.pack(MAGIC, VERSION, packet.type, packet.session) + packet.body


def decode_packet(data: bytes) -> Packet:
    """Parse one datagram; raises PacketError with the offset of what is wrong."""
    if len(data) < HEADER_BYTES:
        raise PacketError(f"{len(data)} bytes is shorter than the {HEADER_BYTES}-byte header", 0)
    if len(data) > MAX_PACKET_BYTES:
        raise PacketError(f"{len(data)} bytes exceeds the {MAX_PACKET_BYTES}-byte limit",
                          MAX_PACKET_BYTES)
    magic, version, type_code, session = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise PacketError("missing the 'NS' magic", 0)
    if version != VERSION:
        raise PacketError(f"version {version}, expected {VERSION}", 2)
    try:
        ptype = PacketType(type_code)
    except ValueError:
        raise PacketError(f"unknown packet type {type_code}", 3) from None
    body = bytes(data[HEADER_BYTES:])
    _check_body(ptype, body)
    return Packet(ptype, bytes(session), body)


_FIXED_BODY_BYTES = {
    PacketType.PROBE: TXID_BYTES,
    PacketType.KEEPALIVE: 4,
    PacketType.RELAY_BIND: TOKEN_BYTES,
    PacketType.RELAY_BOUND: 4,
    PacketType.BYE: 0,
}


def _check_body(ptype: PacketType, body: bytes) -> None:
    expected = _FIXED_BODY_BYTES.get(ptype)
    if expected is not None and len(body) != expected:
        raise PacketError(f"{ptype.name} body is {len(body)} bytes, expected {expected}",
                          HEADER_BYTES)
    if ptype is PacketType.PROBE_ACK:
        parse_probe_ack(body)


# -- bodies ---------------------------------------------------------------------------------

def probe(session: bytes, txid: bytes) -> bytes:
    return encode_packet(Packet(PacketType.PROBE, session, txid))


def probe_ack(session: bytes, txid: bytes, observed: tuple[str, int]) -> bytes:
    return encode_packet(Packet(PacketType.PROBE_ACK, session, txid + _pack_address(observed)))


def parse_probe_ack(body: bytes) -> tuple[bytes, tuple[str, int]]:
    """(txid, observed address) from a PROBE_ACK body."""
    if len(body) < TXID_BYTES + 3:
        raise PacketError("PROBE_ACK body too short for a txid and an address", HEADER_BYTES)
    return body[:TXID_BYTES], _unpack_address(body[TXID_BYTES:], HEADER_BYTES + TXID_BYTES)


def keepalive(session: bytes, seq: int) -> bytes:
    return encode_packet(Packet(PacketType.KEEPALIVE, session, struct.pack("!I", seq & 0xFFFFFFFF)))


def data(session: bytes, body: bytes) -> bytes:
    return encode_packet(Packet(PacketType.DATA, session, body))


def relay_bind(session: bytes, token: bytes) -> bytes:
    if len(token) != TOKEN_BYTES:
        raise ValueError(f"a relay token is {TOKEN_BYTES} bytes")
    return encode_packet(Packet(PacketType.RELAY_BIND, session, token))


def relay_bound(session: bytes, lifetime_s: int) -> bytes:
    return encode_packet(Packet(PacketType.RELAY_BOUND, session, struct.pack("!I", lifetime_s)))


def bye(session: bytes) -> bytes:
    return encode_packet(Packet(PacketType.BYE, session))


def u32(body: bytes) -> int:
    """The u32 of a KEEPALIVE or RELAY_BOUND body."""
    return struct.unpack("!I", body)[0]


def _pack_address(addr: tuple[str, int]) -> bytes:
    ip = ipaddress.ip_address(addr[0])
    return struct.pack("!BH", ip.version, addr[1]) + ip.packed


def _unpack_address(raw: bytes, offset: int) -> tuple[str, int]:
    version, port = struct.unpack_from("!BH", raw)
    size = {4: 4, 6: 16}.get(version)
    if size is None:
        raise PacketError(f"address family {version} is neither 4 nor 6", offset)
    if len(raw) != 3 + size:
        raise PacketError(f"IPv{version} address needs {size} bytes, got {len(raw) - 3}",
                          offset + 3)
    return str(ipaddress.ip_address(raw[3:])), port


def session_id_hex(session: bytes) -> str:
    return session.hex()


def session_id_from_hex(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise PacketError(f"session id {text[:32]!r} is not hex", 0) from None
    if len(raw) != SESSION_ID_BYTES:
        raise PacketError(f"session id is {len(raw)} bytes, expected {SESSION_ID_BYTES}", 0)
    return raw
