"""The reliable channel, in simulated time: two channels joined by seeded lossy links, the
RFC 6298 timer exactly, flow control and the persist timer, a path switch, malformed
segments."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsprint.clock import FakeClock
from netsprint.errors import DecodeError
from netsprint.p2p.channel import (FLAG_ACK_ONLY, FLAG_WINDOW_PROBE, MAX_SEGMENT_PAYLOAD_BYTES,
                                   SEGMENT_HEADER_BYTES, ChannelConfig, ChannelError,
                                   ReliableChannel, Segment, SegmentError, decode_segment,
                                   encode_segment, unwrap_seq)
from netsprint.p2p.packet import MAX_BODY_BYTES

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


# -- a simulated network --------------------------------------------------------------------

@dataclass
class Link:
    """One direction of a path: fixed delay plus uniform jitter (jitter reorders), loss and
    duplication drawn from a seeded rng, or `drop` deciding per datagram."""

    rng: random.Random
    delay: float = 0.01
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    up: bool = True
    drop: object = None  # callable(body) -> bool, decided before `loss`
    carried: int = 0

    def arrivals(self, body: bytes, now: float) -> list[float]:
        self.carried += 1
        if not self.up or (self.drop is not None and self.drop(body)):
            return []
        if self.rng.random() < self.loss:
            return []
        copies = 2 if self.rng.random() < self.duplicate else 1
        return [now + self.delay + self.rng.uniform(0, self.jitter) for _ in range(copies)]


@dataclass
class Sim:
    """Two channels, `a` writing `data` and `b` reading it (and `b` writing `back` for `a`
    to read), over links a->b and b->a. Events: datagram arrivals and the channels'
    deadlines; the time jumps from one to the next, so a simulated minute costs
    milliseconds."""

    a: ReliableChannel
    b: ReliableChannel
    ab: Link
    ba: Link
    data: bytes = b""
    write_sizes: list[int] = field(default_factory=list)
    now: float = 0.0
    reads: object = None  # an iterator of booleans: read at this turn or not (then always)
    received: bytearray = field(default_factory=bytearray)
    written: int = 0
    back: bytes = b""
    back_received: bytearray = field(default_factory=bytearray)
    back_written: int = 0
    steps: int = 0
    _queue: list = field(default_factory=list)
    _order: itertools.count = field(default_factory=itertools.count)

    def run_until(self, done, max_time: float = 300.0, max_steps: int = 500_000) -> None:
        while not done(self):
            self.step(max_time)
            if self.steps > max_steps:
                raise AssertionError(f"no end after {max_steps} steps at t={self.now:.3f}")

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        self.run_until(lambda sim: sim.now >= end, max_time=end)

    def step(self, max_time: float) -> None:
        self.steps += 1
        self._application()
        times = self._event_times()
        if not times and self.reads is not None:
            self.reads = None  # the read pattern must not outlast a quiet network
            self._application()
            times = self._event_times()
        if not times or min(times) > max_time:
            if self.now >= max_time:
                raise AssertionError(f"stalled at t={self.now:.3f}: nothing more will happen")
            self.now = max_time
            return
        self.now = max(self.now, min(times))
        while self._queue and self._queue[0][0] <= self.now:
            _, _, channel, body = heapq.heappop(self._queue)
            channel.segment_received(body, self.now)
        self._application()
        self._carry(self.a, self.b, self.ab)
        self._carry(self.b, self.a, self.ba)

    def _event_times(self) -> list[float]:
        times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return times

    def _application(self) -> None:
        """The application writes whenever the buffer has room and reads (unless told
        not to) whenever it gets control."""
        self.written = self._write(self.a, self.data, self.written)
        self.back_written = self._write(self.b, self.back, self.back_written)
        if self.reads is None or next(self.reads, True):
            self.received += self.b.read()
        if self.back:
            self.back_received += self.a.read()

    def _write(self, channel: ReliableChannel, data: bytes, written: int) -> int:
        """Offer `data` from `written` on; returns how much of it is written now."""
        while written < len(data):
            size = self.write_sizes[self.steps % len(self.write_sizes)] if self.write_sizes \
                else len(data)
            accepted = channel.write(data[written:written + size])
            written += accepted
            if accepted == 0:
                break
        return written

    def _carry(self, source: ReliableChannel, dest: ReliableChannel, link: Link) -> None:
        for body in source.poll(self.now):
            for arrival in link.arrivals(body, self.now):
                heapq.heappush(self._queue, (arrival, next(self._order), dest, body))


def make_sim(data: bytes, *, config: ChannelConfig = ChannelConfig(), seed: int = 1,
             **link) -> Sim:
    rng = random.Random(seed)
    return Sim(ReliableChannel(config, now=0.0), ReliableChannel(config, now=0.0),
               Link(rng, **link), Link(rng, **link), data=data)


def delivered(sim: Sim) -> bool:
    return len(sim.received) >= len(sim.data) and sim.a.idle()


def random_bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


# -- the stream arrives intact ----------------------------------------------------------------

@pytest.mark.parametrize("loss, duplicate, jitter", [
    (0.0, 0.0, 0.0),
    (0.0, 0.05, 0.02),
    (0.05, 0.02, 0.02),
    (0.20, 0.05, 0.02),
])
def test_one_mib_arrives_intact_and_in_order(loss, duplicate, jitter):
    data = random_bytes(MIB)
    sim = make_sim(data, loss=loss, duplicate=duplicate, jitter=jitter)
    sim.run_until(delivered)
    assert len(sim.received) == len(data)  # nothing delivered twice ...
    assert sim.received == data            # ... and all of it, in order
    retransmits = sim.a.stats["retransmits"]
    if loss:
        assert retransmits > 0
        assert sim.a.stats["fast_retransmits"] > 0
    elif not jitter:
        assert retransmits == 0 and sim.a.stats["timeouts"] == 0
    if duplicate:
        assert sim.b.stats["duplicates_received"] > 0
    if jitter:
        assert sim.b.stats["out_of_order_received"] > 0


def test_clean_link_fills_the_window_and_sends_each_segment_once():
    data = random_bytes(MIB)
    sim = make_sim(data)
    sim.run_until(delivered)
    segments = -(-len(data) // ChannelConfig().segment_bytes)
    assert sim.a.stats["data_segments_sent"] == segments
    assert sim.a.cwnd == ChannelConfig().window_segments  # slow start reached the cap
    # One RTT is 20 ms; at 128 segments per RTT the MiB needs about 8 RTTs after slow start.
    assert sim.now < 0.5


def test_data_flows_both_ways_at_once():
    up, down = random_bytes(200_000, seed=1), random_bytes(150_000, seed=2)
    sim = make_sim(up, loss=0.1, seed=3)
    sim.back = down
    sim.run_until(lambda s: delivered(s) and len(s.back_received) >= len(down) and s.b.idle())
    assert sim.received == up and sim.back_received == down
    assert sim.a.stats["retransmits"] > 0 and sim.b.stats["retransmits"] > 0


# -- RFC 6298 retransmission timer ------------------------------------------------------------

class Pair:
    """Two channels and a FakeClock, datagrams carried by hand (drop what you like)."""

    def __init__(self, config: ChannelConfig = ChannelConfig()) -> None:
        self.clock = FakeClock()
        self.a = ReliableChannel(config, now=0.0)
        self.b = ReliableChannel(config, now=0.0)

    def poll_a(self) -> list[bytes]:
        return self.a.poll(self.clock.now())

    def to_b(self, bodies: list[bytes]) -> None:
        for body in bodies:
            self.b.segment_received(body, self.clock.now())

    def ack_back(self) -> None:
        for body in self.b.poll(self.clock.now()):
            self.a.segment_received(body, self.clock.now())

    def exchange(self, rtt: float) -> None:
        """a sends what it has now; b answers after `rtt` (the clock moves)."""
        bodies = self.poll_a()
        assert bodies
        self.clock.advance(rtt)
        self.to_b(bodies)
        self.ack_back()


def test_first_and_later_rtt_samples_follow_rfc_6298():
    pair = Pair()
    assert pair.a.rto == 0.2 and pair.a.srtt is None  # rto_initial before any sample
    pair.a.write(b"x")
    pair.exchange(0.1)
    # Section 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4*RTTVAR) = 0.1 + 0.2
    assert pair.a.srtt == pytest.approx(0.1)
    assert pair.a.rttvar == pytest.approx(0.05)
    assert pair.a.rto == pytest.approx(0.3)
    pair.a.write(b"y")
    pair.exchange(0.2)
    # Section 2.3: RTTVAR = 3/4*0.05 + 1/4*|0.1-0.2| = 0.0625; SRTT = 7/8*0.1 + 1/8*0.2
    assert pair.a.rttvar == pytest.approx(0.0625)
    assert pair.a.srtt == pytest.approx(0.1125)
    assert pair.a.rto == pytest.approx(0.1125 + 4 * 0.0625)


def test_rto_is_clamped_to_its_bounds():
    pair = Pair()
    pair.a.write(b"x")
    pair.exchange(0.001)
    assert pair.a.srtt == pytest.approx(0.001)
    assert pair.a.rto == 0.05  # 0.001 + 0.002 is below rto_min
    pair = Pair()
    pair.a.write(b"x")
    pair.exchange(1.5)
    assert pair.a.rto == 2.0  # 1.5 + 3.0 is above rto_max


def retransmission_times(pair: Pair, until: float) -> list[float]:
    """Poll `a` at each of its deadlines, dropping everything; when did it send?"""
    times = []
    while (deadline := pair.a.next_deadline()) is not None and deadline <= until:
        pair.clock.set(max(pair.clock.now(), deadline))
        if pair.poll_a():
            times.append(round(pair.clock.now(), 9))
    return times


def test_backoff_doubles_up_to_rto_max():
    pair = Pair()
    pair.a.write(b"x")
    times = retransmission_times(pair, until=12.0)
    # Sent at 0; waits 0.2, 0.4, 0.8, 1.6, then 2.0 (rto_max) each time.
    assert times == [0.0, 0.2, 0.6, 1.4, 3.0, 5.0, 7.0, 9.0, 11.0]
    assert pair.a.stats["timeouts"] == len(times) - 1
    assert pair.a.stats["retransmits"] == len(times) - 1
    assert pair.a.rto == 2.0


def test_karns_rule_no_sample_from_a_retransmitted_segment():
    pair = Pair()
    pair.a.write(b"x")
    first = pair.poll_a()
    pair.clock.set(0.2)
    resent = pair.poll_a()  # the timeout resends it, RTO doubles to 0.4
    assert [(decode_segment(b).seq, decode_segment(b).payload) for b in resent] == [(0, b"x")]
    assert pair.a.rto == pytest.approx(0.4)
    pair.clock.set(0.25)
    pair.to_b(first)  # the original arrives late: its ACK is ambiguous
    pair.ack_back()
    assert pair.a.idle()
    assert pair.a.srtt is None          # no sample taken ...
    assert pair.a.rto == pytest.approx(0.4)  # ... and the backoff stays until one is
    pair.a.write(b"y")
    pair.exchange(0.1)  # a fresh segment gives a sample and ends the backoff
    assert pair.a.srtt == pytest.approx(0.1)
    assert pair.a.rto == pytest.approx(0.3)


def test_an_ack_that_fills_a_hole_with_a_retransmission_gives_no_sample():
    pair = Pair(ChannelConfig(segment_bytes=10))
    pair.a.write(bytes(50))
    bodies = pair.poll_a()
    pair.clock.set(0.01)
    pair.to_b(bodies[1:4])  # 0 is lost; the SACK of 1..3 gives a sample of 0.01
    pair.ack_back()
    assert pair.a.srtt == pytest.approx(0.01)
    resent = pair.poll_a()
    pair.clock.set(1.0)  # segment 4 and the resent 0 arrive a second later
    pair.to_b(resent + bodies[4:])
    pair.ack_back()
    assert pair.a.idle()
    # The ACK covers the resent segment 0 (ambiguous) and segment 4, sent at 0.0: the
    # "RTT" of 4 would be 1.0 s of waiting for the hole. Neither is a sample.
    assert pair.a.srtt == pytest.approx(0.01)


def test_a_sacked_retransmission_gives_no_sample():
    pair = Pair(ChannelConfig(segment_bytes=10))
    pair.a.write(bytes(20))
    bodies = pair.poll_a()
    pair.a.path_changed(0.0)
    assert len(pair.poll_a()) == 2  # both resent on the "new path"
    pair.clock.set(0.3)
    pair.to_b(bodies[1:])  # the first copy of segment 1 arrives: SACKed, but ambiguous
    pair.ack_back()
    assert pair.a.srtt is None and pair.a.rto == ChannelConfig().rto_initial


def test_timer_is_restarted_by_new_acks_and_stopped_when_all_acked():
    config = ChannelConfig(segment_bytes=10)
    pair = Pair(config)
    pair.a.write(bytes(30))
    bodies = pair.poll_a()
    assert len(bodies) == 3
    assert pair.a.next_deadline() == pytest.approx(0.2)
    pair.clock.set(0.15)
    pair.to_b(bodies[:1])
    pair.ack_back()  # acknowledges segment 0 only: restart at 0.15 + RTO (section 5.3)
    assert pair.a.next_deadline() == pytest.approx(0.15 + pair.a.rto)
    pair.to_b(bodies[1:])
    pair.ack_back()
    assert pair.a.idle() and pair.a.next_deadline() is None  # section 5.2


def test_fast_retransmit_on_three_later_segments_sacked():
    pair = Pair(ChannelConfig(segment_bytes=10))
    pair.a.write(bytes(range(50)))
    bodies = pair.poll_a()
    assert len(bodies) == 5
    pair.clock.set(0.01)
    pair.to_b(bodies[1:3])  # segment 0 lost, 1 and 2 arrive: only two later ones
    pair.ack_back()
    assert pair.poll_a() == []
    pair.to_b(bodies[3:4])  # the third later segment: segment 0 is lost now
    pair.ack_back()
    resent = pair.poll_a()
    assert [decode_segment(body).seq for body in resent] == [0]
    assert pair.clock.now() < 0.2  # well before the RTO
    assert pair.a.stats["fast_retransmits"] == 1 and pair.a.stats["timeouts"] == 0
    pair.to_b(resent + bodies[4:])
    pair.ack_back()
    assert pair.b.read() == bytes(range(50))
    assert pair.a.idle()


def test_lost_retransmission_is_found_again_without_a_timeout():
    pair = Pair(ChannelConfig(segment_bytes=10))
    pair.a.write(bytes(100))
    bodies = pair.poll_a()  # 10 segments (initial window 10)
    pair.clock.set(0.01)
    pair.to_b(bodies[1:4])
    pair.ack_back()
    first_resend = pair.poll_a()  # segment 0 again (lost again below)
    assert [decode_segment(b).seq for b in first_resend] == [0]
    pair.to_b(bodies[4:])  # six segments sent *before* the resend: no new evidence
    pair.ack_back()
    assert [decode_segment(b).seq for b in pair.poll_a()] == []
    assert pair.a.stats["fast_retransmits"] == 1
    pair.a.write(bytes(30))
    later = pair.poll_a()   # new segments sent after the resend ...
    pair.to_b(later)
    pair.ack_back()         # ... three of them arrive: the resend is lost too
    second_resend = pair.poll_a()
    assert [decode_segment(b).seq for b in second_resend] == [0]
    assert pair.a.stats["timeouts"] == 0 and pair.a.stats["fast_retransmits"] == 2


# -- flow control -------------------------------------------------------------------------------

def test_a_receiver_that_does_not_read_stops_the_sender_at_its_window():
    config = ChannelConfig(segment_bytes=100, receive_window_segments=8)
    data = random_bytes(5000)
    sim = make_sim(data, config=config)
    sim.reads = itertools.repeat(False)  # b's application stops reading
    sim.run_for(10.0)
    assert sim.b.readable_bytes == 8 * 100  # exactly the advertised window, no more
    assert sim.a.peer_window == 0
    assert sim.a.stats["data_segments_sent"] == 8
    assert sim.a.stats["window_probes"] >= 3  # the persist timer keeps asking
    assert sim.b.stats["out_of_window_received"] == 0
    # The window update after the read is lost: only a persist probe can discover it.
    dropped = []

    def lose_first_window_update(body: bytes) -> bool:
        if not dropped and decode_segment(body).window > 0:
            dropped.append(body)
            return True
        return False

    sim.ba.drop = lose_first_window_update
    sim.reads = None
    probes_before = sim.a.stats["window_probes"]
    sim.run_until(delivered, max_time=sim.now + 10)
    assert len(dropped) == 1
    assert sim.a.stats["window_probes"] > probes_before
    assert sim.received == data


def test_persist_probes_back_off_to_rto_max():
    pair = Pair(ChannelConfig(segment_bytes=10, receive_window_segments=2))
    pair.a.write(bytes(100))
    pair.exchange(0.1)  # two segments fill b's buffer; RTO becomes 0.1 + 4 * 0.05 = 0.3
    assert pair.a.peer_window == 0 and pair.a.rto == pytest.approx(0.3)
    assert pair.poll_a() == []  # nothing may go: the persist timer starts
    sends = []
    while len(sends) < 6:
        pair.clock.set(pair.a.next_deadline())
        for body in pair.poll_a():
            segment = decode_segment(body)
            assert segment.flags == FLAG_ACK_ONLY | FLAG_WINDOW_PROBE
            sends.append(round(pair.clock.now(), 9))
    # First probe one RTO (0.3) after t=0.1, then waits of 0.6, 1.2, then 2.0 (rto_max).
    assert sends == [0.4, 1.0, 2.2, 4.2, 6.2, 8.2]
    pair.b.read()
    pair.ack_back()  # b answers: window 2 again (an update, not a probe reply, here)
    assert pair.a.peer_window == 2
    assert len(pair.poll_a()) == 2


def test_receiver_drops_beyond_its_window_and_counts_duplicates():
    channel = ReliableChannel(ChannelConfig(receive_window_segments=4), now=0.0)

    def data(seq: int) -> bytes:
        return encode_segment(Segment(seq, 0, 4, 0, 0, bytes([seq])))

    channel.segment_received(data(4), 0.0)  # window is 0..3: dropped
    assert channel.stats["out_of_window_received"] == 1
    channel.segment_received(data(2), 0.0)
    channel.segment_received(data(2), 0.0)  # an out-of-order duplicate
    channel.segment_received(data(0), 0.0)
    channel.segment_received(data(0), 0.0)  # an in-order duplicate
    assert channel.stats["duplicates_received"] == 2
    assert channel.read() == bytes([0])
    channel.segment_received(data(1), 0.0)
    channel.segment_received(data(4), 0.0)  # inside the window now
    assert channel.read() == bytes([1, 2])
    assert decode_segment(channel.poll(0.0)[0]).sack == 0b1  # segment 4 = ack 3 + 1 + bit 0


def test_a_probe_is_answered_with_the_current_window():
    pair = Pair()
    probe = encode_segment(Segment(0, 0, 256, 0, FLAG_ACK_ONLY | FLAG_WINDOW_PROBE))
    pair.b.segment_received(probe, 0.0)
    reply = pair.b.poll(0.0)
    assert len(reply) == 1
    assert decode_segment(reply[0]).window == 256
    plain_ack = encode_segment(Segment(0, 0, 256, 0, FLAG_ACK_ONLY))
    pair.b.segment_received(plain_ack, 0.0)
    assert pair.b.poll(0.0) == []  # a bare ACK is never answered (no ACK ping-pong)


def test_write_is_bounded_by_the_send_buffer():
    channel = ReliableChannel(ChannelConfig(send_buffer_bytes=1000), now=0.0)
    assert channel.write(bytes(600)) == 600
    assert channel.writable_bytes() == 400
    assert channel.write(bytes(600)) == 400
    assert channel.write(b"more") == 0


# -- path change -------------------------------------------------------------------------------

def test_path_change_mid_transfer_delivers_everything_exactly_once():
    data = random_bytes(MIB)
    rng = random.Random(5)
    sim = make_sim(data, loss=0.02, jitter=0.005)
    path_b = (Link(rng, delay=0.03, loss=0.02), Link(rng, delay=0.03, loss=0.02))
    sim.run_until(lambda s: len(s.received) >= 300_000)
    sim.ab.up = sim.ba.up = False  # path A dies
    sim.run_for(1.5)
    stalled_at = len(sim.received)
    assert sim.a.rto > ChannelConfig().rto_initial  # backed off while nothing got through
    sim.ab, sim.ba = path_b
    for channel in (sim.a, sim.b):
        channel.path_changed(sim.now)
    assert sim.a.rto == ChannelConfig().rto_initial and sim.a.srtt is None
    before = sim.a.stats["retransmits"]
    sim.step(sim.now)  # the unacknowledged segments are due at once on the new path
    assert sim.a.stats["retransmits"] > before
    sim.run_until(delivered)
    assert len(sim.received) > stalled_at
    assert len(sim.received) == len(data) and sim.received == data


def test_path_change_makes_every_unacked_segment_due_now():
    pair = Pair(ChannelConfig(segment_bytes=10))
    pair.a.write(bytes(50))
    sent = pair.poll_a()
    pair.clock.set(0.05)
    pair.to_b(sent[2:3])  # only segment 2 made it (SACKed): it is not sent again
    pair.ack_back()
    pair.a.path_changed(0.05)
    assert pair.a.next_deadline() == 0.05
    resent = pair.poll_a()
    assert sorted(decode_segment(b).seq for b in resent) == [0, 1, 3, 4]
    assert pair.a.stats["timeouts"] == 0 and pair.a.stats["retransmits"] == 4


# -- hypothesis: any write split, any early loss pattern -------------------------------------

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=20_000),
       write_sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=20),
       drops=st.lists(st.booleans(), max_size=200),
       segment_bytes=st.sampled_from([16, 200, 1100]),
       window=st.integers(1, 32), receive_window=st.integers(1, 32),
       reads=st.lists(st.booleans(), max_size=50))
def test_any_split_and_loss_pattern_preserves_the_stream(data, write_sizes, drops,
                                                         segment_bytes, window,
                                                         receive_window, reads):
    config = ChannelConfig(segment_bytes=segment_bytes, window_segments=window,
                           receive_window_segments=receive_window)
    sim = make_sim(data, config=config, jitter=0.01, duplicate=0.05)
    sim.write_sizes = write_sizes
    # The pattern decides the first len(drops) datagrams (both directions); later ones pass,
    # so every pattern must end with the whole stream delivered.
    verdicts = iter(drops)
    sim.ab.drop = sim.ba.drop = lambda body: next(verdicts, False)
    sim.reads = iter(reads)
    sim.run_until(delivered, max_steps=200_000)
    sim.received += sim.b.read()
    assert bytes(sim.received) == data


# -- segments on the wire ------------------------------------------------------------------

def test_segment_round_trip_and_header_size():
    segment = Segment(2**32 - 1, 7, 65535, 2**64 - 1, 0, b"payload")
    body = encode_segment(segment)
    assert len(body) == SEGMENT_HEADER_BYTES + 7 == 26
    assert decode_segment(body) == segment
    assert ChannelConfig().segment_bytes + SEGMENT_HEADER_BYTES <= MAX_BODY_BYTES


@pytest.mark.parametrize("body, offset, words", [
    (b"", 0, "shorter"),
    (bytes(18), 0, "shorter"),
    (encode_segment(Segment(0, 0, 0, 0, 0x80, b"x")), 18, "unknown flags"),
    (encode_segment(Segment(0, 0, 0, 0, FLAG_WINDOW_PROBE, b"x")), 18, "WINDOW_PROBE"),
    (encode_segment(Segment(0, 0, 0, 0, FLAG_ACK_ONLY, b"x")), 19, "carries a payload"),
    (encode_segment(Segment(0, 0, 0, 0, 0, b"")), 19, "without payload"),
    (bytes(MAX_BODY_BYTES + 1), MAX_BODY_BYTES, "exceeds"),
])
def test_malformed_segments_raise_segment_error_with_offset(body, offset, words):
    with pytest.raises(SegmentError) as caught:
        decode_segment(body)
    assert caught.value.offset == offset
    assert words in caught.value.reason
    assert isinstance(caught.value, DecodeError) and isinstance(caught.value, ValueError)
    channel = ReliableChannel(now=0.0)
    with pytest.raises(SegmentError):
        channel.segment_received(body, 0.0)
    assert channel.stats["segments_received"] == 0


@given(reference=st.integers(0, 2**40), delta=st.integers(-(2**31), 2**31 - 1))
def test_unwrap_recovers_numbers_across_the_32_bit_wrap(reference, delta):
    assert unwrap_seq((reference + delta) % 2**32, reference) == reference + delta


def test_acks_for_unsent_or_old_segments_are_ignored():
    pair = Pair(ChannelConfig(segment_bytes=10))
    pair.a.write(bytes(20))
    pair.to_b(pair.poll_a())
    pair.ack_back()
    assert pair.a.idle()
    window = pair.a.peer_window
    assert window > 0
    pair.a.segment_received(encode_segment(Segment(0, 99, 0, 0, FLAG_ACK_ONLY)), 0.0)
    pair.a.segment_received(encode_segment(Segment(0, 1, 0, 0, FLAG_ACK_ONLY)), 0.0)
    assert pair.a.stats["invalid_acks"] == 1 and pair.a.stats["stale_acks"] == 1
    assert pair.a.peer_window == window  # neither closed the window


def test_config_is_validated_and_time_cannot_go_back():
    with pytest.raises(ChannelError):
        ChannelConfig(segment_bytes=MAX_SEGMENT_PAYLOAD_BYTES + 1)
    with pytest.raises(ChannelError):
        ChannelConfig(receive_window_segments=70_000)
    with pytest.raises(ChannelError):
        ChannelConfig(rto_min=1.0, rto_initial=0.5)
    channel = ReliableChannel(now=5.0)
    with pytest.raises(ChannelError):
        channel.poll(4.0)
