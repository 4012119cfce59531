"""Hole punching schedules in FakeClock time: probe rounds, relay binds, birthday mode."""

from __future__ import annotations

import random

import pytest

from netsprint.clock import FakeClock
from netsprint.p2p import packet
from netsprint.p2p.punch import PunchConfig, Puncher, SendDatagram
from netsprint.p2p.session import (CloseSockets, OpenSockets, SendSignal, SessionConfig,
                                   StateChanged)
from netsprint.p2p.states import State
from netsprint.signaling import protocol as sig
from netsprint.stun.nat import ADDRESS_AND_PORT_DEPENDENT, ENDPOINT_INDEPENDENT

from p2psim import BOB_HOST, BOB_SRFLX, decoded, drive, ms, probing_session

pytestmark = pytest.mark.unit

SESSION = bytes(range(8))
RELAY = ("203.0.113.100", 7000)
TOKEN = bytes(range(100, 116))


def probe_times(timeline, addr) -> list[int]:
    return [ms(t) for t, a in timeline if isinstance(a, SendDatagram) and a.addr == addr
            and decoded(a).type is packet.PacketType.PROBE]


def changes(timeline) -> list[tuple[int, State]]:
    return [(ms(t), a.new) for t, a in timeline if isinstance(a, StateChanged)]


def test_the_probe_schedule_in_ms_then_fallback():
    clock = FakeClock()
    session, first = probing_session()
    timeline = [(0.0, a) for a in first] + drive(session, 10.0, clock,
                                                  stop=lambda s: s.state is State.FALLBACK)
    srflx = (BOB_SRFLX.ip, BOB_SRFLX.port)
    assert probe_times(timeline, srflx) == [0, 50, 150, 350, 750, 1150, 1550, 1950, 2350, 2750]
    assert changes(timeline) == [(0, State.PROBING), (3000, State.FALLBACK)]
    request = [a.msg for t, a in timeline if isinstance(a, SendSignal)]
    assert request == [sig.RelayRequest(to="bob", session=session.session_hex)]
    assert "10 probes" in session.transitions[-1].reason


def test_every_candidate_every_round_with_fresh_txids():
    clock = FakeClock()
    session, first = probing_session(remote=(BOB_HOST, BOB_SRFLX))
    timeline = [(0.0, a) for a in first] + drive(session, 0.2, clock)
    host, srflx = (BOB_HOST.ip, BOB_HOST.port), (BOB_SRFLX.ip, BOB_SRFLX.port)
    assert probe_times(timeline, host) == probe_times(timeline, srflx) == [0, 50, 150]
    txids = [decoded(a).body for _, a in timeline if isinstance(a, SendDatagram)]
    assert len(txids) == 6 and len(set(txids)) == 6
    assert session.stats["probes_sent"] == 6


@pytest.mark.parametrize("interval, backoff, cap, timeout", [
    (0.1, 2.0, 0.4, 1.0), (0.02, 3.0, 0.5, 2.0), (0.25, 1.0, 0.25, 1.0)])
def test_custom_schedules_follow_the_rule(interval, backoff, cap, timeout):
    config = PunchConfig(probe_interval=interval, probe_backoff=backoff,
                         probe_interval_max=cap, punch_timeout=timeout)
    puncher = Puncher(config, SESSION, random.Random(1))
    target = (("192.0.2.9", 9000), 0)
    times = [0.0] * len(puncher.start(10.0, [target]))
    now = 10.0
    while not puncher.timed_out(now):
        now = puncher.next_deadline()
        times += [now - 10.0] * len(puncher.poll(now))
    want, at, wait = [], 0.0, interval  # waits: interval, *backoff each time, capped
    while at < timeout:
        want.append(at)
        at += wait
        wait = min(wait * backoff, cap)
    assert times == pytest.approx(want)
    assert now == pytest.approx(10.0 + timeout)


def test_acks_match_only_our_txids_and_stop_forgets_them():
    puncher = Puncher(PunchConfig(), SESSION, random.Random(2))
    sent = puncher.start(0.0, [(("192.0.2.9", 9000), 3)])
    txid = packet.decode_packet(sent[0].data).body
    assert puncher.acked(txid) == (("192.0.2.9", 9000), 3)
    assert puncher.acked(bytes(8)) is None
    puncher.halt()
    assert puncher.poll(1.0) == [] and puncher.acked(txid) is not None  # late acks count
    puncher.stop()
    assert puncher.acked(txid) is None and puncher.next_deadline() is None


def test_probes_sent_counts_the_current_attempt_only():
    puncher = Puncher(PunchConfig(), SESSION, random.Random(5))
    targets = [(("192.0.2.9", 9000), 0), (("192.0.2.10", 9000), 0)]
    first = puncher.start(0.0, targets) + puncher.poll(0.05)
    assert len(first) == puncher.probes_sent == 4
    again = puncher.start(1.0, targets[:1])
    assert len(again) == puncher.probes_sent == 1


def test_a_triggered_check_goes_out_at_once_and_joins_the_rounds():
    puncher = Puncher(PunchConfig(), SESSION, random.Random(3))
    puncher.start(0.0, [(("192.0.2.9", 9000), 0)])
    now_probe = puncher.add_target(("198.51.100.7", 7777), 0, 0.02)
    assert [(p.addr, p.sock) for p in now_probe] == [(("198.51.100.7", 7777), 0)]
    round_two = puncher.poll(0.05)
    assert {p.addr for p in round_two} == {("192.0.2.9", 9000), ("198.51.100.7", 7777)}


def fallback_session(clock: FakeClock, config: SessionConfig = SessionConfig()):
    session, _ = probing_session(config=config)
    clock.set(config.punch.punch_timeout)
    session.tick(clock.now())
    assert session.state is State.FALLBACK
    return session


def grant(session, lifetime: float = 600.0) -> sig.RelayGranted:
    return sig.RelayGranted(session=session.session_hex, token=TOKEN.hex(),
                            relay=sig.Endpoint(*RELAY), lifetime=lifetime)


def test_relay_bind_every_200_ms_then_failed_at_relay_timeout():
    clock = FakeClock()
    session = fallback_session(clock)  # FALLBACK at 3.0
    clock.set(3.5)
    timeline = [(3.5, a) for a in session.signal_received(grant(session), 3.5)]
    timeline += drive(session, 20.0, clock)
    binds = [ms(t) for t, a in timeline if isinstance(a, SendDatagram)]
    assert binds == list(range(3500, 8000, 200))  # 3.5, 3.7 ... 7.9 s
    assert all(a.addr == RELAY and decoded(a) == packet.Packet(
        packet.PacketType.RELAY_BIND, session.session_id, TOKEN)
        for _, a in timeline if isinstance(a, SendDatagram))
    assert changes(timeline) == [(8000, State.FAILED)]  # 3.0 + relay_timeout 5.0
    assert session.next_deadline() is None


def test_relay_bound_makes_the_relay_the_path():
    clock = FakeClock()
    session = fallback_session(clock)
    session.signal_received(grant(session), 3.1)
    stray = session.datagram_received(packet.relay_bound(session.session_id, 600),
                                      ("192.0.2.66", 7000), 3.15)
    assert stray == [] and session.stats["unexpected_packet"] == 1  # not from the relay
    actions = session.datagram_received(packet.relay_bound(session.session_id, 600), RELAY,
                                        3.2)
    assert [(a.old, a.new) for a in actions] == [(State.FALLBACK, State.RELAYED)]
    assert (session.path, session.path_kind, session.connected_at) == (RELAY, "relay", 3.2)
    sent = session.send(b"hi", 3.3)
    assert sent == [SendDatagram(packet.data(session.session_id, b"hi"), RELAY, 0)]


def test_relay_refused_fails():
    clock = FakeClock()
    session = fallback_session(clock)
    refusal = sig.Error(code=sig.RELAY_REFUSED, reason="full", ref="relay_request")
    actions = session.signal_received(refusal, 3.1)
    assert [(a.new, "relay_refused" in a.reason) for a in actions] == [(State.FAILED, True)]


def test_a_late_probe_ack_in_fallback_connects_directly():
    session, first = probing_session()
    txid = decoded(first[1]).body
    session.tick(3.0)
    assert session.state is State.FALLBACK
    ack = packet.probe_ack(session.session_id, txid, ("203.0.113.10", 5000))
    actions = session.datagram_received(ack, ("203.0.113.20", 6001), 3.05)
    assert [(a.old, a.new) for a in actions] == [(State.FALLBACK, State.CONNECTED)]
    assert (session.path, session.path_kind) == (("203.0.113.20", 6001), "direct")
    assert session.next_deadline() == pytest.approx(3.05 + 1.0)  # heartbeat, no more binds


# -- birthday mode ---------------------------------------------------------------------------

BIRTHDAY = PunchConfig(birthday=True, birthday_sockets=8, birthday_probes=100,
                       birthday_rate=1000.0, birthday_ports=(2000, 2999))
EIM, APD = ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT


def test_spray_paces_distinct_random_ports_within_range():
    puncher = Puncher(BIRTHDAY, SESSION, random.Random(4))
    sent = puncher.start(0.0, [(("203.0.113.20", 6000), 0)], spray_ip="203.0.113.20")
    now, timeline = 0.0, [(0.0, p) for p in sent]
    while (deadline := puncher.next_deadline()) is not None and deadline < 1.0:
        now = deadline
        timeline += [(now, p) for p in puncher.poll(now)]
    spray = [(t, p) for t, p in timeline if p.addr != ("203.0.113.20", 6000)]
    ports = [p.addr[1] for _, p in spray]
    assert len(ports) == 100 and len(set(ports)) == 100
    assert all(2000 <= port <= 2999 and p.sock == 0 for port, (_, p) in zip(ports, spray))
    assert {p.addr[0] for _, p in spray} == {"203.0.113.20"}
    # probe k is due at k / rate: 1 ms apart at 1000/s
    assert [ms(t) for t, _ in spray] == list(range(100))


def test_symmetric_side_opens_sockets_and_probes_from_each():
    config = SessionConfig(punch=BIRTHDAY)
    session, actions = probing_session(config=config, local_mapping=APD, remote_mapping=EIM,
                                       remote=(BOB_HOST, BOB_SRFLX))
    assert actions[1] == OpenSockets(8)  # before any datagram from sockets 1..8
    probes = [a for a in actions if isinstance(a, SendDatagram)]
    srflx = (BOB_SRFLX.ip, BOB_SRFLX.port)
    assert sorted(p.sock for p in probes if p.addr == srflx) == list(range(0, 9))
    assert [p.sock for p in probes if p.addr != srflx] == [0]
    # an answer on socket 5 connects there and closes the other extra sockets
    txid = next(decoded(p).body for p in probes if p.sock == 5)
    ack = packet.probe_ack(session.session_id, txid, ("203.0.113.10", 31000))
    done = session.datagram_received(ack, srflx, 0.02, sock=5)
    assert done[1:] == [CloseSockets(keep=5)]
    assert (session.state, session.path_sock) == (State.CONNECTED, 5)


def test_other_side_sprays_the_symmetric_ip():
    config = SessionConfig(punch=BIRTHDAY)
    session, actions = probing_session(config=config, local_mapping=EIM, remote_mapping=APD)
    assert not any(isinstance(a, OpenSockets) for a in actions)
    spray = [a for a in actions if isinstance(a, SendDatagram)
             and a.addr != (BOB_SRFLX.ip, BOB_SRFLX.port)]
    assert len(spray) == 1 and spray[0].addr[0] == BOB_SRFLX.ip  # probe 0 is due at t0


@pytest.mark.parametrize("local, remote, birthday", [
    (APD, APD, True), (EIM, EIM, True), (None, APD, True), (APD, EIM, False)])
def test_no_birthday_unless_exactly_one_side_is_symmetric(local, remote, birthday):
    config = SessionConfig(punch=PunchConfig(birthday=birthday, birthday_sockets=8))
    _, actions = probing_session(config=config, local_mapping=local, remote_mapping=remote)
    assert not any(isinstance(a, OpenSockets) for a in actions)
    assert len([a for a in actions if isinstance(a, SendDatagram)]) == 1


@pytest.mark.parametrize("bad", [dict(probe_interval=0), dict(probe_backoff=0.5),
                                 dict(probe_interval_max=0.01), dict(birthday_sockets=0),
                                 dict(birthday_ports=(2000, 1000)), dict(punch_timeout=-1)])
def test_config_is_validated(bad):
    with pytest.raises(ValueError):
        PunchConfig(**bad)
