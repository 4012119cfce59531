"""Fuzzing the signaling decoders with hypothesis: whatever bytes come in, the only
exceptions are FrameError / MessageError (both DecodeError), and every message survives
encode -> decode unchanged."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsprint.errors import DecodeError
from netsprint.signaling.framing import FrameDecoder, FrameError, encode_frame
from netsprint.signaling.protocol import (CANDIDATE_KINDS, ERROR_CODES, MAPPING_BEHAVIOURS,
                                          Answer, Candidate, CandidateAddr, Endpoint, Error,
                                          Heartbeat, HeartbeatAck, MessageError, Offer,
                                          PeerLeft, Register, Registered, RelayGranted,
                                          RelayRequest, decode_message, encode_message)

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

peer_ids = st.text(alphabet="ABCXYZabcxyz0189_.-", min_size=1, max_size=64)
ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
ports = st.integers(1, 65535)
candidate_addrs = st.builds(CandidateAddr, ip=ips, port=ports,
                            kind=st.sampled_from(sorted(CANDIDATE_KINDS)))
candidate_lists = st.lists(candidate_addrs, min_size=1, max_size=16).map(tuple)
sessions = st.none() | st.text(max_size=64)
optional_peer = st.none() | peer_ids
texts = st.text(max_size=200)
mappings = st.none() | st.sampled_from(sorted(MAPPING_BEHAVIOURS))
relay_sessions = st.binary(min_size=8, max_size=8).map(bytes.hex)
endpoints = st.builds(Endpoint, ip=ips, port=ports)

messages = st.one_of(
    st.builds(Register, peer_id=peer_ids),
    st.builds(Registered, peer_id=peer_ids, observed=endpoints),
    st.builds(Offer, to=peer_ids, candidates=candidate_lists, session=sessions,
              from_=optional_peer, mapping=mappings),
    st.builds(Answer, to=peer_ids, candidates=candidate_lists, session=sessions,
              from_=optional_peer, mapping=mappings),
    st.builds(Candidate, to=peer_ids, candidate=candidate_addrs, session=sessions,
              from_=optional_peer),
    st.builds(Heartbeat, seq=st.integers(0, 2**63)),
    st.builds(HeartbeatAck, seq=st.integers(0, 2**63)),
    st.builds(Error, code=st.sampled_from(sorted(ERROR_CODES)) | texts, reason=texts,
              ref=st.none() | texts),
    st.builds(PeerLeft, peer_id=peer_ids),
    st.builds(RelayRequest, to=peer_ids, session=relay_sessions),
    st.builds(RelayGranted, session=relay_sessions,
              token=st.binary(min_size=16, max_size=16).map(bytes.hex), relay=endpoints,
              lifetime=st.floats(min_value=0.001, max_value=1e6)),
)

# JSON-ish values, to get past the JSON parser and into field validation.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)
field_names = st.sampled_from(["v", "type", "peer_id", "to", "from", "candidates", "candidate",
                               "session", "seq", "code", "reason", "ref", "observed", "ip",
                               "port", "kind", "mapping", "token", "relay", "lifetime"])
type_names = st.sampled_from(["register", "registered", "offer", "answer", "candidate",
                              "heartbeat", "heartbeat_ack", "error", "peer_left",
                              "relay_request", "relay_granted", "x"])


@FUZZ
@given(messages)
def test_encode_then_decode_is_the_identity(msg):
    payload = encode_message(msg)
    decoded = decode_message(payload)
    assert decoded == msg
    # Equal is not identical (1 == 1.0 == True): the re-encoding shows each field's type.
    assert encode_message(decoded) == payload


def _decode_or_message_error(payload: bytes) -> None:
    try:
        decode_message(payload)
    except MessageError as exc:
        assert isinstance(exc, DecodeError)
        assert exc.code in ERROR_CODES


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_message_error(payload):
    _decode_or_message_error(payload)


@FUZZ
@given(st.dictionaries(field_names, json_values, max_size=8), type_names,
       st.sampled_from([1, 1, 1, 2, None]))
def test_json_objects_with_wrong_fields_raise_only_message_error(obj, msg_type, version):
    obj = dict(obj, type=msg_type)
    if version is not None:
        obj["v"] = version
    _decode_or_message_error(json.dumps(obj).encode())


@FUZZ
@given(messages, st.data())
def test_mutated_valid_messages_raise_only_message_error(msg, data):
    payload = bytearray(encode_message(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    _decode_or_message_error(bytes(payload))


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=10), st.integers(0, 300))
def test_frame_decoder_on_random_chunks_raises_only_frame_error(chunks, limit):
    decoder = FrameDecoder(max_frame_bytes=limit)
    fed = 0
    for chunk in chunks:
        try:
            frames = decoder.feed(chunk)
        except FrameError as exc:
            assert isinstance(exc, DecodeError)
            assert 0 <= exc.offset <= fed + len(chunk)
            with pytest.raises(FrameError):  # and it stays failed
                decoder.feed(b"\x00\x00\x00\x00")
            return
        fed += len(chunk)
        assert all(len(f) <= limit for f in frames)
        assert decoder.buffered_bytes <= fed


@FUZZ
@given(st.lists(messages, max_size=8), st.data())
def test_framed_messages_survive_any_split(msgs, data):
    stream = b"".join(encode_frame(encode_message(m)) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = FrameDecoder()
    got = []
    start = 0
    for cut in cuts + [len(stream)]:
        got += [decode_message(f) for f in decoder.feed(stream[start:cut])]
        start = cut
    assert got == msgs
