"""Signaling messages: the exact wire bytes, round trips, and every validation rule."""

from __future__ import annotations

import json
import typing

import pytest

import netsprint.signaling
from netsprint.errors import DecodeError
from netsprint.signaling import protocol as p
from netsprint.signaling.protocol import (Answer, Candidate, CandidateAddr, Endpoint, Error,
                                          Heartbeat, HeartbeatAck, MessageError, Offer,
                                          PeerLeft, Register, Registered, RelayGranted,
                                          RelayRequest, decode_message, encode_message)

pytestmark = pytest.mark.unit

SRFLX = CandidateAddr("203.0.113.5", 40000, "srflx")
HOST6 = CandidateAddr("2001:db8::7", 5000, "host")
SESSION = "0123456789abcdef"
TOKEN = "00112233445566778899aabbccddeeff"

EVERY_MESSAGE = [
    Register("alice"),
    Registered("alice", Endpoint("127.0.0.1", 51234)),
    Offer("bob", (SRFLX,)),
    Offer("bob", (SRFLX, HOST6), session="s-1", from_="alice"),
    Answer("alice", (CandidateAddr("198.51.100.9", 1, "relay"),), from_="bob"),
    Candidate("bob", HOST6, session="s-1"),
    Heartbeat(7),
    HeartbeatAck(0),
    Error("unknown_peer", "no peer 'carol' is registered", ref="offer"),
    Error("bad_json", "payload is not JSON"),
    PeerLeft("alice"),
    Offer("bob", (SRFLX,), session=SESSION, mapping="address-and-port-dependent"),
    Answer("alice", (HOST6,), from_="bob", mapping="endpoint-independent"),
    Offer("bob", (SRFLX,), mapping="address-dependent"),
    RelayRequest("bob", SESSION),
    RelayRequest("bob", SESSION.upper()),
    RelayGranted(SESSION, TOKEN, Endpoint("127.0.0.1", 7001), 600.0),
    RelayGranted(SESSION, TOKEN.upper(), Endpoint("::1", 1), 0.25),
]


@pytest.mark.parametrize("msg", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg):
    assert decode_message(encode_message(msg)) == msg


def test_the_wire_bytes_are_compact_json_in_a_fixed_order():
    assert encode_message(Register("alice")) == b'{"v":1,"type":"register","peer_id":"alice"}'
    assert encode_message(Registered("alice", Endpoint("127.0.0.1", 51234))) == (
        b'{"v":1,"type":"registered","peer_id":"alice",'
        b'"observed":{"ip":"127.0.0.1","port":51234}}')
    assert encode_message(Offer("bob", (SRFLX,), from_="alice")) == (
        b'{"v":1,"type":"offer","to":"bob","candidates":'
        b'[{"ip":"203.0.113.5","port":40000,"kind":"srflx"}],"from":"alice"}')
    assert encode_message(Heartbeat(7)) == b'{"v":1,"type":"heartbeat","seq":7}'
    assert encode_message(Error("version", "v must be 1")) == (
        b'{"v":1,"type":"error","code":"version","reason":"v must be 1"}')


def test_the_relay_messages_and_mapping_on_the_wire():
    assert encode_message(RelayRequest("bob", SESSION)) == (
        b'{"v":1,"type":"relay_request","to":"bob","session":"0123456789abcdef"}')
    assert encode_message(RelayGranted(SESSION, TOKEN, Endpoint("127.0.0.1", 7001), 600.0)) == (
        b'{"v":1,"type":"relay_granted","session":"0123456789abcdef",'
        b'"token":"00112233445566778899aabbccddeeff",'
        b'"relay":{"ip":"127.0.0.1","port":7001},"lifetime":600.0}')
    assert encode_message(Answer("alice", (SRFLX,), mapping="endpoint-independent")) == (
        b'{"v":1,"type":"answer","to":"alice","candidates":'
        b'[{"ip":"203.0.113.5","port":40000,"kind":"srflx"}],"mapping":"endpoint-independent"}')
    assert b"mapping" not in encode_message(Offer("bob", (SRFLX,), session=SESSION))


def test_an_integer_lifetime_decodes_as_seconds():
    msg = decode_message(b'{"v":1,"type":"relay_granted","session":"0123456789abcdef",'
                         b'"token":"00112233445566778899aabbccddeeff",'
                         b'"relay":{"ip":"192.0.2.1","port":3478},"lifetime":30}')
    assert msg.lifetime == 30.0 and isinstance(msg.lifetime, float)


def test_non_ascii_text_is_sent_as_utf8():
    payload = encode_message(Offer("bob", (SRFLX,), session="会话"))
    assert "会话".encode() in payload
    assert decode_message(payload).session == "会话"


def test_documented_examples_decode():
    assert decode_message(b'{"v":1,"type":"offer","to":"bob","candidates":'
                          b'[{"ip":"203.0.113.5","port":40000,"kind":"srflx"}]}') \
        == Offer("bob", (SRFLX,))
    assert decode_message(b'{"v":1,"type":"candidate","to":"bob","candidate":'
                          b'{"ip":"203.0.113.5","port":40000,"kind":"srflx"}}') \
        == Candidate("bob", SRFLX)


def test_unknown_extra_fields_are_ignored():
    msg = decode_message(b'{"v":1,"type":"heartbeat","seq":3,"future":{"x":[1,2]}}')
    assert msg == Heartbeat(3)
    msg = decode_message(b'{"v":1,"type":"candidate","to":"bob","candidate":'
                         b'{"ip":"::1","port":9,"kind":"host","priority":5}}')
    assert msg == Candidate("bob", CandidateAddr("::1", 9, "host"))


def test_null_optional_fields_mean_absent():
    msg = decode_message(b'{"v":1,"type":"offer","to":"bob","session":null,"from":null,'
                         b'"candidates":[{"ip":"192.0.2.1","port":5,"kind":"host"}]}')
    assert msg.session is None and msg.from_ is None


def _offer(**changes):
    obj = {"v": 1, "type": "offer", "to": "bob",
           "candidates": [{"ip": "203.0.113.5", "port": 40000, "kind": "srflx"}]}
    obj.update(changes)
    return json.dumps(obj).encode()


def _with_candidate(**changes):
    cand = {"ip": "203.0.113.5", "port": 40000, "kind": "srflx"}
    cand.update(changes)
    return _offer(candidates=[cand])


def _relay_request(**changes):
    obj = {"v": 1, "type": "relay_request", "to": "bob", "session": SESSION}
    obj.update(changes)
    return json.dumps(obj).encode()


def _relay_granted(**changes):
    obj = {"v": 1, "type": "relay_granted", "session": SESSION, "token": TOKEN,
           "relay": {"ip": "127.0.0.1", "port": 7001}, "lifetime": 600.0}
    obj.update(changes)
    return json.dumps(obj).encode()


def _without(payload: bytes, field: str) -> bytes:
    obj = json.loads(payload)
    del obj[field]
    return json.dumps(obj).encode()


# (payload, code, a word the reason must contain, ref)
INVALID = [
    (b"\xff\xfe{}", "bad_json", "UTF-8", None),
    (b"{not json", "bad_json", "JSON", None),
    (b"", "bad_json", "JSON", None),
    (b"[1,2]", "bad_json", "list", None),
    (b'"register"', "bad_json", "str", None),
    (b'{"v":1,"type":"heartbeat","seq":NaN}', "bad_json", "NaN", None),
    (b"[" * 100_000, "bad_json", "JSON", None),
    (b'{"type":"register","peer_id":"a"}', "version", "version", "register"),
    (b'{"v":2,"type":"register","peer_id":"a"}', "version", "version", "register"),
    (b'{"v":true,"type":"register","peer_id":"a"}', "version", "version", "register"),
    (b'{"v":1.0,"type":"register","peer_id":"a"}', "version", "version", "register"),
    (b'{"v":"1","type":"register","peer_id":"a"}', "version", "version", "register"),
    (b'{"v":1}', "bad_message", "type", None),
    (b'{"v":1,"type":7}', "bad_message", "type", None),
    (b'{"v":1,"type":"dance"}', "unknown_type", "dance", "dance"),
    (b'{"v":1,"type":"register"}', "bad_message", "peer_id", "register"),
    (b'{"v":1,"type":"register","peer_id":""}', "bad_message", "peer_id", "register"),
    (b'{"v":1,"type":"register","peer_id":"' + b"a" * 65 + b'"}', "bad_message", "peer_id",
     "register"),
    (b'{"v":1,"type":"register","peer_id":"al ice"}', "bad_message", "peer_id", "register"),
    (b'{"v":1,"type":"register","peer_id":"alice\\n"}', "bad_message", "peer_id", "register"),
    (b'{"v":1,"type":"register","peer_id":"\\u00e9"}', "bad_message", "peer_id", "register"),
    (b'{"v":1,"type":"register","peer_id":5}', "bad_message", "peer_id", "register"),
    (_offer(to="b/b"), "bad_message", "to", "offer"),
    (_offer(to=None), "bad_message", "to", "offer"),
    (_offer(candidates=[]), "bad_message", "candidates", "offer"),
    (_offer(candidates=[{"ip": "192.0.2.1", "port": 1, "kind": "host"}] * 17),
     "bad_message", "candidates", "offer"),
    (_offer(candidates={"ip": "192.0.2.1"}), "bad_message", "candidates", "offer"),
    (_offer(candidates=["192.0.2.1:5"]), "bad_message", "candidates[0]", "offer"),
    (_with_candidate(ip="300.1.1.1"), "bad_message", "candidates[0].ip", "offer"),
    (_with_candidate(ip=3232235777), "bad_message", "candidates[0].ip", "offer"),
    (_with_candidate(ip="example.com"), "bad_message", "candidates[0].ip", "offer"),
    # Python accepts any IPv6 zone id ("%..."), so without a length cap one candidate could
    # fill a whole frame and its forwarded copy (with "from" added) outgrow the limit.
    (_with_candidate(ip="fe80::1%" + "x" * 40), "bad_message", "candidates[0].ip", "offer"),
    (_with_candidate(port=0), "bad_message", "candidates[0].port", "offer"),
    (_with_candidate(port=65536), "bad_message", "candidates[0].port", "offer"),
    (_with_candidate(port="80"), "bad_message", "candidates[0].port", "offer"),
    (_with_candidate(port=True), "bad_message", "candidates[0].port", "offer"),
    (_with_candidate(port=80.0), "bad_message", "candidates[0].port", "offer"),
    (_with_candidate(kind="prflx"), "bad_message", "candidates[0].kind", "offer"),
    (_with_candidate(kind=None), "bad_message", "candidates[0].kind", "offer"),
    (_offer(session="s" * 65), "bad_message", "session", "offer"),
    (_offer(session=5), "bad_message", "session", "offer"),
    (_offer(session="\ud800"), "bad_message", "session", "offer"),
    (_offer(**{"from": "not valid!"}), "bad_message", "from", "offer"),
    (_offer(type="answer", candidates=None), "bad_message", "candidates", "answer"),
    (b'{"v":1,"type":"candidate","to":"bob"}', "bad_message", "candidate", "candidate"),
    (b'{"v":1,"type":"candidate","to":"bob","candidate":{"ip":"::1","port":9,"kind":"x"}}',
     "bad_message", "candidate.kind", "candidate"),
    (b'{"v":1,"type":"heartbeat"}', "bad_message", "seq", "heartbeat"),
    (b'{"v":1,"type":"heartbeat","seq":-1}', "bad_message", "seq", "heartbeat"),
    (b'{"v":1,"type":"heartbeat","seq":1.5}', "bad_message", "seq", "heartbeat"),
    (b'{"v":1,"type":"heartbeat_ack","seq":"7"}', "bad_message", "seq", "heartbeat_ack"),
    (b'{"v":1,"type":"registered","peer_id":"a"}', "bad_message", "observed", "registered"),
    (b'{"v":1,"type":"registered","peer_id":"a","observed":{"ip":"x","port":1}}',
     "bad_message", "observed.ip", "registered"),
    (b'{"v":1,"type":"registered","peer_id":"a","observed":{"ip":"::1","port":0}}',
     "bad_message", "observed.port", "registered"),
    (b'{"v":1,"type":"error","reason":"r"}', "bad_message", "code", "error"),
    (b'{"v":1,"type":"error","code":"x"}', "bad_message", "reason", "error"),
    (b'{"v":1,"type":"error","code":"x","reason":"r","ref":3}', "bad_message", "ref", "error"),
    (b'{"v":1,"type":"peer_left"}', "bad_message", "peer_id", "peer_left"),
    (_offer(mapping="symmetric"), "bad_message", "mapping", "offer"),
    (_offer(mapping=5), "bad_message", "mapping", "offer"),
    (_offer(mapping="Endpoint-Independent"), "bad_message", "mapping", "offer"),
    (_offer(type="answer", mapping="full-cone"), "bad_message", "mapping", "answer"),
    (_without(_relay_request(), "to"), "bad_message", "to", "relay_request"),
    (_relay_request(to="b b"), "bad_message", "to", "relay_request"),
    (_without(_relay_request(), "session"), "bad_message", "session", "relay_request"),
    (_relay_request(session=SESSION[:-1]), "bad_message", "session", "relay_request"),
    (_relay_request(session=SESSION + "0"), "bad_message", "session", "relay_request"),
    (_relay_request(session="0123456789abcdeg"), "bad_message", "session", "relay_request"),
    (_relay_request(session="call-1"), "bad_message", "session", "relay_request"),
    (_relay_request(session=81985529216486895), "bad_message", "session", "relay_request"),
    (_relay_granted(session="xyz"), "bad_message", "session", "relay_granted"),
    (_without(_relay_granted(), "token"), "bad_message", "token", "relay_granted"),
    (_relay_granted(token=TOKEN[:-1]), "bad_message", "token", "relay_granted"),
    (_relay_granted(token=TOKEN[:-1] + "z"), "bad_message", "token", "relay_granted"),
    (_without(_relay_granted(), "relay"), "bad_message", "relay", "relay_granted"),
    (_relay_granted(relay="127.0.0.1:7001"), "bad_message", "relay", "relay_granted"),
    (_relay_granted(relay={"ip": "nope", "port": 7001}), "bad_message", "relay.ip",
     "relay_granted"),
    (_relay_granted(relay={"ip": "127.0.0.1", "port": 0}), "bad_message", "relay.port",
     "relay_granted"),
    (_without(_relay_granted(), "lifetime"), "bad_message", "lifetime", "relay_granted"),
    (_relay_granted(lifetime=0), "bad_message", "lifetime", "relay_granted"),
    (_relay_granted(lifetime=-1.5), "bad_message", "lifetime", "relay_granted"),
    (_relay_granted(lifetime="600"), "bad_message", "lifetime", "relay_granted"),
    (_relay_granted(lifetime=True), "bad_message", "lifetime", "relay_granted"),
    (_relay_granted().replace(b"600.0", b"1e400"), "bad_message", "lifetime",
     "relay_granted"),
]


@pytest.mark.parametrize("payload,code,word,ref", INVALID,
                         ids=[f"{i}-{case[1]}" for i, case in enumerate(INVALID)])
def test_each_validation_rule_has_its_code(payload, code, word, ref):
    with pytest.raises(MessageError) as info:
        decode_message(payload)
    assert info.value.code == code
    assert word in info.value.reason
    assert info.value.ref == ref
    assert isinstance(info.value, DecodeError) and isinstance(info.value, ValueError)


def test_every_code_a_decoder_can_raise_is_a_protocol_error_code():
    assert {code for _, code, _, _ in INVALID} <= p.ERROR_CODES


def test_the_package_exports_every_message_type():
    exported = {getattr(netsprint.signaling, name) for name in netsprint.signaling.__all__}
    assert set(typing.get_args(p.Message)) <= exported


def test_relay_refused_is_a_protocol_error_code():
    assert p.RELAY_REFUSED == "relay_refused" and p.RELAY_REFUSED in p.ERROR_CODES


def test_bad_json_gives_the_offset_where_parsing_stopped():
    with pytest.raises(MessageError) as info:
        decode_message(b'{"v":1,"type":"heartbeat","seq":}')
    assert info.value.offset == len(b'{"v":1,"type":"heartbeat","seq":')


def test_peer_id_edges_are_accepted():
    for peer_id in ("a", "A-Z_a.z-09", "x" * 64, "..."):
        assert decode_message(encode_message(Register(peer_id))) == Register(peer_id)


def test_an_unknown_error_code_from_a_newer_server_still_decodes():
    assert decode_message(b'{"v":1,"type":"error","code":"rate_limited","reason":"slow down"}') \
        == Error("rate_limited", "slow down")
