"""The STUN codec: message types, attribute values, and one failing case per receive rule."""

from __future__ import annotations

import struct

import pytest

from netsprint.errors import DecodeError, NetsprintError
from netsprint.stun import attributes as attrs
from netsprint.stun.attributes import ChangeRequest, ErrorCode, StunDecodeError
from netsprint.stun.integrity import (SaslprepError, add_fingerprint, protect, saslprep,
                                      verify_fingerprint, verify_message_integrity,
                                      verify_message_integrity_sha256)
from netsprint.stun.message import (BINDING, ERROR_RESPONSE, INDICATION, REQUEST,
                                    SUCCESS_RESPONSE, Attribute, Message, binding_request,
                                    decode, encode, is_stun, message_type,
                                    split_message_type)

pytestmark = pytest.mark.unit

TID = bytes(range(12))
COOKIE = bytes.fromhex("2112a442")


def header(msg_type: int = 0x0001, length: int = 0, cookie: bytes = COOKIE,
           tid: bytes = TID) -> bytes:
    return struct.pack("!HH", msg_type, length) + cookie + tid


def tlv(attr_type: int, value: bytes, pad: bytes = b"\0") -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + pad * (-len(value) % 4)


def message_bytes(*tlvs: bytes, msg_type: int = 0x0001) -> bytes:
    body = b"".join(tlvs)
    return header(msg_type, len(body)) + body


# -- message type ----------------------------------------------------------------------------

@pytest.mark.parametrize("method, msg_class, wire", [
    (BINDING, REQUEST, 0x0001), (BINDING, INDICATION, 0x0011),
    (BINDING, SUCCESS_RESPONSE, 0x0101), (BINDING, ERROR_RESPONSE, 0x0111),
    (0xFFF, ERROR_RESPONSE, 0x3FFF), (0x003, REQUEST, 0x0003)])  # 0x003: TURN Allocate
def test_message_type_interleaves_class_bits(method, msg_class, wire):
    assert message_type(method, msg_class) == wire
    assert split_message_type(wire) == (method, msg_class)


# -- the predicate ---------------------------------------------------------------------------

def test_is_stun_accepts_a_binding_request():
    assert is_stun(encode(binding_request(transaction_id=TID)))


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 19, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    header(msg_type=0x4001), header(cookie=b"\0\0\0\0"), header(length=4),
    header(length=2) + b"\0\0"])
def test_is_stun_rejects(data):
    assert not is_stun(data)


# -- receive rules: each one has a failing case ----------------------------------------------

@pytest.mark.parametrize("data, offset, words", [
    (header()[:19], 19, "shorter than the 20-byte header"),
    (header(msg_type=0x8001), 0, "top two bits"),
    (header(msg_type=0x4001), 0, "top two bits"),
    (header(cookie=b"\x21\x12\xa4\x43"), 4, "magic cookie"),
    (header(length=2) + b"\0\0", 2, "multiple of 4"),
    (header(length=8) + b"\0" * 4, 2, "bytes follow the header"),
    (header(length=0) + b"\0" * 4, 2, "bytes follow the header"),
])
def test_header_rules(data, offset, words):
    with pytest.raises(StunDecodeError) as caught:
        decode(data)
    assert caught.value.offset == offset
    assert words in caught.value.reason


def test_attribute_value_overrunning_the_message_is_rejected():
    data = header(length=8) + struct.pack("!HH", attrs.SOFTWARE, 5) + b"abcd"
    with pytest.raises(StunDecodeError, match="overruns") as caught:
        decode(data)
    assert caught.value.offset == 22


def test_attribute_padding_overrunning_the_message_is_rejected():
    # value of 1 byte fits, but its 3 padding bytes do not
    data = header(length=8) + struct.pack("!HH", attrs.SOFTWARE, 1) + b"a\0\0\0"
    assert decode(data).get(attrs.SOFTWARE) == "a"  # control: exactly fits
    data = header(length=4) + struct.pack("!HH", attrs.SOFTWARE, 1)
    with pytest.raises(StunDecodeError, match="overruns"):
        decode(data)


def test_fingerprint_must_be_last():
    data = message_bytes(tlv(attrs.FINGERPRINT, b"\0\0\0\0"), tlv(attrs.SOFTWARE, b"late"))
    with pytest.raises(StunDecodeError, match="FINGERPRINT is not the last") as caught:
        decode(data)
    assert caught.value.offset == 28


@pytest.mark.parametrize("attr_type, value, words", [
    (attrs.XOR_MAPPED_ADDRESS, b"\x00\x03\x00\x01" + b"\0" * 4, "unknown address family"),
    (attrs.MAPPED_ADDRESS, b"\x00\x01\x00\x01" + b"\0" * 16, "expected 8"),
    (attrs.OTHER_ADDRESS, b"\x00\x02\x00\x01" + b"\0" * 4, "expected 20"),
    (attrs.RESPONSE_ORIGIN, b"\x00\x01", "shorter than 4"),
    (attrs.MESSAGE_INTEGRITY, b"\0" * 16, "expected 20"),
    (attrs.MESSAGE_INTEGRITY_SHA256, b"\0" * 12, "SHA256 has length 12"),
    (attrs.FINGERPRINT, b"\0" * 8, "expected 4"),
    (attrs.ERROR_CODE, b"\0\0\x07\x00", "out of range"),
    (attrs.ERROR_CODE, b"\0\0\x04\x64", "out of range"),
    (attrs.ERROR_CODE, b"\0\0\x04", "shorter than 4"),
    (attrs.UNKNOWN_ATTRIBUTES, b"\0\x01\0", "odd"),
    (attrs.CHANGE_REQUEST, b"\0\0\0\0\0\0\0\0", "expected 4"),
    (attrs.RESPONSE_PORT, b"\x12\x34", "expected 4"),
    (attrs.USERNAME, b"\xff\xfe", "not UTF-8"),
])
def test_attribute_value_rules(attr_type, value, words):
    with pytest.raises(StunDecodeError, match=words):
        decode(message_bytes(tlv(attr_type, value)))


def test_decode_error_is_a_value_error_and_a_netsprint_error():
    with pytest.raises(ValueError):
        decode(b"short")
    assert issubclass(StunDecodeError, DecodeError)
    assert issubclass(StunDecodeError, NetsprintError)


# -- receive leniency the RFCs require -------------------------------------------------------

def test_nonzero_padding_is_accepted_and_ignored():
    data = message_bytes(tlv(attrs.USERNAME, b"abcde", pad=b"\x20"))
    assert data.endswith(b"abcde   ")
    assert decode(data).get(attrs.USERNAME) == "abcde"


def test_attributes_after_message_integrity_are_ignored_except_fingerprint():
    data = message_bytes(tlv(attrs.SOFTWARE, b"kept"), tlv(attrs.MESSAGE_INTEGRITY, b"\1" * 20),
                         tlv(attrs.USERNAME, b"ignored"),
                         tlv(attrs.MESSAGE_INTEGRITY_SHA256, b"\2" * 32),
                         tlv(attrs.REALM, b"ignored too"), tlv(attrs.FINGERPRINT, b"\3" * 4))
    types = [a.type for a in decode(data).attributes]
    assert types == [attrs.SOFTWARE, attrs.MESSAGE_INTEGRITY, attrs.MESSAGE_INTEGRITY_SHA256,
                     attrs.FINGERPRINT]


def test_duplicate_attributes_are_kept_and_get_returns_the_first():
    message = decode(message_bytes(tlv(attrs.SOFTWARE, b"one"), tlv(attrs.SOFTWARE, b"two")))
    assert message.get(attrs.SOFTWARE) == "one"
    assert message.get_all(attrs.SOFTWARE) == ["one", "two"]


def test_unknown_attributes_stay_raw_and_required_ones_are_reported():
    message = decode(message_bytes(tlv(0x7F01, b"\xaa"), tlv(0xC001, b"\xbb\xcc"),
                                   tlv(0x7F01, b"\xdd"), tlv(0x0002, b"")))
    assert message.get(0x7F01) == b"\xaa"
    assert message.get(0xC001) == b"\xbb\xcc"
    assert message.unknown_comprehension_required() == (0x7F01, 0x0002)


# -- values round-trip -----------------------------------------------------------------------

@pytest.mark.parametrize("attribute", [
    Attribute(attrs.XOR_MAPPED_ADDRESS, ("192.0.2.1", 32853)),
    Attribute(attrs.XOR_MAPPED_ADDRESS, ("2001:db8::1", 1)),
    Attribute(attrs.MAPPED_ADDRESS, ("203.0.113.9", 65535)),
    Attribute(attrs.MAPPED_ADDRESS, ("::1", 0)),
    Attribute(attrs.RESPONSE_ORIGIN, ("198.51.100.1", 3478)),
    Attribute(attrs.OTHER_ADDRESS, ("198.51.100.2", 3479)),
    Attribute(attrs.USERNAME, "evtj:h6vY"),
    Attribute(attrs.REALM, "example.org"),
    Attribute(attrs.NONCE, "f//499k954d6OL34oL9FSTvy64sA"),
    Attribute(attrs.SOFTWARE, "netsprint \u2713"),
    Attribute(attrs.ERROR_CODE, ErrorCode(420, "Unknown Attribute")),
    Attribute(attrs.ERROR_CODE, ErrorCode(699, "")),
    Attribute(attrs.UNKNOWN_ATTRIBUTES, (0x0024, 0x7FFF, 0x0003)),
    Attribute(attrs.CHANGE_REQUEST, ChangeRequest(True, False)),
    Attribute(attrs.CHANGE_REQUEST, ChangeRequest(False, True)),
    Attribute(attrs.RESPONSE_PORT, 40000),
    Attribute(attrs.PADDING, bytes(13)),
    Attribute(attrs.MESSAGE_INTEGRITY, bytes(range(20))),
    Attribute(attrs.MESSAGE_INTEGRITY_SHA256, bytes(range(16))),
    Attribute(attrs.FINGERPRINT, 0xDEADBEEF),
    Attribute(0xBEEF, b"raw"),
])
def test_attribute_round_trips(attribute):
    message = Message(BINDING, SUCCESS_RESPONSE, TID, (attribute,))
    data = encode(message)
    assert len(data) % 4 == 0
    assert decode(data) == message


def test_xor_mapped_address_wire_bytes_for_ipv4():
    data = encode(Message(BINDING, SUCCESS_RESPONSE, TID,
                          (Attribute(attrs.XOR_MAPPED_ADDRESS, ("192.0.2.1", 32853)),)))
    assert data[20:] == bytes.fromhex("002000080001a147e112a643")  # as in RFC 5769 §2.2


def test_change_request_flag_bits():
    data = encode(binding_request([Attribute(attrs.CHANGE_REQUEST, ChangeRequest(True, True))],
                                  TID))
    assert data[-4:] == b"\0\0\0\x06"  # RFC 5780 §7.2: A = 0x4 change IP, B = 0x2 port


def test_encoder_writes_zero_padding():
    data = encode(binding_request([Attribute(attrs.SOFTWARE, "abcde")], TID))
    assert data[-3:] == b"\0\0\0"


def test_encoder_refuses_a_bad_transaction_id():
    with pytest.raises(ValueError):
        encode(Message(BINDING, REQUEST, b"short"))


@pytest.mark.parametrize("code", [299, 700, 1000])
def test_encoder_refuses_an_error_code_no_decoder_would_accept(code):
    # RFC 8489 §14.8: the class (hundreds digit) is 3..6; anything else could only be
    # sent, never received, so it must fail where it is made.
    with pytest.raises(ValueError):
        encode(Message(BINDING, ERROR_RESPONSE, TID,
                       (Attribute(attrs.ERROR_CODE, ErrorCode(code, "x")),)))


# -- integrity -------------------------------------------------------------------------------

def test_protect_then_verify():
    data = protect(encode(binding_request([Attribute(attrs.USERNAME, "u")], TID)),
                   integrity_key=b"k1", integrity_sha256_key=b"k2", fingerprint=True)
    types = [a.type for a in decode(data).attributes]
    assert types[-3:] == [attrs.MESSAGE_INTEGRITY, attrs.MESSAGE_INTEGRITY_SHA256,
                          attrs.FINGERPRINT]
    assert verify_message_integrity(data, b"k1")
    assert verify_message_integrity_sha256(data, b"k2")
    assert verify_fingerprint(data)
    assert not verify_message_integrity(data, b"k2")
    assert not verify_message_integrity_sha256(data, b"k1")


def test_fingerprint_not_last_does_not_verify():
    data = add_fingerprint(encode(binding_request(transaction_id=TID)))
    assert verify_fingerprint(data)
    tail = tlv(attrs.SOFTWARE, b"x")
    moved = data[:2] + struct.pack("!H", len(data) - 20 + len(tail)) + data[4:] + tail
    assert not verify_fingerprint(moved)


def test_missing_integrity_does_not_verify():
    data = encode(binding_request(transaction_id=TID))
    assert not verify_message_integrity(data, b"key")
    assert not verify_fingerprint(data)


def test_saslprep_maps_and_prohibits():
    assert saslprep("I\u00adX") == "IX"           # RFC 4013 §3 example: soft hyphen
    assert saslprep("user\u00a0name") == "user name"  # non-ASCII space to SPACE
    assert saslprep("\u2168") == "IX"             # NFKC
    with pytest.raises(SaslprepError):
        saslprep("a\u0007b")                      # RFC 4013 §3 example: control char
    with pytest.raises(SaslprepError):
        saslprep("\u0627\u0031")                  # RFC 4013 §3 example: bidi rule
