"""MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (CRC-32).

Always over the bytes as received: the MAC covers the sender's padding bytes, whatever
they are (RFC 5769's vectors pad with spaces), so a check over a re-encoding would fail.
For each, the header's length field is taken as if the attribute were the last one
(RFC 8489 §14.5-14.7), and the MAC is compared in constant time (`hmac.compare_digest`),
so a forger cannot learn the MAC byte by byte from response timing.

Keys (RFC 8489 §9.1.1, §9.2.2): short-term = SASLprep(password) as UTF-8; long-term =
MD5(username ":" realm ":" SASLprep(password)).
"""

from __future__ import annotations

import hashlib
import hmac
import stringprep
import struct
import unicodedata
import zlib

from netsprint.errors import NetsprintError
from netsprint.stun import attributes as attrs
from netsprint.stun.attributes import StunDecodeError
from netsprint.stun.message import HEADER_BYTES, append_attribute, is_stun, iter_attributes

SHA256_MAC_BYTES = 32  # what we send: the untruncated HMAC-SHA256
FINGERPRINT_TLV_BYTES = 4 + 4


class SaslprepError(NetsprintError, ValueError):
    """A string SASLprep (RFC 4013) prohibits, e.g. a control character in a password."""


# -- keys ----------------------------------------------------------------------------------

_PROHIBITED = (stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
               stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
               stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
               stringprep.in_table_c9)


def saslprep(text: str) -> str:
    """RFC 4013 (query profile: unassigned code points allowed)."""
    # §2.1 map: non-ASCII spaces to SPACE, "commonly mapped to nothing" (B.1) to nothing.
    mapped = "".join(" " if stringprep.in_table_c12(c) else c
                     for c in text if not stringprep.in_table_b1(c))
    normal = unicodedata.normalize("NFKC", mapped)  # §2.2
    for position, char in enumerate(normal):  # §2.3
        if any(table(char) for table in _PROHIBITED):
            raise SaslprepError(f"SASLprep prohibits U+{ord(char):04X} at position {position}")
    _check_bidi(normal)
    return normal


def _check_bidi(text: str) -> None:
    """RFC 3454 §6: right-to-left text must not mix in left-to-right characters and must
    begin and end with a right-to-left character."""
    if not any(stringprep.in_table_d1(c) for c in text):
        return
    if any(stringprep.in_table_d2(c) for c in text):
        raise SaslprepError("SASLprep: mixed right-to-left and left-to-right text")
    if not (stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])):
        raise SaslprepError("SASLprep: right-to-left text must start and end right-to-left")


def short_term_key(password: str) -> bytes:
    return saslprep(password).encode("utf-8")


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """RFC 8489 §9.2.2: MD5 is what the RFC specifies here, not a choice of ours."""
    text = f"{username}:{realm}:{saslprep(password)}".encode("utf-8")
    return hashlib.md5(text).digest()


# -- finding attributes in received bytes --------------------------------------------------

def find_attribute(data: bytes, attr_type: int) -> tuple[int, int] | None:
    """(offset of the first TLV of this type, its value length), or None if absent or the
    bytes are not a well-formed message (decode them to learn why). The header's length
    must match: the MACs replace that field, so they cannot notice it was changed."""
    if not is_stun(data):
        return None
    try:
        for pos, found_type, value_len in iter_attributes(data, len(data)):
            if found_type == attr_type:
                return pos, value_len
    except StunDecodeError:
        return None
    return None


def _with_length(data: bytes, upto: int, tlv_bytes: int) -> bytes:
    """data[:upto] with the header length set as if a `tlv_bytes` attribute came next."""
    length = upto - HEADER_BYTES + tlv_bytes
    return data[:2] + struct.pack("!H", length) + data[4:upto]


def _mac(digest: str, data: bytes, upto: int, key: bytes, mac_bytes: int) -> bytes:
    """HMAC over data[:upto], the length field counting a `mac_bytes` MAC attribute as sent
    (truncated or not), cut to `mac_bytes`."""
    return hmac.new(key, _with_length(data, upto, 4 + mac_bytes), digest).digest()[:mac_bytes]


def _crc(data: bytes, upto: int) -> int:
    return zlib.crc32(_with_length(data, upto, FINGERPRINT_TLV_BYTES)) ^ attrs.FINGERPRINT_XOR


# -- verifying -----------------------------------------------------------------------------

def verify_message_integrity(data: bytes, key: bytes) -> bool:
    """True if the first MESSAGE-INTEGRITY matches HMAC-SHA1(key) of what precedes it."""
    found = find_attribute(data, attrs.MESSAGE_INTEGRITY)
    if found is None or found[1] != attrs.HMAC_SHA1_BYTES:
        return False
    return _mac_matches("sha1", data, found, key)


def verify_message_integrity_sha256(data: bytes, key: bytes) -> bool:
    """RFC 8489 §14.6: the value may be the HMAC-SHA256 truncated to 16..32 bytes."""
    found = find_attribute(data, attrs.MESSAGE_INTEGRITY_SHA256)
    if found is None or not attrs.is_sha256_mac_length(found[1]):
        return False
    return _mac_matches("sha256", data, found, key)


def _mac_matches(digest: str, data: bytes, found: tuple[int, int], key: bytes) -> bool:
    pos, mac_bytes = found
    return hmac.compare_digest(_mac(digest, data, pos, key, mac_bytes),
                               data[pos + 4:pos + 4 + mac_bytes])


def verify_fingerprint(data: bytes) -> bool:
    """True if a FINGERPRINT is present, last, and equals CRC-32 ^ 0x5354554E."""
    found = find_attribute(data, attrs.FINGERPRINT)
    if found is None or found[1] != 4:
        return False
    pos = found[0]
    if pos + FINGERPRINT_TLV_BYTES != len(data):
        return False
    return _crc(data, pos) == struct.unpack_from("!I", data, pos + 4)[0]


# -- adding --------------------------------------------------------------------------------

def add_message_integrity(data: bytes, key: bytes) -> bytes:
    mac = _mac("sha1", data, len(data), key, attrs.HMAC_SHA1_BYTES)
    return append_attribute(data, attrs.MESSAGE_INTEGRITY, mac)


def add_message_integrity_sha256(data: bytes, key: bytes) -> bytes:
    mac = _mac("sha256", data, len(data), key, SHA256_MAC_BYTES)
    return append_attribute(data, attrs.MESSAGE_INTEGRITY_SHA256, mac)


def add_fingerprint(data: bytes) -> bytes:
    return append_attribute(data, attrs.FINGERPRINT, _crc(data, len(data)))


def protect(data: bytes, *, integrity_key: bytes | None = None,
            integrity_sha256_key: bytes | None = None, fingerprint: bool = False) -> bytes:
    """Append MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, in the order
    RFC 8489 §14.5-14.7 requires, to an encoded message."""
    if integrity_key is not None:
        data = add_message_integrity(data, integrity_key)
    if integrity_sha256_key is not None:
        data = add_message_integrity_sha256(data, integrity_sha256_key)
    if fingerprint:
        data = add_fingerprint(data)
    return data
