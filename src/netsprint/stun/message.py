"""STUN messages: the 20-byte header, the attribute walk and the receive rules.

    0                   1                   2                   3
    |0 0|  STUN Message Type (14 bits) |        Message Length          |
    |                    Magic Cookie 0x2112A442                        |
    |                  Transaction ID (96 bits)                         |

Receive rules (RFC 8489 §5, §6.3, §14), each a `StunDecodeError` with the offset:
the top two bits are zero; the cookie is 0x2112A442; the length is a multiple of 4 and
equals the datagram's length - 20; no attribute (value + padding) overruns the message;
FINGERPRINT is the last attribute. Attributes after MESSAGE-INTEGRITY are ignored except
MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (§14.5, §14.6). Padding bytes may hold anything
(RFC 5769's vectors pad with spaces): they are skipped, never checked. `is_stun` is the
cheap predicate for "is this STUN at all" (header only); it never raises.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

from netsprint.stun import attributes as attrs
from netsprint.stun.attributes import MAGIC_COOKIE, StunDecodeError

HEADER_BYTES = 20
TRANSACTION_ID_BYTES = 12

BINDING = 0x001

REQUEST = 0b00
INDICATION = 0b01
SUCCESS_RESPONSE = 0b10
ERROR_RESPONSE = 0b11
CLASS_NAMES = {REQUEST: "request", INDICATION: "indication",
               SUCCESS_RESPONSE: "success response", ERROR_RESPONSE: "error response"}

# The 20-byte header: message type, length, magic cookie, transaction id.
HEADER_STRUCT = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")

# What may follow MESSAGE-INTEGRITY (RFC 8489 §14.5) / MESSAGE-INTEGRITY-SHA256 (§14.6).
_ALLOWED_AFTER = {
    attrs.MESSAGE_INTEGRITY: frozenset({attrs.MESSAGE_INTEGRITY_SHA256, attrs.FINGERPRINT}),
    attrs.MESSAGE_INTEGRITY_SHA256: frozenset({attrs.FINGERPRINT}),
}


class Attribute(NamedTuple):
    """One attribute: its type and its decoded value (see attributes.py for the types)."""

    type: int
    value: Any


def message_type(method: int, msg_class: int) -> int:
    """RFC 8489 §5: the class bits C1 C0 sit between the method bits M11..M0."""
    return ((method & 0xF80) << 2) | ((method & 0x070) << 1) | (method & 0x00F) \
        | ((msg_class & 0b10) << 7) | ((msg_class & 0b01) << 4)


def split_message_type(msg_type: int) -> tuple[int, int]:
    """(method, class) from the 14-bit message type."""
    method = ((msg_type & 0x3E00) >> 2) | ((msg_type & 0x00E0) >> 1) | (msg_type & 0x000F)
    msg_class = ((msg_type & 0x0100) >> 7) | ((msg_type & 0x0010) >> 4)
    return method, msg_class


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded STUN message; owns its attributes in wire order (duplicates kept)."""

    method: int
    msg_class: int
    transaction_id: bytes
    attributes: tuple[Attribute, ...] = ()

    def get(self, attr_type: int, default: Any = None) -> Any:
        """The first attribute of this type (RFC 8489 §14: later duplicates are ignored)."""
        for attribute in self.attributes:
            if attribute.type == attr_type:
                return attribute.value
        return default

    def get_all(self, attr_type: int) -> list[Any]:
        return [a.value for a in self.attributes if a.type == attr_type]

    def __contains__(self, attr_type: int) -> bool:
        return any(a.type == attr_type for a in self.attributes)

    def unknown_comprehension_required(self) -> tuple[int, ...]:
        """Types below 0x8000 this codec does not understand: a request with any gets a
        420 listing them (RFC 8489 §6.3.1)."""
        seen: list[int] = []
        for attribute in self.attributes:
            if (attrs.is_comprehension_required(attribute.type)
                    and attribute.type not in attrs.KNOWN_TYPES and attribute.type not in seen):
                seen.append(attribute.type)
        return tuple(seen)

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.msg_class]

    def __repr__(self) -> str:
        names = ", ".join(attrs.attribute_name(a.type) for a in self.attributes)
        return (f"<Message method={self.method:#05x} {self.class_name} "
                f"tid={self.transaction_id.hex()} [{names}]>")


def new_transaction_id() -> bytes:
    """96 random bits (RFC 8489 §6: "uniformly and randomly chosen")."""
    return os.urandom(TRANSACTION_ID_BYTES)


def binding_request(attributes: tuple[Attribute, ...] | list[Attribute] = (),
                    transaction_id: bytes | None = None) -> Message:
    return Message(BINDING, REQUEST, transaction_id or new_transaction_id(), tuple(attributes))


# -- receiving -----------------------------------------------------------------------------

def is_stun(data: bytes) -> bool:
    """Could this datagram be STUN? Header checks only, so it is cheap and never raises;
    `decode` still applies every other receive rule."""
    if len(data) < HEADER_BYTES:
        return False
    msg_type, length, cookie, _ = HEADER_STRUCT.unpack_from(data)
    return (msg_type & 0xC000 == 0 and cookie == MAGIC_COOKIE and length & 3 == 0
            and length == len(data) - HEADER_BYTES)


def _check_header(data: bytes) -> tuple[int, int, bytes]:
    if len(data) < HEADER_BYTES:
        raise StunDecodeError(f"{len(data)} bytes is shorter than the 20-byte header",
                              len(data))
    msg_type, length, cookie, transaction_id = HEADER_STRUCT.unpack_from(data)
    if msg_type & 0xC000:
        raise StunDecodeError("top two bits of the message type are not zero", 0)
    if cookie != MAGIC_COOKIE:
        raise StunDecodeError(f"magic cookie is {cookie:#010x}, not 0x2112a442", 4)
    if length & 3:
        raise StunDecodeError(f"message length {length} is not a multiple of 4", 2)
    if length != len(data) - HEADER_BYTES:
        raise StunDecodeError(f"message length {length} but {len(data) - HEADER_BYTES} "
                              "bytes follow the header", 2)
    return msg_type, length, transaction_id


def iter_attributes(data: bytes, end: int) -> Iterator[tuple[int, int, int]]:
    """(offset of the TLV, type, value length) for each attribute, bounds-checked."""
    pos = HEADER_BYTES
    while pos < end:
        if end - pos < 4:
            raise StunDecodeError("attribute header overruns the message", pos)
        attr_type, value_len = _ATTR_HEADER.unpack_from(data, pos)
        if pos + 4 + ((value_len + 3) & ~3) > end:
            raise StunDecodeError(f"{attrs.attribute_name(attr_type)} value of {value_len} "
                                  "bytes overruns the message", pos + 2)
        yield pos, attr_type, value_len
        pos += 4 + ((value_len + 3) & ~3)


def decode(data: bytes) -> Message:
    """Decode one datagram, applying every receive rule; raises StunDecodeError.

    MESSAGE-INTEGRITY and FINGERPRINT are decoded, not verified: verify them with
    `integrity.verify_*` over these same received bytes."""
    data = bytes(data)
    msg_type, length, transaction_id = _check_header(data)
    end = HEADER_BYTES + length
    found: list[Attribute] = []
    allowed: frozenset[int] | None = None  # after MESSAGE-INTEGRITY: what still counts
    seen_fingerprint = False
    for pos, attr_type, value_len in iter_attributes(data, end):
        if seen_fingerprint:
            raise StunDecodeError("FINGERPRINT is not the last attribute", pos)
        if allowed is not None and attr_type not in allowed:
            continue  # RFC 8489 §14.5: ignored after MESSAGE-INTEGRITY
        value = attrs.decode_value(attr_type, data[pos + 4:pos + 4 + value_len], pos + 4,
                                   transaction_id)
        found.append(Attribute(attr_type, value))
        seen_fingerprint = attr_type == attrs.FINGERPRINT
        allowed = _ALLOWED_AFTER.get(attr_type, allowed)
    method, msg_class = split_message_type(msg_type)
    return Message(method, msg_class, transaction_id, tuple(found))


# -- sending -------------------------------------------------------------------------------

def encode_attribute(attr_type: int, value: Any, transaction_id: bytes) -> bytes:
    """One TLV with zero padding (RFC 8489 §14: senders MUST pad with zeros)."""
    body = attrs.encode_value(attr_type, value, transaction_id)
    if len(body) > 0xFFFF:
        raise ValueError(f"{attrs.attribute_name(attr_type)} value is {len(body)} bytes")
    return _ATTR_HEADER.pack(attr_type, len(body)) + body + b"\0" * (-len(body) % 4)


def append_attribute(data: bytes, attr_type: int, value: bytes) -> bytes:
    """Encoded message bytes with one more TLV at the end and the header's length to match,
    leaving every earlier byte as it is (MACs and FINGERPRINT cover exactly those bytes)."""
    tlv = encode_attribute(attr_type, value, data[8:HEADER_BYTES])
    return data[:2] + struct.pack("!H", len(data) - HEADER_BYTES + len(tlv)) + data[4:] + tlv


def encode(message: Message) -> bytes:
    """The message's bytes, attributes as given, zero padding. To append
    MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT, pass these bytes to `integrity.protect`."""
    tid = message.transaction_id
    if len(tid) != TRANSACTION_ID_BYTES:
        raise ValueError(f"transaction id must be 12 bytes, not {len(tid)}")
    body = b"".join(encode_attribute(a.type, a.value, tid) for a in message.attributes)
    if len(body) > 0xFFFF:
        raise ValueError(f"message body is {len(body)} bytes, more than the 16-bit length")
    return HEADER_STRUCT.pack(message_type(message.method, message.msg_class), len(body),
                        MAGIC_COOKIE, tid) + body
