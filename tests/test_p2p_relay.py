"""RelayCore without sockets: a FakeClock gives `now`, so every limit is checked exactly.

The relay must never be an open relay: each test that drops something also checks that
nothing at all came out (no Forward, no Reply).
"""

from __future__ import annotations

import itertools
import math

import pytest

from netsprint.clock import FakeClock
from netsprint.errors import DecodeError, NetsprintError
from netsprint.p2p import packet
from netsprint.p2p.packet import PacketType, decode_packet
from netsprint.p2p.relay import Forward, Grant, RelayCore, RelayLimits, RelayRefused, Reply

pytestmark = pytest.mark.unit

S1 = bytes.fromhex("0123456789abcdef")
S2 = bytes.fromhex("fedcba9876543210")
A_ADDR = ("198.51.100.1", 40000)
B_ADDR = ("203.0.113.2", 50000)
M_ADDR = ("192.0.2.66", 6666)  # mallory: never shows a valid token
T0 = 100.0


def counting_tokens():
    """rng_bytes giving 16-byte tokens 00..01, 00..02, ...: distinct and predictable."""
    counter = itertools.count(1)
    return lambda size: next(counter).to_bytes(size, "big")


@pytest.fixture
def clock():
    return FakeClock(T0)


def make_relay(**limits) -> RelayCore:
    return RelayCore(RelayLimits(**limits), rng_bytes=counting_tokens())


@pytest.fixture
def relay():
    return make_relay()


def bind(relay, session, token, addr, now):
    return relay.datagram_received(packet.relay_bind(session, token), addr, now)


def bound_pair(relay, now, session=S1, a_addr=A_ADDR, b_addr=B_ADDR):
    """alice and bob granted and bound on `session`; their grants."""
    ga = relay.grant(session.hex(), "alice", "bob", now)
    gb = relay.grant(session.hex(), "bob", "alice", now)
    assert isinstance(bind(relay, session, ga.token, a_addr, now)[0], Reply)
    assert isinstance(bind(relay, session, gb.token, b_addr, now)[0], Reply)
    return ga, gb


def data(session=S1, body=b"hello", size=None):
    if size is not None:
        body = b"x" * (size - packet.HEADER_BYTES)
    return packet.data(session, body)


# -- grants -----------------------------------------------------------------------------------

def test_each_peer_gets_its_own_random_token_and_the_full_lifetime():
    relay = RelayCore()  # the real secrets.token_bytes
    ga = relay.grant(S1.hex(), "alice", "bob", T0)
    gb = relay.grant(S1.hex(), "bob", "alice", T0)
    assert len(ga.token) == len(gb.token) == packet.TOKEN_BYTES
    assert ga.token != gb.token
    assert ga.lifetime == gb.lifetime == RelayLimits().lifetime
    assert relay.allocation_count == 1
    assert relay.stats["allocations"] == 1 and relay.stats["grants"] == 2


def test_asking_again_returns_the_same_token_with_the_lifetime_left(relay):
    first = relay.grant(S1.hex(), "alice", "bob", T0)
    again = relay.grant(S1.hex(), "alice", "bob", T0 + 10.0)
    assert again == Grant(first.token, RelayLimits().lifetime - 10.0)
    assert relay.allocation_count == 1


def test_a_peer_cannot_relay_to_itself(relay):
    with pytest.raises(RelayRefused) as info:
        relay.grant(S1.hex(), "alice", "alice", T0)
    assert info.value.cause == "self" and isinstance(info.value, NetsprintError)
    assert relay.allocation_count == 0 and relay.stats["refused_self"] == 1


def test_a_session_belongs_to_the_pair_that_asked_first(relay):
    relay.grant(S1.hex(), "alice", "bob", T0)
    for peer, other in (("carol", "alice"), ("alice", "carol"), ("carol", "bob")):
        with pytest.raises(RelayRefused) as info:
            relay.grant(S1.hex(), peer, other, T0)
        assert info.value.cause == "session_taken"
    assert relay.stats["refused_session_taken"] == 3
    assert relay.bound_addresses(S1.hex()) == {"alice": None}


def test_a_session_id_that_is_not_16_hex_digits_is_a_decode_error(relay):
    with pytest.raises(DecodeError):
        relay.grant("0123", "alice", "bob", T0)


def test_max_allocations_is_server_wide_and_frees_up_when_one_expires(clock):
    relay = make_relay(max_allocations=2, max_allocations_per_peer=10, idle_timeout=30.0)
    relay.grant("00" * 8, "alice", "bob", clock.now())
    relay.grant("11" * 8, "carol", "dave", clock.now())
    with pytest.raises(RelayRefused) as info:
        relay.grant("22" * 8, "erin", "frank", clock.now())
    assert info.value.cause == "full" and relay.stats["refused_full"] == 1
    relay.grant("00" * 8, "bob", "alice", clock.now())  # the second half needs no new slot
    clock.advance(30.0)  # both idle for exactly idle_timeout
    relay.grant("22" * 8, "erin", "frank", clock.now())
    assert relay.allocation_count == 1 and relay.stats["expired_idle"] == 2


def test_one_peer_may_hold_only_max_allocations_per_peer():
    relay = make_relay(max_allocations_per_peer=2)
    relay.grant("00" * 8, "alice", "bob", T0)
    relay.grant("11" * 8, "alice", "carol", T0)
    with pytest.raises(RelayRefused) as info:
        relay.grant("22" * 8, "alice", "dave", T0)
    assert info.value.cause == "peer_cap"
    relay.grant("22" * 8, "dave", "alice", T0)  # dave asking is dave's allocation
    relay.grant("00" * 8, "bob", "alice", T0)
    relay.grant("33" * 8, "bob", "carol", T0)
    with pytest.raises(RelayRefused):  # bob now holds two halves: 00.. and 33..
        relay.grant("44" * 8, "bob", "erin", T0)
    assert relay.stats["refused_peer_cap"] == 2
    assert relay.allocation_count == 4


def test_release_peer_frees_every_allocation_it_is_a_party_to(relay, clock):
    bound_pair(relay, clock.now(), S1)
    relay.grant(S2.hex(), "carol", "alice", clock.now())  # alice is only the other here
    relay.grant("22" * 8, "carol", "dave", clock.now())
    assert relay.release_peer("alice") == 2
    assert relay.allocation_count == 1 and relay.stats["released"] == 2
    assert relay.datagram_received(data(S1), A_ADDR, clock.now()) == []
    assert relay.stats["dropped_unknown_session"] == 1
    assert relay.release_peer("alice") == 0


# -- binding ----------------------------------------------------------------------------------

def test_bind_answers_relay_bound_with_the_whole_seconds_left(relay, clock):
    grant = relay.grant(S1.hex(), "alice", "bob", clock.now())
    clock.advance(10.5)
    (reply,) = bind(relay, S1, grant.token, A_ADDR, clock.now())
    assert reply.addr == A_ADDR
    bound = decode_packet(reply.data)
    assert (bound.type, bound.session) == (PacketType.RELAY_BOUND, S1)
    assert packet.u32(bound.body) == math.floor(RelayLimits().lifetime - 10.5)
    assert relay.bound_addresses(S1.hex()) == {"alice": A_ADDR}
    assert relay.stats["bound"] == 1


def test_a_rebind_from_a_new_address_moves_the_binding(relay, clock):
    _, gb = bound_pair(relay, clock.now())
    b_new = ("203.0.113.2", 50001)  # bob's NAT gave him a new mapping
    assert isinstance(bind(relay, S1, gb.token, b_new, clock.now())[0], Reply)
    assert relay.stats["rebound"] == 1
    assert relay.datagram_received(data(), A_ADDR, clock.now()) == [Forward(data(), b_new)]
    assert relay.datagram_received(data(body=b"old"), B_ADDR, clock.now()) == []
    assert relay.stats["dropped_unbound"] == 1


def test_both_halves_cannot_bind_one_address(relay, clock):
    ga = relay.grant(S1.hex(), "alice", "bob", clock.now())
    gb = relay.grant(S1.hex(), "bob", "alice", clock.now())
    bind(relay, S1, ga.token, A_ADDR, clock.now())
    assert bind(relay, S1, gb.token, A_ADDR, clock.now()) == []
    assert relay.stats["dropped_same_address"] == 1
    assert relay.bound_addresses(S1.hex()) == {"alice": A_ADDR, "bob": None}


def _drop_cases():
    other_session_token = (1).to_bytes(16, "big")  # alice's token... of S2 (see below)
    return {
        # (datagram from M_ADDR, the counter it must land in)
        "bind_no_such_session": (packet.relay_bind(bytes(8), bytes(16)), "unknown_session"),
        "bind_guessed_token": (packet.relay_bind(S1, b"\x42" * 16), "bad_token"),
        "bind_token_of_another_session": (packet.relay_bind(S1, other_session_token),
                                          "bad_token"),
        "data_without_a_token": (data(S1), "unbound"),
        "relay_bound_from_a_peer": (packet.relay_bound(S1, 600), "relay_bound"),
        "not_p2p_at_all": (b"\x00\x01\x00\x00" + bytes(16), "non_p2p"),
        "our_magic_but_malformed": (b"NS\x01\x63" + S1, "malformed"),
        "too_large": (packet.data(S1, b"x" * packet.MAX_BODY_BYTES) + b"x", "malformed"),
    }


@pytest.mark.parametrize("case", sorted(_drop_cases()))
def test_whatever_lacks_a_valid_token_is_dropped_and_counted(case, clock):
    relay = make_relay()
    # S2's grants come first, so alice's S2 token is token number 1.
    relay.grant(S2.hex(), "alice", "bob", clock.now())
    bound_pair(relay, clock.now(), S1)
    datagram, counter = _drop_cases()[case]
    assert relay.datagram_received(datagram, M_ADDR, clock.now()) == []
    assert relay.stats[f"dropped_{counter}"] == 1
    # and mallory's address is still nobody's: nothing it sends is forwarded
    assert relay.datagram_received(data(S1), M_ADDR, clock.now()) == []
    assert relay.stats["relayed_packets"] == 0


def test_a_token_that_differs_in_its_last_byte_is_refused(relay, clock):
    grant = relay.grant(S1.hex(), "alice", "bob", clock.now())
    near = grant.token[:-1] + bytes([grant.token[-1] ^ 1])
    assert bind(relay, S1, near, M_ADDR, clock.now()) == []
    assert relay.bound_addresses(S1.hex()) == {"alice": None}


# -- forwarding -------------------------------------------------------------------------------

def test_packets_go_between_the_two_bound_addresses_unchanged(relay, clock):
    bound_pair(relay, clock.now())
    for kind in (data(body=b"\x00payload\xff"), packet.keepalive(S1, 7),
                 packet.probe(S1, b"12345678"), packet.bye(S1)):
        assert relay.datagram_received(kind, A_ADDR, clock.now()) == [Forward(kind, B_ADDR)]
    back = data(body=b"from bob")
    assert relay.datagram_received(back, B_ADDR, clock.now()) == [Forward(back, A_ADDR)]
    assert relay.stats["relayed_packets"] == 5
    assert relay.stats["relayed_bytes"] == sum(len(d) for d in (
        data(body=b"\x00payload\xff"), packet.keepalive(S1, 7), packet.probe(S1, b"12345678"),
        packet.bye(S1), back))


def test_nothing_is_forwarded_until_both_sides_have_bound(relay, clock):
    ga = relay.grant(S1.hex(), "alice", "bob", clock.now())
    relay.grant(S1.hex(), "bob", "alice", clock.now())
    bind(relay, S1, ga.token, A_ADDR, clock.now())
    assert relay.datagram_received(data(), A_ADDR, clock.now()) == []
    assert relay.stats["dropped_peer_unbound"] == 1


def test_a_bound_address_cannot_send_into_a_session_it_did_not_bind(relay, clock):
    bound_pair(relay, clock.now(), S1)
    bound_pair(relay, clock.now(), S2, a_addr=("198.51.100.7", 1), b_addr=("198.51.100.8", 2))
    # alice's S1 address with S2's id: right session, wrong address
    assert relay.datagram_received(data(S2), A_ADDR, clock.now()) == []
    assert relay.stats["dropped_unbound"] == 1


# -- rate -------------------------------------------------------------------------------------

def test_each_direction_has_a_token_bucket_that_refills_with_time():
    clock = FakeClock(0.0)
    relay = make_relay(rate_bytes_per_second=2400.0, burst_bytes=2400)
    bound_pair(relay, clock.now())
    full = data(size=1200)
    assert [len(relay.datagram_received(full, A_ADDR, 0.0)) for _ in range(3)] == [1, 1, 0]
    assert relay.stats["dropped_over_rate"] == 1
    assert relay.stats["dropped_over_rate_bytes"] == 1200
    assert relay.datagram_received(full, B_ADDR, 0.0) == [Forward(full, A_ADDR)]  # own bucket
    clock.advance(0.25)  # 600 bytes back: not enough for 1200
    assert relay.datagram_received(full, A_ADDR, clock.now()) == []
    clock.advance(0.25)  # 1200 in all
    assert relay.datagram_received(full, A_ADDR, clock.now()) == [Forward(full, B_ADDR)]
    clock.advance(20.0)  # refills, but only up to the burst
    passed = [len(relay.datagram_received(full, A_ADDR, clock.now())) for _ in range(3)]
    assert passed == [1, 1, 0]
    assert relay.stats["dropped_over_rate"] == 3
    assert relay.stats["relayed_bytes"] == 6 * 1200


# -- expiry -----------------------------------------------------------------------------------

def test_lifetime_is_a_hard_cap_exactly_at_the_limit(clock):
    relay = make_relay(lifetime=60.0, idle_timeout=30.0)
    bound_pair(relay, clock.now())
    for _ in range(2):  # traffic every 20 s keeps it from idling
        clock.advance(20.0)
        assert relay.datagram_received(data(), A_ADDR, clock.now())
    assert relay.next_deadline() == T0 + 60.0  # lifetime (100+60) before idle (140+30)
    clock.set(T0 + 59.999)
    assert relay.datagram_received(data(), A_ADDR, clock.now()) == [Forward(data(), B_ADDR)]
    clock.set(T0 + 60.0)  # no tick: the data path checks the deadline itself
    assert relay.datagram_received(data(), A_ADDR, clock.now()) == []
    assert relay.stats["expired_lifetime"] == 1 and relay.allocation_count == 0
    assert relay.stats["dropped_unknown_session"] == 1
    assert relay.next_deadline() is None


def test_an_idle_allocation_is_freed_exactly_at_the_idle_timeout(clock):
    relay = make_relay(idle_timeout=30.0)
    bound_pair(relay, clock.now())
    assert relay.next_deadline() == T0 + 30.0
    last = T0 + 29.0
    assert relay.datagram_received(data(), A_ADDR, last)  # a relayed packet renews it
    assert relay.next_deadline() == last + 30.0
    relay.tick(last + 29.999)
    assert relay.allocation_count == 1
    relay.tick(last + 30.0)
    assert relay.allocation_count == 0 and relay.stats["expired_idle"] == 1
    assert relay.datagram_received(data(), A_ADDR, last + 30.0) == []


def test_dropped_packets_do_not_keep_an_allocation_alive(clock):
    relay = make_relay(idle_timeout=30.0)
    bound_pair(relay, clock.now())
    relay.datagram_received(data(), M_ADDR, T0 + 20.0)  # mallory's noise
    assert relay.next_deadline() == T0 + 30.0
    relay.tick(T0 + 30.0)
    assert relay.allocation_count == 0


def test_an_unbound_grant_expires_by_idle_too(relay):
    relay.grant(S1.hex(), "alice", "bob", T0)
    relay.tick(T0 + RelayLimits().idle_timeout)
    assert relay.allocation_count == 0 and relay.next_deadline() is None


# -- limits -----------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("max_allocations", 0), ("max_allocations_per_peer", -1), ("lifetime", 0.0),
    ("idle_timeout", float("nan")), ("rate_bytes_per_second", 0.0), ("burst_bytes", 0),
    ("burst_bytes", packet.MAX_PACKET_BYTES - 1),
])
def test_limits_must_be_positive_and_the_burst_must_hold_one_packet(field, value):
    with pytest.raises(ValueError, match=field):
        RelayLimits(**{field: value})
