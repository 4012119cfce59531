"""Keepalive and dead-path schedules, alone and inside a connected session."""

from __future__ import annotations

import pytest

from netsprint.clock import FakeClock
from netsprint.p2p import packet
from netsprint.p2p.heartbeat import DEAD, KEEPALIVE, Heartbeat, HeartbeatConfig
from netsprint.p2p.punch import SendDatagram
from netsprint.p2p.session import SessionConfig, StateChanged
from netsprint.p2p.states import State

from p2psim import decoded, drive, ms, probing_session

pytestmark = pytest.mark.unit

PEER = ("203.0.113.20", 6000)


def test_keepalive_exactly_after_one_second_of_send_silence():
    beat = Heartbeat(HeartbeatConfig(), now=10.0)
    assert beat.next_deadline() == 11.0
    assert beat.poll(10.999) is None
    assert beat.poll(11.0) == KEEPALIVE
    beat.on_sent(11.0)
    beat.on_received(11.5)
    assert beat.poll(11.999) is None and beat.next_deadline() == 12.0


def test_dead_exactly_after_three_seconds_of_receive_silence():
    beat = Heartbeat(HeartbeatConfig(), now=0.0)
    for t in (1.0, 2.0):
        beat.on_sent(t)
    assert beat.poll(2.999) is None
    assert beat.poll(3.0) == DEAD  # dead wins over a keepalive due at the same instant
    beat.on_received(3.0)
    assert beat.poll(3.0) == KEEPALIVE
    assert beat.next_deadline() == 3.0


def test_times_never_go_back():
    beat = Heartbeat(HeartbeatConfig(keepalive_interval=0.5, dead_after=2.0), now=5.0)
    beat.on_received(4.0)
    beat.on_sent(4.0)
    assert (beat.last_sent, beat.last_received) == (5.0, 5.0)


def connected_session(clock: FakeClock, config: SessionConfig = SessionConfig()):
    """Alice CONNECTED to PEER at t=0.1."""
    session, first = probing_session(config=config)
    txid = decoded(first[1]).body
    clock.set(0.1)
    session.datagram_received(packet.probe_ack(session.session_id, txid, ("203.0.113.10", 5000)),
                              PEER, clock.now())
    assert session.state is State.CONNECTED
    return session


def keepalives(timeline) -> list[tuple[float, SendDatagram]]:
    return [(t, a) for t, a in timeline if isinstance(a, SendDatagram)
            and decoded(a).type is packet.PacketType.KEEPALIVE]


def keepalive_times(timeline) -> list[int]:
    return [ms(t) for t, _ in keepalives(timeline)]


def drive_with_traffic(session, clock: FakeClock, times, until: float, traffic) -> list:
    """Drive `session` up to each of `times`, where `traffic(t)` happens and returns its
    actions; then on to `until`. The whole timeline: [(time, action), ...]."""
    timeline = []
    for t in times:
        timeline += drive(session, t, clock)
        clock.set(t)
        timeline += [(t, a) for a in traffic(t)]
    return timeline + drive(session, until, clock)


def test_session_keepalives_then_path_dead_at_three_seconds():
    clock = FakeClock()
    session = connected_session(clock)
    timeline = drive(session, 10.0, clock, stop=lambda s: s.state is not State.CONNECTED)
    sent = keepalives(timeline)
    assert [ms(t) for t, _ in sent] == [1100, 2100]
    assert [a.addr for _, a in sent] == [PEER, PEER]
    assert [packet.u32(decoded(a).body) for _, a in sent] == [1, 2]
    dead = [(ms(t), a.old, a.new) for t, a in timeline if isinstance(a, StateChanged)]
    assert dead == [(3100, State.CONNECTED, State.PROBING)]


def test_received_traffic_keeps_the_path_alive():
    clock = FakeClock()
    session = connected_session(clock)
    heard = packet.keepalive(session.session_id, 1)
    timeline = drive_with_traffic(session, clock, (0.6, 1.6, 2.6, 3.6, 4.6), 5.0,
                                  lambda t: session.datagram_received(heard, PEER, t))
    assert session.state is State.CONNECTED
    assert keepalive_times(timeline) == [1100, 2100, 3100, 4100]


def test_data_traffic_suppresses_keepalives():
    clock = FakeClock()
    session = connected_session(clock)
    ack = packet.data(session.session_id, b"ack")
    timeline = drive_with_traffic(
        session, clock, (0.5, 1.0, 1.5, 2.0, 2.5), 4.0,
        lambda t: session.send(b"chunk", t) + session.datagram_received(ack, PEER, t))
    assert keepalive_times(timeline) == [3500]  # 1.0 s after the last data at 2.5 s
    assert session.stats["data_sent"] == 5 and session.stats["keepalives_sent"] == 1


@pytest.mark.parametrize("interval, dead_after", [(0.25, 1.0), (2.0, 5.0)])
def test_custom_heartbeat_config(interval, dead_after):
    clock = FakeClock()
    session = connected_session(clock, SessionConfig(
        heartbeat=HeartbeatConfig(keepalive_interval=interval, dead_after=dead_after)))
    timeline = drive(session, 20.0, clock, stop=lambda s: s.state is not State.CONNECTED)
    want = [ms(0.1 + k * interval) for k in range(1, 100) if k * interval < dead_after]
    assert keepalive_times(timeline) == want
    dead = [(ms(t), a.new) for t, a in timeline if isinstance(a, StateChanged)]
    assert dead == [(ms(0.1 + dead_after), State.PROBING)]


@pytest.mark.parametrize("bad", [dict(keepalive_interval=0), dict(dead_after=-1.0)])
def test_config_is_validated(bad):
    with pytest.raises(ValueError):
        HeartbeatConfig(**bad)
