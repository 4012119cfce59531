"""SignalingCore without sockets: `now` is a plain number, so deadlines are exact."""

from __future__ import annotations

import logging

import pytest

from netsprint.p2p.relay import RelayCore, RelayLimits
from netsprint.signaling.core import Close, Send, SignalingCore
from netsprint.signaling.framing import FrameError
from netsprint.signaling.protocol import (Answer, Candidate, CandidateAddr, Endpoint, Error,
                                          Heartbeat, HeartbeatAck, Offer, PeerLeft, Register,
                                          Registered, RelayGranted, RelayRequest,
                                          decode_message, encode_message)

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


def connect(core, conn_id, now=0.0, port=None, local_addr=None):
    core.connection_made(conn_id, ("127.0.0.1", port or 50000 + conn_id), now,
                         local_addr=local_addr)


def register(core, conn_id, peer_id, now=0.0, local_addr=None):
    connect(core, conn_id, now, local_addr=local_addr)
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


# -- relay requests -----------------------------------------------------------------------------

SESSION = "0123456789abcdef"
SERVER_END = ("192.0.2.1", 7001)  # the address the clients' TCP connections arrived on
RELAY_LIMITS = RelayLimits(max_allocations=1, idle_timeout=20.0)


@pytest.fixture
def relay():
    tokens = iter(range(1, 100))
    return RelayCore(RELAY_LIMITS, rng_bytes=lambda size: next(tokens).to_bytes(size, "big"))


@pytest.fixture
def relay_core(relay):
    core = SignalingCore(heartbeat_timeout=TIMEOUT, relay=relay, relay_port=SERVER_END[1])
    register(core, 1, "alice", local_addr=SERVER_END)
    register(core, 2, "bob", local_addr=SERVER_END)
    return core


def test_relay_request_is_granted_with_a_token_and_the_relay_address(relay_core, relay):
    actions = relay_core.frame_received(1, frame(RelayRequest("bob", SESSION)), 1.0)
    assert sent(actions, 1) == [RelayGranted(SESSION, (1).to_bytes(16, "big").hex(),
                                             Endpoint(*SERVER_END), RELAY_LIMITS.lifetime)]
    assert sent(actions, 2) == []  # bob asks for his own
    (granted,) = sent(relay_core.frame_received(2, frame(RelayRequest("alice", SESSION)), 2.0))
    assert granted.token == (2).to_bytes(16, "big").hex()
    assert granted.lifetime == RELAY_LIMITS.lifetime - 1.0
    assert relay.bound_addresses(SESSION) == {"alice": None, "bob": None}
    assert relay_core.stats["relay_granted"] == 2


@pytest.mark.parametrize("local_addr,relay_ip", [
    (("198.51.100.1", 7001), "198.51.100.1"),
    (("2001:db8::1", 7001, 0, 0), "2001:db8::1"),
    (("::ffff:192.0.2.1", 7001, 0, 0), "192.0.2.1"),  # a dual-stack listener, IPv4 client
])
def test_the_relay_ip_is_the_one_the_client_reached(local_addr, relay_ip):
    core = SignalingCore(heartbeat_timeout=TIMEOUT, relay=RelayCore(), relay_port=7001)
    register(core, 1, "carol", local_addr=local_addr)
    register(core, 2, "dave", local_addr=local_addr)
    (granted,) = sent(core.frame_received(1, frame(RelayRequest("dave", SESSION)), 1.0))
    assert granted.relay == Endpoint(relay_ip, 7001)


def test_relay_request_needs_a_registered_sender_and_target(relay_core, relay):
    connect(relay_core, 3, local_addr=SERVER_END)
    err = _error_of(relay_core.frame_received(3, frame(RelayRequest("bob", SESSION)), 1.0), 3)
    assert (err.code, err.ref) == ("not_registered", "relay_request")
    err = _error_of(relay_core.frame_received(1, frame(RelayRequest("carol", SESSION)), 1.0), 1)
    assert (err.code, err.ref) == ("unknown_peer", "relay_request")
    assert relay.allocation_count == 0


def test_a_refused_relay_request_is_relay_refused(relay_core):
    relay_core.frame_received(1, frame(RelayRequest("bob", SESSION)), 1.0)
    register(relay_core, 3, "carol", local_addr=SERVER_END)
    actions = relay_core.frame_received(3, frame(RelayRequest("alice", "ff" * 8)), 1.0)
    err = _error_of(actions, 3)  # max_allocations is 1
    assert (err.code, err.ref) == ("relay_refused", "relay_request")
    assert "full" in err.reason
    err = _error_of(relay_core.frame_received(1, frame(RelayRequest("alice", SESSION)), 1.0), 1)
    assert err.code == "relay_refused"  # to itself
    assert relay_core.stats["errors.relay_refused"] == 2


def test_a_server_without_relay_refuses_relay_requests(core):
    register(core, 1, "alice", local_addr=SERVER_END)
    register(core, 2, "bob", local_addr=SERVER_END)
    err = _error_of(core.frame_received(1, frame(RelayRequest("bob", SESSION)), 1.0), 1)
    assert (err.code, err.ref) == ("relay_refused", "relay_request")


def test_relay_granted_is_not_for_the_server(relay_core):
    msg = RelayGranted(SESSION, "00" * 16, Endpoint(*SERVER_END), 1.0)
    err = _error_of(relay_core.frame_received(1, frame(msg), 1.0), 1)
    assert err.code == "unknown_type"


def test_a_peer_that_leaves_frees_its_relay_allocations(relay_core, relay):
    relay_core.frame_received(1, frame(RelayRequest("bob", SESSION)), 1.0)
    relay_core.frame_received(2, frame(RelayRequest("alice", SESSION)), 1.0)
    relay_core.connection_lost(2, 2.0)
    assert relay.allocation_count == 0 and relay.stats["released"] == 1


def test_an_expired_connection_frees_its_relay_allocations_too():
    relay = RelayCore(RelayLimits(idle_timeout=10 * TIMEOUT))  # outlives the connections
    core = SignalingCore(heartbeat_timeout=TIMEOUT, relay=relay, relay_port=SERVER_END[1])
    register(core, 1, "alice", local_addr=SERVER_END)
    register(core, 2, "bob", local_addr=SERVER_END)
    core.frame_received(1, frame(RelayRequest("bob", SESSION)), 1.0)
    core.frame_received(1, frame(Heartbeat(1)), 20.0)
    assert closed(core.tick(TIMEOUT)) == [2]  # bob silent since 0
    assert relay.allocation_count == 0 and relay.stats["released"] == 1


def test_tick_and_next_deadline_cover_the_relay(relay_core, relay):
    relay_core.frame_received(1, frame(RelayRequest("bob", SESSION)), 5.0)
    relay_core.frame_received(2, frame(Heartbeat(1)), 5.0)  # both connections: due at 35
    assert relay_core.next_deadline() == 5.0 + RELAY_LIMITS.idle_timeout  # 25 < 35
    relay_core.tick(24.999)
    assert relay.allocation_count == 1
    assert closed(relay_core.tick(25.0)) == []
    assert relay.allocation_count == 0 and relay.stats["expired_idle"] == 1
    assert relay_core.next_deadline() == 5.0 + TIMEOUT


def test_a_relay_needs_its_port():
    with pytest.raises(ValueError, match="relay_port"):
        SignalingCore(relay=RelayCore())
