"""SignalingCore without sockets: `now` is a plain number, so deadlines are exact."""

from __future__ import annotations

import logging

import pytest

from netsprint.signaling.core import Close, Send, SignalingCore
from netsprint.signaling.framing import FrameError
from netsprint.signaling.protocol import (Answer, Candidate, CandidateAddr, Endpoint, Error,
                                          Heartbeat, HeartbeatAck, Offer, PeerLeft, Register,
                                          Registered, decode_message, encode_message)

pytestmark = pytest.mark.unit

SRFLX = CandidateAddr("203.0.113.5", 40000, "srflx")
RELAY = CandidateAddr("198.51.100.2", 3478, "relay")
TIMEOUT = 30.0


def sent(actions, conn_id=None):
    """The messages the actions send (to `conn_id` if given)."""
    return [decode_message(a.payload) for a in actions
            if isinstance(a, Send) and (conn_id is None or a.conn_id == conn_id)]


def closed(actions):
    return [a.conn_id for a in actions if isinstance(a, Close)]


def frame(msg):
    return encode_message(msg)


@pytest.fixture
def core():
    return SignalingCore(heartbeat_timeout=TIMEOUT)


def connect(core, conn_id, now=0.0, port=None):
    core.connection_made(conn_id, ("127.0.0.1", port or 50000 + conn_id), now)


def register(core, conn_id, peer_id, now=0.0):
    connect(core, conn_id, now)
    actions = core.frame_received(conn_id, frame(Register(peer_id)), now)
    assert sent(actions, conn_id) == [Registered(peer_id, Endpoint("127.0.0.1", 50000 + conn_id))]
    return actions


def test_register_replies_with_the_observed_address(core):
    connect(core, 1, port=51234)
    actions = core.frame_received(1, frame(Register("alice")), 0.0)
    assert actions == [Send(1, frame(Registered("alice", Endpoint("127.0.0.1", 51234))))]
    assert core.peer_ids() == ["alice"]
    assert core.stats["registered"] == 1


def test_offer_is_forwarded_with_from_stamped(core):
    register(core, 1, "alice")
    register(core, 2, "bob")
    actions = core.frame_received(1, frame(Offer("bob", (SRFLX,), session="s1")), 1.0)
    assert sent(actions) == [Offer("bob", (SRFLX,), session="s1", from_="alice")]
    assert actions[0].conn_id == 2
    actions = core.frame_received(2, frame(Answer("alice", (RELAY,), from_="bob")), 2.0)
    assert actions == [Send(1, frame(Answer("alice", (RELAY,), from_="bob")))]
    actions = core.frame_received(1, frame(Candidate("bob", RELAY)), 3.0)
    assert sent(actions, 2) == [Candidate("bob", RELAY, from_="alice")]
    assert core.stats["forwarded"] == 3


def test_forwarding_drops_unknown_fields(core):
    register(core, 1, "alice")
    register(core, 2, "bob")
    payload = (b'{"v":1,"type":"candidate","to":"bob","x-debug":"secret",'
               b'"candidate":{"ip":"::1","port":9,"kind":"host"}}')
    (action,) = core.frame_received(1, payload, 1.0)
    assert b"x-debug" not in action.payload


def _error_of(actions, conn_id):
    (msg,) = sent(actions, conn_id)
    assert isinstance(msg, Error), msg
    return msg


def test_spoofed_from_is_refused_and_nothing_forwarded(core):
    register(core, 1, "alice")
    register(core, 2, "bob")
    actions = core.frame_received(1, frame(Offer("bob", (SRFLX,), from_="carol")), 1.0)
    assert sent(actions, 2) == []
    err = _error_of(actions, 1)
    assert (err.code, err.ref) == ("spoofed_from", "offer")
    assert core.stats["errors.spoofed_from"] == 1 and core.stats["forwarded"] == 0


@pytest.mark.parametrize("msg", [Offer("bob", (SRFLX,)), Answer("bob", (SRFLX,)),
                                 Candidate("bob", SRFLX)], ids=lambda m: m.TYPE)
def test_signaling_before_register_is_not_registered(core, msg):
    register(core, 2, "bob")
    connect(core, 1)
    actions = core.frame_received(1, frame(msg), 1.0)
    err = _error_of(actions, 1)
    assert (err.code, err.ref) == ("not_registered", msg.TYPE)
    assert sent(actions, 2) == []


def test_offer_to_an_unknown_peer(core):
    register(core, 1, "alice")
    err = _error_of(core.frame_received(1, frame(Offer("carol", (SRFLX,))), 1.0), 1)
    assert (err.code, err.ref) == ("unknown_peer", "offer")
    assert "carol" in err.reason


def test_second_register_on_one_connection(core):
    register(core, 1, "alice")
    err = _error_of(core.frame_received(1, frame(Register("alice2")), 1.0), 1)
    assert err.code == "already_registered"
    assert core.peer_ids() == ["alice"]


def test_taken_peer_id_is_refused_and_the_connection_may_try_another(core):
    register(core, 1, "alice")
    connect(core, 2)
    err = _error_of(core.frame_received(2, frame(Register("alice")), 1.0), 2)
    assert err.code == "peer_id_taken"
    actions = core.frame_received(2, frame(Register("alice-2")), 1.0)
    assert isinstance(sent(actions, 2)[0], Registered)
    assert core.peer_ids() == ["alice", "alice-2"]


def test_heartbeat_is_acked_even_before_register(core):
    connect(core, 1)
    assert sent(core.frame_received(1, frame(Heartbeat(7)), 1.0)) == [HeartbeatAck(7)]


@pytest.mark.parametrize("payload,code", [
    (b"garbage", "bad_json"),
    (b'{"v":9,"type":"heartbeat","seq":1}', "version"),
    (b'{"v":1,"type":"teleport"}', "unknown_type"),
    (b'{"v":1,"type":"heartbeat","seq":-4}', "bad_message"),
    (frame(PeerLeft("bob")), "unknown_type"),  # a server-to-client type
    (frame(Registered("a", Endpoint("::1", 9))), "unknown_type"),
])
def test_bad_messages_get_an_error_and_keep_the_connection(core, payload, code):
    register(core, 1, "alice")
    actions = core.frame_received(1, payload, 1.0)
    assert _error_of(actions, 1).code == code
    assert closed(actions) == []
    assert sent(core.frame_received(1, frame(Heartbeat(1)), 2.0)) == [HeartbeatAck(1)]
    assert core.stats[f"errors.{code}"] == 1 and core.stats["errors"] == 1


LONG = "x" * 60_000  # a frame just under the 64 KiB limit, nearly all of it one string


@pytest.mark.parametrize("payload", [
    f'{{"v":1,"type":"{LONG}"}}'.encode(),            # unknown_type, echoing the type
    f'{{"v":"{LONG}","type":"{LONG[:4000]}"}}'.encode(),  # version, echoing v and type
])
def test_error_replies_do_not_echo_unbounded_input(core, payload):
    """An error names the offending value, but shortened: echoed whole, a 60 KB type
    would make the reply larger than any frame a client accepts (and the server could
    not even frame it)."""
    connect(core, 1)
    actions = core.frame_received(1, payload, 1.0)
    [reply] = [a for a in actions if isinstance(a, Send)]
    assert len(reply.payload) < 1024
    assert decode_message(reply.payload).code in ("unknown_type", "version")


def test_each_code_is_logged_once_per_connection_but_counted_every_time(core, caplog):
    connect(core, 1)
    connect(core, 2)
    with caplog.at_level(logging.WARNING, logger="netsprint.signaling.core"):
        for _ in range(5):
            core.frame_received(1, b"junk", 1.0)
        core.frame_received(1, b'{"v":1,"type":"teleport"}', 1.0)
        core.frame_received(2, b"junk", 1.0)
    assert core.stats["errors.bad_json"] == 6
    codes = [r.getMessage().split(": ")[1] for r in caplog.records]
    assert sorted(codes) == ["bad_json", "bad_json", "unknown_type"]


def test_heartbeat_expiry_happens_exactly_at_the_timeout(core):
    register(core, 1, "alice", now=100.0)
    assert core.next_deadline() == 100.0 + TIMEOUT
    assert core.tick(129.999) == []
    actions = core.tick(130.0)
    assert closed(actions) == [1]
    assert core.peer_ids() == [] and core.stats["expired"] == 1
    assert core.next_deadline() is None


def test_any_valid_frame_renews_the_deadline_but_garbage_does_not(core):
    register(core, 1, "alice", now=0.0)
    register(core, 2, "bob", now=0.0)
    core.frame_received(1, frame(Offer("bob", (SRFLX,))), 20.0)
    core.frame_received(2, b"not json", 25.0)
    assert core.next_deadline() == 30.0  # bob's: garbage is no sign of life
    assert closed(core.tick(30.0)) == [2]
    assert core.next_deadline() == 50.0
    assert closed(core.tick(49.9)) == []
    assert closed(core.tick(50.0)) == [1]


def test_expired_peer_id_is_free_and_its_contacts_hear_peer_left(core):
    register(core, 1, "alice", now=0.0)
    register(core, 2, "bob", now=0.0)
    register(core, 3, "carol", now=0.0)
    core.frame_received(1, frame(Offer("bob", (SRFLX,))), 10.0)
    core.frame_received(2, frame(Heartbeat(1)), 35.0)
    core.frame_received(3, frame(Heartbeat(1)), 35.0)
    actions = core.tick(40.0)  # alice silent since 10.0
    assert closed(actions) == [1]
    assert sent(actions, 2) == [PeerLeft("alice")]
    assert sent(actions, 3) == []  # carol never talked to alice
    register(core, 4, "alice", now=41.0)  # the id is free again


def test_connection_lost_frees_the_id_and_tells_both_directions_of_contact(core):
    register(core, 1, "alice")
    register(core, 2, "bob")
    register(core, 3, "carol")
    core.frame_received(3, frame(Offer("alice", (SRFLX,))), 1.0)  # carol -> alice
    core.frame_received(1, frame(Candidate("bob", SRFLX)), 1.0)  # alice -> bob
    actions = core.connection_lost(1, 2.0)
    assert closed(actions) == []
    assert {a.conn_id for a in actions} == {2, 3}
    assert sent(actions) == [PeerLeft("alice"), PeerLeft("alice")]
    assert core.peer_ids() == ["bob", "carol"]
    assert core.connection_lost(1, 3.0) == []  # a second report changes nothing
    assert core.stats["peer_left_sent"] == 2


def test_a_new_holder_of_a_freed_id_does_not_inherit_old_contacts(core):
    register(core, 1, "alice")
    register(core, 2, "bob")
    core.frame_received(1, frame(Offer("bob", (SRFLX,))), 1.0)
    core.connection_lost(2, 2.0)
    register(core, 3, "bob")  # a different "bob"
    assert sent(core.connection_lost(1, 3.0)) == []


def test_frame_error_sends_frame_too_large_then_closes(core):
    register(core, 1, "alice")
    register(core, 2, "bob")
    core.frame_received(2, frame(Offer("alice", (SRFLX,))), 1.0)
    actions = core.frame_error(1, FrameError("frame length 70000 exceeds the limit", 0), 2.0)
    assert [type(a) for a in actions if a.conn_id == 1] == [Send, Close]
    assert _error_of([a for a in actions if a.conn_id == 1], 1).code == "frame_too_large"
    assert sent(actions, 2) == [PeerLeft("alice")]
    assert core.stats["closed_frame_too_large"] == 1
    assert core.frame_received(1, frame(Heartbeat(1)), 3.0) == []  # it is gone
    assert core.connection_lost(1, 3.0) == []


def test_output_overflow_sends_slow_consumer_then_closes(core):
    register(core, 1, "alice")
    actions = core.output_overflow(1, 2_000_000, 5.0)
    assert _error_of(actions, 1).code == "slow_consumer"
    assert closed(actions) == [1]
    assert core.stats["closed_slow"] == 1
    assert core.output_overflow(1, 3_000_000, 5.0) == []


def test_unregistered_connections_expire_too(core):
    connect(core, 1, now=5.0)
    assert core.next_deadline() == 35.0
    assert closed(core.tick(35.0)) == [1]
    assert core.stats["connections_opened"] == core.stats["connections_closed"] == 1


def test_timeout_must_be_positive():
    with pytest.raises(ValueError):
        SignalingCore(heartbeat_timeout=0)
