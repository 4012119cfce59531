"""Property tests: the decoder only ever raises StunDecodeError, encode/decode round-trip
exactly for generated messages, and the server core never raises on any datagram."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsprint.stun import attributes as attrs
from netsprint.stun.attributes import ChangeRequest, ErrorCode, StunDecodeError
from netsprint.stun.integrity import (verify_fingerprint, verify_message_integrity,
                                      verify_message_integrity_sha256)
from netsprint.stun.message import Attribute, Message, decode, encode, is_stun
from netsprint.stun.server import AMPLIFICATION_FLOOR_BYTES, StunServerCore

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=300, deadline=None)

# Text as sockets (inet_ntop) write it, which is what the decoder produces: for
# IPv4-mapped IPv6, str(ipaddress) says ::ffff:102:304 where inet_ntop says ::ffff:1.2.3.4.
ips = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: socket.inet_ntop(socket.AF_INET6, ip.packed)),
    st.integers(0, 2**32 - 1).map(  # IPv4-mapped, the odd one out
        lambda n: socket.inet_ntop(socket.AF_INET6, bytes(10) + b"\xff\xff" + n.to_bytes(4, "big"))))
ports = st.integers(0, 65535)
addresses = st.tuples(ips, ports).map(lambda a: attrs.TransportAddress(*a))
texts = st.text(max_size=40)

VALUES = {
    attrs.MAPPED_ADDRESS: addresses, attrs.XOR_MAPPED_ADDRESS: addresses,
    attrs.RESPONSE_ORIGIN: addresses, attrs.OTHER_ADDRESS: addresses,
    attrs.USERNAME: texts, attrs.REALM: texts, attrs.NONCE: texts, attrs.SOFTWARE: texts,
    attrs.ERROR_CODE: st.builds(ErrorCode, st.integers(300, 699), texts),
    attrs.UNKNOWN_ATTRIBUTES: st.lists(ports, max_size=6).map(tuple),
    attrs.CHANGE_REQUEST: st.builds(ChangeRequest, st.booleans(), st.booleans()),
    attrs.RESPONSE_PORT: ports,
    attrs.PADDING: st.binary(max_size=64),
}
UNKNOWN_TYPES = st.integers(0, 0xFFFF).filter(lambda t: t not in attrs.KNOWN_TYPES)

body_attribute = st.one_of(
    *[st.builds(Attribute, st.just(t), values) for t, values in VALUES.items()],
    st.builds(Attribute, UNKNOWN_TYPES, st.binary(max_size=40)))

# What may close a message, in the order RFC 8489 §14.5-14.7 allows.
tail = st.tuples(
    st.lists(st.builds(Attribute, st.just(attrs.MESSAGE_INTEGRITY), st.binary(min_size=20,
                                                                             max_size=20)),
             max_size=1),
    st.lists(st.builds(Attribute, st.just(attrs.MESSAGE_INTEGRITY_SHA256),
                       st.sampled_from([16, 20, 24, 28, 32]).flatmap(
                           lambda n: st.binary(min_size=n, max_size=n))), max_size=1),
    st.lists(st.builds(Attribute, st.just(attrs.FINGERPRINT), st.integers(0, 2**32 - 1)),
             max_size=1),
).map(lambda parts: parts[0] + parts[1] + parts[2])

messages = st.builds(
    lambda method, cls, tid, body, end: Message(method, cls, tid, tuple(body + end)),
    st.integers(0, 0xFFF), st.integers(0, 3), st.binary(min_size=12, max_size=12),
    st.lists(body_attribute, max_size=8), tail)


def decode_or_reject(data: bytes) -> Message | None:
    """Decode; the only acceptable failure is StunDecodeError (anything else propagates)."""
    try:
        return decode(data)
    except StunDecodeError as exc:
        assert 0 <= exc.offset <= len(data)
        return None


@FUZZ
@given(messages)
def test_encode_decode_round_trip(message):
    data = encode(message)
    assert is_stun(data)
    assert decode(data) == message
    assert encode(decode(data)) == data  # and back to the same bytes


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_errors(data):
    stun = is_stun(data)  # the predicate never raises either
    decoded = decode_or_reject(data)
    assert decoded is None or stun
    for verify in (lambda d: verify_message_integrity(d, b"k"),
                   lambda d: verify_message_integrity_sha256(d, b"k"), verify_fingerprint):
        assert verify(data) in (True, False)


@FUZZ
@given(st.integers(0, 0x3FFF), st.binary(max_size=120).map(lambda b: b + b"\0" * (-len(b) % 4)))
def test_random_bodies_behind_a_valid_header(msg_type, body):
    data = struct.pack("!HHI", msg_type, len(body), attrs.MAGIC_COOKIE) + bytes(12) + body
    assert is_stun(data)
    decode_or_reject(data)


@FUZZ
@given(messages, st.data())
def test_mutated_messages_raise_only_decode_errors(message, data):
    raw = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "length"]))
        if kind == "flip" and raw:
            index = data.draw(st.integers(0, len(raw) - 1))
            raw[index] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "truncate":
            del raw[data.draw(st.integers(0, len(raw))):]
        elif kind == "insert":
            index = data.draw(st.integers(0, len(raw)))
            raw[index:index] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "length" and len(raw) >= 4:
            # keep the header consistent so the attribute walk is what gets exercised
            raw[2:4] = struct.pack("!H", max(0, len(raw) - 20) & 0xFFFF)
    decode_or_reject(bytes(raw))


# -- the server core: any datagram in, never an exception out ------------------------------

RFC5780_CORE = StunServerCore(("192.0.2.10", 3478), "192.0.2.11")
SINGLE_CORE = StunServerCore(("192.0.2.10", 3478))
sources = st.sampled_from([("198.51.100.7", 40000), ("2001:db8::7", 40000, 0, 0)])


def assert_answer_is_sane(core: StunServerCore, data: bytes, source) -> None:
    """handle() must not raise; an answer decodes, leaves from one of the server's own
    sockets and stays within the amplification bound."""
    for local in core.local_addresses:
        reply = core.handle(data, source, local)
        if reply is None:
            continue
        response, sender, destination = reply
        decode(response)
        assert sender in core.local_addresses
        assert destination[0] == source[0]
        assert len(response) <= max(AMPLIFICATION_FLOOR_BYTES, len(data))


@FUZZ
@given(messages, sources, st.data())
def test_server_core_survives_any_request(message, source, data):
    raw = bytearray(encode(message))
    if data.draw(st.booleans()) and len(raw) > 20:  # and a bit flipped past the header
        index = data.draw(st.integers(20, len(raw) - 1))
        raw[index] ^= 1 << data.draw(st.integers(0, 7))
    for core in (RFC5780_CORE, SINGLE_CORE):
        assert_answer_is_sane(core, bytes(raw), source)


@FUZZ
@given(st.binary(max_size=120), sources)
def test_server_core_survives_any_bytes(data, source):
    for core in (RFC5780_CORE, SINGLE_CORE):
        assert_answer_is_sane(core, data, source)
