"""Whole sessions: the NAT matrix, birthday mode, path loss, closing, strays, logging.

Most tests run two PeerSessions in the in-memory network of p2psim (FakeClock time); a
few poke one session directly.
"""

from __future__ import annotations

import itertools
import logging
import random

import pytest

from netsprint.clock import FakeClock
from netsprint.p2p import packet
from netsprint.p2p.punch import PunchConfig, SendDatagram
from netsprint.p2p.session import Deliver, PeerSession, SendSignal, SessionConfig
from netsprint.p2p.states import State
from netsprint.signaling import protocol as sig

from p2psim import (ALICE_HOST, ALICE_SRFLX, BOB_SRFLX, NAT_TYPES, SERVER, Sim, decoded,
                    drive, ms, probing_session)

pytestmark = pytest.mark.unit

# RFC 5128 section 3.3 / RFC 4787: punching fails when one side maps per destination and
# the other filters by address *and port*: the symmetric side's probes leave from ports
# the other never sent to, and the other's probes reach a port mapped for STUN only.
NO_DIRECT = {frozenset({"symmetric"}), frozenset({"symmetric", "port-restricted"})}
PAIRS = list(itertools.product(NAT_TYPES, repeat=2))


def exchange(sim: Sim, tag: bytes) -> None:
    """Each side sends one DATA body on its path; run until both arrived."""
    sim.handle(sim.a, sim.a.session.send(b"from alice " + tag, sim.clock.now()))
    sim.handle(sim.b, sim.b.session.send(b"from bob " + tag, sim.clock.now()))
    sim.run(sim.clock.now() + 0.5)
    assert b"from alice " + tag in sim.b.delivered
    assert b"from bob " + tag in sim.a.delivered


@pytest.mark.parametrize("nat_a, nat_b", PAIRS, ids=[f"{a}~{b}" for a, b in PAIRS])
def test_matrix_direct_exactly_where_theory_allows(nat_a, nat_b):
    sim = Sim(nat_a, nat_b, seed=PAIRS.index((nat_a, nat_b))).start()
    sim.run_until_settled()
    want_direct = frozenset({nat_a, nat_b}) not in NO_DIRECT
    want = (State.CONNECTED, "direct") if want_direct else (State.RELAYED, "relay")
    for peer in (sim.a, sim.b):
        assert (peer.session.state, peer.session.path_kind) == want, peer.name
    if not want_direct:
        assert [c.new for c in sim.a.changes] == [State.SIGNALING, State.PROBING,
                                                  State.FALLBACK, State.RELAYED]
        assert sim.a.session.path == SERVER
    exchange(sim, b"1")
    assert (sim.relay.stats["relayed_packets"] > 0) is (not want_direct)


def test_happy_path_reasons():
    sim = Sim("full-cone", "restricted").start()
    sim.run_until_settled()
    changes = sim.a.session.transitions
    assert [(c.old, c.new) for c in changes] == [
        (State.INIT, State.SIGNALING), (State.SIGNALING, State.PROBING),
        (State.PROBING, State.CONNECTED)]
    assert changes[0].reason == "2 candidates gathered"
    assert changes[1].reason == "Answer with 2 candidates"
    assert changes[2].reason.startswith(f"PROBE_ACK from {sim.a.session.path}")
    assert changes[2].path == sim.a.session.path == (sim.b.nat.public_ip,
                                                     sim.b.nat.mappings[((sim.b.ip, 40000),)])
    assert sim.b.session.transitions[1].reason == "Offer with 2 candidates"


BIRTHDAY = SessionConfig(punch=PunchConfig(birthday=True, birthday_sockets=64,
                                           birthday_probes=512, birthday_ports=(1024, 4095)))


@pytest.mark.parametrize("nat_a, nat_b", [("symmetric", "port-restricted"),
                                          ("port-restricted", "symmetric")])
def test_birthday_mode_makes_symmetric_to_port_restricted_direct(nat_a, nat_b):
    # 64 mappings among 3072 ports, 512 distinct random ports probed:
    # P(miss) ~ (1 - 64/3072)^512 ~ 2e-5 per trial, so 20 trials should all connect.
    direct = 0
    for seed in range(20):
        sim = Sim(nat_a, nat_b, config=BIRTHDAY, seed=seed, nat_ports=(1024, 4095)).start()
        sim.run_until_settled()
        kinds = {sim.a.session.path_kind, sim.b.session.path_kind}
        direct += kinds == {"direct"}
        symmetric = sim.a if nat_a == "symmetric" else sim.b
        if kinds == {"direct"}:
            assert symmetric.session.path_sock > 0  # one of the extra sockets
            assert symmetric.sockets == {0, symmetric.session.path_sock}  # the rest closed
    assert direct >= 18


def test_a_birthday_path_that_dies_is_repunched_from_open_sockets_only():
    # Several spray probes hit extra sockets; only the path's socket stays open. Sim.send
    # fails on a datagram from a closed socket.
    for seed in range(5):
        sim = Sim("symmetric", "port-restricted", config=BIRTHDAY, seed=seed,
                  nat_ports=(1024, 4095)).start()
        sim.run_until_settled()
        assert sim.a.session.state is State.CONNECTED
        sim.cut_direct = True
        sim.run(sim.clock.now() + 10.0, stop=lambda: sim.a.session.state
                is sim.b.session.state is State.RELAYED)
        assert sim.a.session.state is sim.b.session.state is State.RELAYED, seed


def test_without_birthday_the_same_trials_are_relayed():
    plain = SessionConfig(punch=PunchConfig(birthday=False))
    for seed in range(5):
        sim = Sim("symmetric", "port-restricted", config=plain, seed=seed,
                  nat_ports=(1024, 4095)).start()
        sim.run_until_settled()
        assert (sim.a.session.path_kind, sim.b.session.path_kind) == ("relay", "relay")


def test_birthday_cannot_beat_two_symmetric_nats():
    sim = Sim("symmetric", "symmetric", config=BIRTHDAY, nat_ports=(1024, 4095)).start()
    sim.run_until_settled()
    assert sim.a.sockets == {0} and sim.b.sockets == {0}  # nobody opened extra sockets
    assert sim.a.session.path_kind == sim.b.session.path_kind == "relay"


def test_direct_punching_survives_heavy_loss():
    sim = Sim("port-restricted", "restricted", seed=11, loss=0.3).start()
    sim.run_until_settled()
    assert sim.lost > 0
    assert sim.a.session.path_kind == sim.b.session.path_kind == "direct"


def test_path_cut_reprobes_then_relays_and_data_flows_before_and_after():
    sim = Sim("full-cone", "port-restricted").start()
    sim.run_until_settled()
    exchange(sim, b"before")
    cut_at = sim.clock.now()
    sim.cut_direct = True
    sim.run(cut_at + 15.0, stop=lambda: sim.a.session.state is State.RELAYED
            and sim.b.session.state is State.RELAYED)
    for peer in (sim.a, sim.b):
        after_cut = [c for c in peer.session.transitions if c.old is not State.INIT][2:]
        assert [(c.old, c.new) for c in after_cut] == [
            (State.CONNECTED, State.PROBING), (State.PROBING, State.FALLBACK),
            (State.FALLBACK, State.RELAYED)], peer.name
        assert peer.session.path == SERVER
    # dead within dead_after (3 s) of the last packet heard, relayed within 3 s more + rtt
    assert sim.clock.now() - cut_at < 3.0 + 3.0 + 0.2
    exchange(sim, b"after")
    assert sim.relay.stats["relayed_packets"] >= 2
    sim.run(sim.clock.now() + 10.0)  # relay keepalives keep it up
    assert sim.a.session.state is sim.b.session.state is State.RELAYED


def test_relay_refused_fails_both():
    sim = Sim("symmetric", "symmetric", refuse_relay=True).start()
    sim.run_until_settled()
    assert sim.a.session.state is sim.b.session.state is State.FAILED
    assert "relay refused" in sim.a.session.transitions[-1].reason


def test_relayed_path_dead_rebinds_with_the_same_grant():
    sim = Sim("symmetric", "symmetric").start()
    sim.run_until_settled()
    requests = len([m for m in sim.a.signals_sent if isinstance(m, sig.RelayRequest)])
    binds = sim.a.session.stats["relay_binds_sent"]
    sim.relay.release_peer("alice")  # the relay forgets the session: nothing gets through
    sim.run(sim.clock.now() + 3.5)
    assert sim.a.session.state is State.FALLBACK
    assert sim.a.session.stats["relay_binds_sent"] > binds
    assert len([m for m in sim.a.signals_sent if isinstance(m, sig.RelayRequest)]) == requests


def test_bye_closes_both():
    sim = Sim("none", "restricted").start()
    sim.run_until_settled()
    sim.handle(sim.a, sim.a.session.close(sim.clock.now()))
    sim.run(sim.clock.now() + 0.1)
    assert sim.a.session.state is sim.b.session.state is State.CLOSED
    assert sim.b.session.transitions[-1].reason.startswith("BYE from")
    assert sim.a.session.next_deadline() is sim.b.session.next_deadline() is None
    assert sim.a.session.send(b"late", sim.clock.now()) == []


def test_peer_left_closes():
    sim = Sim("none", "none").start()
    sim.run(0.03)  # bob got the offer, alice waits for the answer
    assert sim.a.session.state is State.SIGNALING
    sim.peer_left(sim.a)
    assert sim.a.session.state is State.CLOSED
    assert sim.a.session.transitions[-1].reason == "signaling: peer bob left"


def test_signaling_timeout_fails_at_ten_seconds():
    clock = FakeClock()
    session = PeerSession("alice", "bob", initiator=True, now=0.0, rng=random.Random(1))
    actions = session.candidates_gathered([ALICE_HOST], 0.0)
    assert isinstance(actions[1], SendSignal) and isinstance(actions[1].msg, sig.Offer)
    timeline = drive(session, 60.0, clock)
    assert [(ms(t), a.new) for t, a in timeline] == [(10000, State.FAILED)]


def test_an_offer_before_gathering_is_kept_until_then():
    bob = PeerSession("bob", "alice", initiator=False, now=0.0, rng=random.Random(2))
    offer = sig.Offer(to="bob", candidates=(ALICE_SRFLX,), session="00112233aabbccdd",
                      from_="alice")
    assert bob.signal_received(offer, 0.1) == []
    assert bob.session_id == bytes.fromhex("00112233aabbccdd")
    actions = bob.candidates_gathered([BOB_SRFLX], 0.2)
    answer = [a.msg for a in actions if isinstance(a, SendSignal)]
    assert answer == [sig.Answer(to="alice", candidates=(BOB_SRFLX,),
                                 session="00112233aabbccdd")]
    assert bob.state is State.PROBING
    assert [a.addr for a in actions if isinstance(a, SendDatagram)] == [
        (ALICE_SRFLX.ip, ALICE_SRFLX.port)]


def test_signals_for_another_session_or_sender_are_ignored():
    session, _ = probing_session()
    other = sig.Candidate(to="alice", candidate=BOB_SRFLX, session="ffffffffffffffff",
                          from_="bob")
    stranger = sig.Candidate(to="alice", candidate=BOB_SRFLX, session=session.session_hex,
                             from_="mallory")
    assert session.signal_received(other, 0.01) == []
    assert session.signal_received(stranger, 0.01) == []
    assert session.stats["bad_signal"] == 2


def test_trickled_candidate_is_probed_at_once():
    session, _ = probing_session()
    late = sig.CandidateAddr("192.0.2.44", 4444, "srflx")
    actions = session.signal_received(
        sig.Candidate(to="alice", candidate=late, session=session.session_hex, from_="bob"),
        0.02)
    assert [(a.addr, decoded(a).type) for a in actions] == [
        (("192.0.2.44", 4444), packet.PacketType.PROBE)]


def test_probe_is_answered_to_where_it_came_from():
    session, _ = probing_session()  # bob's only candidate: his srflx 203.0.113.20:6000
    actual = ("203.0.113.20", 61111)  # his NAT used another port towards us
    actions = session.datagram_received(packet.probe(session.session_id, b"T" * 8), actual,
                                        0.03, sock=0)
    ack, triggered = actions
    assert (ack.addr, ack.sock) == (actual, 0)
    assert decoded(ack).type is packet.PacketType.PROBE_ACK
    assert packet.parse_probe_ack(decoded(ack).body) == (b"T" * 8, actual)
    assert (triggered.addr, decoded(triggered).type) == (actual, packet.PacketType.PROBE)
    assert not any(a.addr == (BOB_SRFLX.ip, BOB_SRFLX.port) for a in actions)
    # the triggered check's ack connects us on that address
    ack_back = packet.probe_ack(session.session_id, decoded(triggered).body,
                                (ALICE_SRFLX.ip, ALICE_SRFLX.port))
    session.datagram_received(ack_back, actual, 0.04)
    assert (session.state, session.path) == (State.CONNECTED, actual)


def test_strays_are_dropped_and_counted(caplog):
    sim = Sim("none", "none").start()
    sim.run_until_settled()
    alice = sim.a.session
    now = sim.clock.now()
    caplog.set_level(logging.DEBUG, logger="netsprint.p2p")
    strays = [
        (packet.data(bytes(8), b"not yours"), "wrong_session"),
        (packet.data(b"\x01" * 8, b"not yours either"), "wrong_session"),
        (b"NS\x01\x01" + alice.session_id + b"abc", "undecodable"),  # PROBE, 3-byte txid
        (b"NS\x01\x04" + alice.session_id[:3], "not_p2p"),  # shorter than a header
        (b"NS\x09\x04" + alice.session_id, "undecodable"),  # version 9
        (b"\x00\x01\x00\x00" + bytes(16), "not_p2p"),  # looks like STUN
        (packet.relay_bind(alice.session_id, bytes(16)), "unexpected_packet"),
        (packet.probe_ack(alice.session_id, bytes(8), ("192.0.2.1", 1)), "unmatched_ack"),
    ]
    for data, _ in strays:
        assert alice.datagram_received(data, ("192.0.2.99", 9999), now) == []
    for counter in {c for _, c in strays}:
        assert alice.stats[counter] == sum(c == counter for _, c in strays), counter
    assert alice.state is State.CONNECTED and sim.a.delivered == []
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == len(strays) and {r.levelno for r in dropped} == {logging.DEBUG}
    mine = alice.datagram_received(packet.data(alice.session_id, b"yes"), ("192.0.2.99", 1), now)
    assert mine == [Deliver(b"yes")]


def test_our_own_probe_coming_back_is_not_answered():
    session, first = probing_session()
    own = first[1]
    assert session.datagram_received(own.data, (ALICE_SRFLX.ip, ALICE_SRFLX.port), 0.01) == []
    assert session.stats["own_probe"] == 1


def test_transitions_are_logged_with_the_connection(caplog):
    caplog.set_level(logging.INFO, logger="netsprint.p2p")
    sim = Sim("full-cone", "full-cone").start()
    sim.run_until_settled()
    records = [r for r in caplog.records if r.name == "netsprint.p2p.session"
               and r.levelno == logging.INFO]
    assert {r.conn for r in records} == {"alice->bob", "bob->alice"}
    alice_lines = [r.getMessage() for r in records if r.conn == "alice->bob"]
    assert len(alice_lines) == len(sim.a.session.transitions) == 3
    for line, change in zip(alice_lines, sim.a.session.transitions):
        assert change.reason in line and change.new.name in line
