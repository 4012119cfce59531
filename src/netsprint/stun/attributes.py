"""STUN attribute types and the codecs of their values (RFC 8489 §14, RFC 5780 §7).

Each attribute is a TLV: type (16 bits), length (16 bits, the value's length without
padding), value, then padding to a multiple of 4 bytes. This module turns one value's
bytes into a Python value and back; `message.py` walks the TLVs and owns the header.

Decoded values:
    addresses (MAPPED, XOR-MAPPED, RESPONSE-ORIGIN, OTHER-ADDRESS)  TransportAddress
    USERNAME, REALM, NONCE, SOFTWARE                                 str (UTF-8)
    MESSAGE-INTEGRITY(-SHA256), PADDING, any unknown type            bytes (raw)
    FINGERPRINT                                                      int
    ERROR-CODE                                                       ErrorCode
    UNKNOWN-ATTRIBUTES                                               tuple[int, ...]
    CHANGE-REQUEST                                                   ChangeRequest
    RESPONSE-PORT                                                    int
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Callable, NamedTuple

from netsprint.errors import DecodeError

MAGIC_COOKIE = 0x2112A442
MAGIC_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)

# RFC 8489 §18.3 (and RFC 5780 §9.1 for CHANGE-REQUEST .. RESPONSE-ORIGIN).
MAPPED_ADDRESS = 0x0001
CHANGE_REQUEST = 0x0003
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
REALM = 0x0014
NONCE = 0x0015
MESSAGE_INTEGRITY_SHA256 = 0x001C
XOR_MAPPED_ADDRESS = 0x0020
PADDING = 0x0026
RESPONSE_PORT = 0x0027
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
RESPONSE_ORIGIN = 0x802B
OTHER_ADDRESS = 0x802C

NAMES = {
    MAPPED_ADDRESS: "MAPPED-ADDRESS", CHANGE_REQUEST: "CHANGE-REQUEST", USERNAME: "USERNAME",
    MESSAGE_INTEGRITY: "MESSAGE-INTEGRITY", ERROR_CODE: "ERROR-CODE",
    UNKNOWN_ATTRIBUTES: "UNKNOWN-ATTRIBUTES", REALM: "REALM", NONCE: "NONCE",
    MESSAGE_INTEGRITY_SHA256: "MESSAGE-INTEGRITY-SHA256",
    XOR_MAPPED_ADDRESS: "XOR-MAPPED-ADDRESS", PADDING: "PADDING",
    RESPONSE_PORT: "RESPONSE-PORT", SOFTWARE: "SOFTWARE", FINGERPRINT: "FINGERPRINT",
    RESPONSE_ORIGIN: "RESPONSE-ORIGIN", OTHER_ADDRESS: "OTHER-ADDRESS",
}

FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02
FINGERPRINT_XOR = 0x5354554E  # RFC 8489 §14.7: "STUN" in ASCII
HMAC_SHA1_BYTES = 20


def is_comprehension_required(attr_type: int) -> bool:
    """RFC 8489 §14: types 0x0000-0x7FFF must be understood or the request gets a 420."""
    return attr_type < 0x8000


class StunDecodeError(DecodeError):
    """Bytes that look like STUN but break a receive rule; `offset` is where."""


class TransportAddress(NamedTuple):
    """An IP and a port; equal to the plain (ip, port) tuple sockets use."""

    ip: str
    port: int


class ErrorCode(NamedTuple):
    """ERROR-CODE: a 300-699 code and its reason phrase (RFC 8489 §14.8)."""

    code: int
    reason: str


class ChangeRequest(NamedTuple):
    """CHANGE-REQUEST flags (RFC 5780 §7.2): answer from the other IP and/or port."""

    change_ip: bool
    change_port: bool


CHANGE_IP_FLAG = 0x04   # RFC 5780 §7.2 flag A
CHANGE_PORT_FLAG = 0x02  # RFC 5780 §7.2 flag B


# -- addresses -----------------------------------------------------------------------------

def _family_of(ip: str) -> tuple[int, int]:
    return (FAMILY_IPV6, socket.AF_INET6) if ":" in ip else (FAMILY_IPV4, socket.AF_INET)


def _address_bytes(value: bytes, offset: int) -> tuple[int, int, bytes]:
    """(family, port, raw address) from an address attribute value, length-checked."""
    if len(value) < 4:
        raise StunDecodeError("address attribute shorter than 4 bytes", offset)
    _, family, port = struct.unpack_from("!BBH", value)
    expected = {FAMILY_IPV4: 8, FAMILY_IPV6: 20}.get(family)
    if expected is None:
        raise StunDecodeError(f"unknown address family {family:#04x}", offset + 1)
    if len(value) != expected:
        raise StunDecodeError(f"address of family {family} has length {len(value)}, "
                              f"expected {expected}", offset)
    return family, port, value[4:]


def _ip_text(family: int, raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if family == FAMILY_IPV4 else socket.AF_INET6, raw)


def decode_address(value: bytes, offset: int, transaction_id: bytes) -> TransportAddress:
    family, port, raw = _address_bytes(value, offset)
    return TransportAddress(_ip_text(family, raw), port)


def encode_address(address: tuple[str, int], transaction_id: bytes) -> bytes:
    ip, port = address
    family, af = _family_of(ip)
    return struct.pack("!BBH", 0, family, port) + socket.inet_pton(af, ip)


def _xor_mask(family: int, transaction_id: bytes) -> bytes:
    # RFC 8489 §14.2: IPv4 XORs with the cookie; IPv6 with cookie || transaction id.
    return MAGIC_COOKIE_BYTES if family == FAMILY_IPV4 else MAGIC_COOKIE_BYTES + transaction_id


def _xor(data: bytes, mask: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, mask))


def decode_xor_address(value: bytes, offset: int, transaction_id: bytes) -> TransportAddress:
    family, xport, xaddr = _address_bytes(value, offset)
    raw = _xor(xaddr, _xor_mask(family, transaction_id))
    return TransportAddress(_ip_text(family, raw), xport ^ (MAGIC_COOKIE >> 16))


def encode_xor_address(address: tuple[str, int], transaction_id: bytes) -> bytes:
    ip, port = address
    family, af = _family_of(ip)
    xaddr = _xor(socket.inet_pton(af, ip), _xor_mask(family, transaction_id))
    return struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xaddr


# -- text, raw, numbers ----------------------------------------------------------------------

def decode_text(value: bytes, offset: int, transaction_id: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StunDecodeError("text attribute is not UTF-8", offset + exc.start) from None


def encode_text(text: str, transaction_id: bytes) -> bytes:
    return text.encode("utf-8")


def decode_raw(value: bytes, offset: int, transaction_id: bytes) -> bytes:
    return bytes(value)


def encode_raw(value: bytes, transaction_id: bytes) -> bytes:
    return bytes(value)


def decode_message_integrity(value: bytes, offset: int, transaction_id: bytes) -> bytes:
    if len(value) != HMAC_SHA1_BYTES:
        raise StunDecodeError(f"MESSAGE-INTEGRITY has length {len(value)}, expected 20", offset)
    return bytes(value)


def is_sha256_mac_length(length: int) -> bool:
    """RFC 8489 §14.6: 16 to 32 bytes, a multiple of 4 (a truncated HMAC-SHA256)."""
    return 16 <= length <= 32 and length % 4 == 0


def decode_message_integrity_sha256(value: bytes, offset: int, transaction_id: bytes) -> bytes:
    if not is_sha256_mac_length(len(value)):
        raise StunDecodeError(f"MESSAGE-INTEGRITY-SHA256 has length {len(value)}", offset)
    return bytes(value)


def decode_fingerprint(value: bytes, offset: int, transaction_id: bytes) -> int:
    if len(value) != 4:
        raise StunDecodeError(f"FINGERPRINT has length {len(value)}, expected 4", offset)
    return struct.unpack("!I", value)[0]


def encode_fingerprint(crc: int, transaction_id: bytes) -> bytes:
    return struct.pack("!I", crc)


def decode_error_code(value: bytes, offset: int, transaction_id: bytes) -> ErrorCode:
    if len(value) < 4:
        raise StunDecodeError("ERROR-CODE shorter than 4 bytes", offset)
    hundreds, number = value[2] & 0x07, value[3]
    if not (3 <= hundreds <= 6 and number < 100):  # RFC 8489 §14.8: codes 300-699
        raise StunDecodeError(f"ERROR-CODE class {hundreds} number {number} out of range",
                              offset + 2)
    return ErrorCode(hundreds * 100 + number, decode_text(value[4:], offset + 4, transaction_id))


def encode_error_code(error: ErrorCode, transaction_id: bytes) -> bytes:
    code, reason = error
    if not 300 <= code <= 699:  # RFC 8489 §14.8: the class digit is 3..6
        raise ValueError(f"ERROR-CODE {code} is outside 300-699")
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")


def decode_unknown_attributes(value: bytes, offset: int, transaction_id: bytes) -> tuple[int, ...]:
    if len(value) % 2:
        raise StunDecodeError("UNKNOWN-ATTRIBUTES length is odd", offset)
    return struct.unpack(f"!{len(value) // 2}H", value)


def encode_unknown_attributes(types: tuple[int, ...], transaction_id: bytes) -> bytes:
    return struct.pack(f"!{len(types)}H", *types)


def decode_change_request(value: bytes, offset: int, transaction_id: bytes) -> ChangeRequest:
    if len(value) != 4:
        raise StunDecodeError(f"CHANGE-REQUEST has length {len(value)}, expected 4", offset)
    flags = value[3]
    return ChangeRequest(bool(flags & CHANGE_IP_FLAG), bool(flags & CHANGE_PORT_FLAG))


def encode_change_request(change: ChangeRequest, transaction_id: bytes) -> bytes:
    change_ip, change_port = change
    flags = (CHANGE_IP_FLAG if change_ip else 0) | (CHANGE_PORT_FLAG if change_port else 0)
    return struct.pack("!I", flags)


def decode_response_port(value: bytes, offset: int, transaction_id: bytes) -> int:
    if len(value) != 4:  # RFC 5780 §7.5: a 16-bit port and 16 bits of padding
        raise StunDecodeError(f"RESPONSE-PORT has length {len(value)}, expected 4", offset)
    return struct.unpack_from("!H", value)[0]


def encode_response_port(port: int, transaction_id: bytes) -> bytes:
    return struct.pack("!HH", port, 0)


Decoder = Callable[[bytes, int, bytes], Any]
Encoder = Callable[[Any, bytes], bytes]

CODECS: dict[int, tuple[Decoder, Encoder]] = {
    MAPPED_ADDRESS: (decode_address, encode_address),
    XOR_MAPPED_ADDRESS: (decode_xor_address, encode_xor_address),
    RESPONSE_ORIGIN: (decode_address, encode_address),
    OTHER_ADDRESS: (decode_address, encode_address),
    USERNAME: (decode_text, encode_text),
    REALM: (decode_text, encode_text),
    NONCE: (decode_text, encode_text),
    SOFTWARE: (decode_text, encode_text),
    MESSAGE_INTEGRITY: (decode_message_integrity, encode_raw),
    MESSAGE_INTEGRITY_SHA256: (decode_message_integrity_sha256, encode_raw),
    FINGERPRINT: (decode_fingerprint, encode_fingerprint),
    ERROR_CODE: (decode_error_code, encode_error_code),
    UNKNOWN_ATTRIBUTES: (decode_unknown_attributes, encode_unknown_attributes),
    CHANGE_REQUEST: (decode_change_request, encode_change_request),
    RESPONSE_PORT: (decode_response_port, encode_response_port),
    PADDING: (decode_raw, encode_raw),
}

KNOWN_TYPES = frozenset(CODECS)


def decode_value(attr_type: int, value: bytes, offset: int, transaction_id: bytes) -> Any:
    """The Python value of one attribute; unknown types stay raw bytes."""
    codec = CODECS.get(attr_type)
    return bytes(value) if codec is None else codec[0](value, offset, transaction_id)


def encode_value(attr_type: int, value: Any, transaction_id: bytes) -> bytes:
    codec = CODECS.get(attr_type)
    return bytes(value) if codec is None else codec[1](value, transaction_id)


def attribute_name(attr_type: int) -> str:
    return NAMES.get(attr_type, f"0x{attr_type:04X}")
