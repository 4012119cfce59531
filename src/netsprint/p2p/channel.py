"""A reliable, ordered byte stream over unreliable datagrams (the bodies of DATA packets).

Sans-I/O: the channel never reads a clock or touches a socket. The driver feeds it the
bodies that arrive (`segment_received`), sends what `poll` returns, calls `poll` again by
`next_deadline()` and after every `write`, `read` or arrival, and moves bytes in and out
with `write` / `read`.

Segment (the whole DATA body), network byte order, 19-byte header then payload:

    0     4     8    10                  18    19
    +-----+-----+----+-------------------+-----+---------
    | seq | ack | wnd| SACK bitmap (u64) | flg | payload
    +-----+-----+----+-------------------+-----+---------

- seq: segment number (not a byte offset) of this payload, mod 2**32; both ends start at 0
  (a session is one channel, so no handshake is needed to agree on it).
- ack: cumulative acknowledgement, the next segment number the sender of this segment
  expects; wnd: free segments in its receive buffer counted from `ack` (flow control).
- SACK: bit i (least significant first) set = segment ack+1+i is held out of order
  (the idea of RFC 2018, as a bitmap instead of blocks).
- flags: ACK_ONLY (no payload; seq is ignored), WINDOW_PROBE (with ACK_ONLY: answer at once).

Sender. New segments go out while `seq < snd_una + min(window_segments, peer window)`
(flow control) and the segments in flight ("pipe", RFC 6675 section 2) stay below the
congestion window. Congestion control is deliberately simple (week 26 comes back to it):
initial window 10 segments (RFC 6928), slow start then additive increase (RFC 5681 section
3.1), halve on loss found by SACK (fast recovery, once per window), 1 segment after a
timeout. Loss recovery:
- retransmission timeout per RFC 6298: SRTT/RTTVAR, Karn's rule (no RTT sample from a
  retransmitted segment, nor from a cumulative ACK that also covers one), doubling
  backoff kept until the next sample, clamped to [rto_min, rto_max]; on expiry every
  unacknowledged segment that is not SACKed is resent (slowly: cwnd restarts at 1);
- fast retransmit: a hole is resent at once when DUP_THRESHOLD segments *sent after it*
  are SACKed or acknowledged (RFC 6675's DupThresh, counted in transmission order as in
  RACK, RFC 8985, so a lost retransmission is found the same way, without a timeout);
- persist timer (RFC 1122 section 4.2.2.17): with data queued, nothing in flight and a
  zero window, send WINDOW_PROBEs at RTO, doubling up to rto_max, so a window update
  that got lost cannot deadlock the stream.

Receiver. Segments inside the window are kept (out of order ones too) and delivered in
order, each exactly once; duplicates and segments beyond the window are dropped and
counted. Every arrival of data (or of a probe) is acknowledged in the next `poll`, on a
data segment if one goes out, otherwise as an ACK_ONLY: no delayed-ACK timer (RFC 5681
section 4.2 permits delaying; one ACK per burst of arrivals keeps the sender's clock
running without it). Reading frees the buffer; when that opens the window by a quarter
or more, a window update is sent at once.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from netsprint.errors import DecodeError, NetsprintError
from netsprint.p2p.packet import MAX_BODY_BYTES

SEGMENT_HEADER = struct.Struct("!IIHQB")
SEGMENT_HEADER_BYTES = SEGMENT_HEADER.size  # 19
MAX_SEGMENT_PAYLOAD_BYTES = MAX_BODY_BYTES - SEGMENT_HEADER_BYTES  # 1169
FLAGS_OFFSET = SEGMENT_HEADER_BYTES - 1
SACK_BITS = 64
SEQ_MODULUS = 1 << 32
MAX_WINDOW_SEGMENTS = 0xFFFF  # the window field is a u16

FLAG_ACK_ONLY = 0x01
FLAG_WINDOW_PROBE = 0x02
KNOWN_FLAGS = FLAG_ACK_ONLY | FLAG_WINDOW_PROBE

DUP_THRESHOLD = 3             # RFC 6675 DupThresh
INITIAL_CWND_SEGMENTS = 10    # RFC 6928
RTO_K = 4                     # RFC 6298 section 2
RTT_ALPHA = 1 / 8
RTT_BETA = 1 / 4
CLOCK_GRANULARITY = 0.001     # G in RFC 6298: time is a float, 1 ms is a fair floor


class ChannelError(NetsprintError):
    """Misuse of a channel: an invalid configuration, or time running backwards."""


class SegmentError(DecodeError):
    """A DATA body that is not a valid segment; `offset` is where it goes wrong."""


@dataclass(frozen=True)
class ChannelConfig:
    """Sizes and timers of one channel (both ends should use the same)."""

    segment_bytes: int = 1100         # payload per DATA packet (fits MAX_PACKET_BYTES with headers)
    window_segments: int = 128        # max segments in flight (sender)
    receive_window_segments: int = 256  # receiver buffer, advertised (flow control)
    send_buffer_bytes: int = 4 * 1024 * 1024
    rto_initial: float = 0.2
    rto_min: float = 0.05
    rto_max: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.segment_bytes <= MAX_SEGMENT_PAYLOAD_BYTES:
            raise ChannelError(f"segment_bytes must be 1..{MAX_SEGMENT_PAYLOAD_BYTES} "
                               f"(a DATA body holds {MAX_BODY_BYTES} bytes with the header)")
        if self.window_segments < 1:
            raise ChannelError("window_segments must be at least 1")
        if not 1 <= self.receive_window_segments <= MAX_WINDOW_SEGMENTS:
            raise ChannelError(f"receive_window_segments must be 1..{MAX_WINDOW_SEGMENTS}")
        if self.send_buffer_bytes < 1:
            raise ChannelError("send_buffer_bytes must be at least 1")
        if not 0 < self.rto_min <= self.rto_initial <= self.rto_max:
            raise ChannelError("need 0 < rto_min <= rto_initial <= rto_max")


@dataclass(frozen=True)
class Segment:
    """One decoded segment; seq and ack are the 32-bit wire values."""

    seq: int
    ack: int
    window: int
    sack: int
    flags: int = 0
    payload: bytes = b""

    @property
    def ack_only(self) -> bool:
        return bool(self.flags & FLAG_ACK_ONLY)


def encode_segment(segment: Segment) -> bytes:
    return SEGMENT_HEADER.pack(segment.seq % SEQ_MODULUS, segment.ack % SEQ_MODULUS,
                               segment.window, segment.sack, segment.flags) + segment.payload


def decode_segment(body: bytes) -> Segment:
    """Parse one DATA body; raises SegmentError with the offset of what is wrong."""
    if len(body) < SEGMENT_HEADER_BYTES:
        raise SegmentError(f"{len(body)} bytes is shorter than the {SEGMENT_HEADER_BYTES}-byte "
                           "segment header", 0)
    if len(body) > MAX_BODY_BYTES:
        raise SegmentError(f"{len(body)} bytes exceeds the {MAX_BODY_BYTES}-byte DATA body",
                           MAX_BODY_BYTES)
    seq, ack, window, sack, flags = SEGMENT_HEADER.unpack_from(body)
    if flags & ~KNOWN_FLAGS:
        raise SegmentError(f"unknown flags 0x{flags & ~KNOWN_FLAGS:02x}", FLAGS_OFFSET)
    if flags & FLAG_WINDOW_PROBE and not flags & FLAG_ACK_ONLY:
        raise SegmentError("WINDOW_PROBE without ACK_ONLY", FLAGS_OFFSET)
    payload = bytes(body[SEGMENT_HEADER_BYTES:])
    if flags & FLAG_ACK_ONLY and payload:
        raise SegmentError("an ACK_ONLY segment carries a payload", SEGMENT_HEADER_BYTES)
    if not flags & FLAG_ACK_ONLY and not payload:
        raise SegmentError("a data segment without payload", SEGMENT_HEADER_BYTES)
    return Segment(seq, ack, window, sack, flags, payload)


def unwrap_seq(wire: int, reference: int) -> int:
    """The full segment number nearest `reference` whose low 32 bits are `wire`
    (serial number arithmetic, RFC 1982): numbers keep growing past 2**32."""
    delta = (wire - reference) % SEQ_MODULUS
    if delta >= SEQ_MODULUS // 2:
        delta -= SEQ_MODULUS
    return reference + delta


class _Sent:
    """Sender-side record of one unacknowledged segment."""

    __slots__ = ("seq", "payload", "sent_at", "tx_order", "retransmitted", "sacked", "lost")

    def __init__(self, seq: int, payload: bytes) -> None:
        self.seq = seq
        self.payload = payload
        self.sent_at = 0.0
        self.tx_order = -1         # position in transmission order, for loss detection
        self.retransmitted = False  # Karn's rule: never an RTT sample once resent
        self.sacked = False
        self.lost = False          # waiting to be resent; not counted in the pipe


STAT_NAMES = ("segments_sent", "data_segments_sent", "acks_sent", "retransmits",
              "fast_retransmits", "timeouts", "window_probes", "segments_received",
              "duplicates_received", "out_of_order_received", "out_of_window_received",
              "stale_acks", "invalid_acks", "bytes_written", "bytes_read")


class ReliableChannel:
    """One end of a reliable stream. Owns both directions' state: the send queue and the
    unacknowledged segments with their timers (RTO, persist), the congestion window,
    and the receive buffer (out-of-order segments and bytes not yet read). Does not own
    the path: the driver carries the bodies."""

    def __init__(self, config: ChannelConfig = ChannelConfig(), *, now: float) -> None:
        self.config = config
        self._now = now
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        # sender
        self._queue = bytearray()
        self._snd_una = 0
        self._snd_nxt = 0
        self._sent: dict[int, _Sent] = {}   # insertion order == seq order
        self._sent_bytes = 0
        self._lost: set[int] = set()
        self._pipe = 0
        self._tx_counter = 0
        self._delivered_tx: list[int] = []   # the DUP_THRESHOLD highest delivered tx orders
        # Until the peer's first ACK says otherwise, assume it uses our configuration.
        self._peer_window = config.receive_window_segments
        self._reset_congestion()
        self._reset_rtt()
        self._rto_deadline: float | None = None
        self._persist_deadline: float | None = None
        self._persist_interval = config.rto_initial
        # receiver
        self._rcv_nxt = 0
        self._out_of_order: dict[int, bytes] = {}
        self._readable: deque[bytes] = deque()
        self._readable_bytes = 0
        self._ack_due: float | None = None
        self._last_advertised = config.receive_window_segments

    # -- the application side ----------------------------------------------------------------

    def write(self, data: bytes | bytearray) -> int:
        """Queue bytes for sending; returns how many were accepted (the send buffer is
        bounded: the rest is the caller's to offer again later)."""
        accepted = min(len(data), self.writable_bytes())
        self._queue += data[:accepted]
        self.stats["bytes_written"] += accepted
        return accepted

    def writable_bytes(self) -> int:
        return max(0, self.config.send_buffer_bytes - len(self._queue) - self._sent_bytes)

    def read(self) -> bytes:
        """Every in-order byte received so far and not yet read (drains the buffer)."""
        data = b"".join(self._readable)
        self._readable.clear()
        self._readable_bytes = 0
        self.stats["bytes_read"] += len(data)
        opened = self.receive_window - self._last_advertised
        if data and opened >= max(1, self.config.receive_window_segments // 4):
            self._ack_due = self._now  # window update: the sender may be waiting for it
        return data

    @property
    def readable_bytes(self) -> int:
        return self._readable_bytes

    def idle(self) -> bool:
        """Nothing unacknowledged and nothing queued."""
        return not self._queue and not self._sent

    # -- the path side -------------------------------------------------------------------------

    def segment_received(self, body: bytes, now: float) -> None:
        """Take one DATA body from the peer. Raises SegmentError if it is malformed."""
        self._advance(now)
        segment = decode_segment(body)
        self.stats["segments_received"] += 1
        self._on_ack(segment, now)
        if segment.ack_only:
            if segment.flags & FLAG_WINDOW_PROBE:
                self._ack_due = now
            return
        self._on_data(segment, now)

    def poll(self, now: float) -> list[bytes]:
        """The DATA bodies to send now: due retransmissions, new data the windows allow,
        a window probe, or a bare acknowledgement."""
        self._advance(now)
        out: list[bytes] = []
        if self._rto_deadline is not None and now >= self._rto_deadline:
            self._on_retransmission_timeout(now)
        if self._persist_deadline is not None and now >= self._persist_deadline:
            self._send_window_probe(now, out)
        self._send_data(now, out)
        if self._ack_due is not None:
            out.append(self._encode(FLAG_ACK_ONLY))
            self.stats["acks_sent"] += 1
        self._ack_due = None
        self._update_persist(now)
        self.stats["segments_sent"] += len(out)
        return out

    def next_deadline(self) -> float | None:
        """When `poll` next has something to do (the last time seen if it has now)."""
        deadlines = [d for d in (self._rto_deadline, self._persist_deadline, self._ack_due)
                     if d is not None]
        if self._can_send():
            deadlines.append(self._now)
        return min(deadlines) if deadlines else None

    def path_changed(self, now: float) -> None:
        """The path moved (re-punched, or relayed): the old RTT says nothing about the new
        one and whatever was in flight on the old path is probably gone. Restart the RTT
        estimate at rto_initial and the congestion window at its initial value (as QUIC
        does on migration, RFC 9000 section 9.4), and make every unacknowledged segment
        that is not SACKed due now."""
        self._advance(now)
        self._reset_rtt()
        self._reset_congestion()
        self._mark_all_lost()
        self._rto_deadline = now + self._rto if self._sent else None
        if self._persist_deadline is not None:
            self._persist_interval = self._rto
            self._persist_deadline = now
        self._ack_due = now  # tell the peer our ack and window over the new path

    # -- what the tests and the notebook look at ---------------------------------------------

    @property
    def rto(self) -> float:
        return self._rto

    @property
    def srtt(self) -> float | None:
        return self._srtt

    @property
    def rttvar(self) -> float | None:
        return self._rttvar

    @property
    def cwnd(self) -> float:
        return self._cwnd

    @property
    def peer_window(self) -> int:
        return self._peer_window

    @property
    def receive_window(self) -> int:
        """Free segments in the receive buffer, counted from the next expected one."""
        return max(0, self.config.receive_window_segments - len(self._readable))

    @property
    def unacked_segments(self) -> int:
        return len(self._sent)

    # -- receiving data ------------------------------------------------------------------------

    def _on_data(self, segment: Segment, now: float) -> None:
        seq = unwrap_seq(segment.seq, self._rcv_nxt)
        self._ack_due = now  # every arrival is acknowledged, duplicates too
        if seq < self._rcv_nxt or seq in self._out_of_order:
            self.stats["duplicates_received"] += 1
        elif seq >= self._rcv_nxt + self.receive_window:
            self.stats["out_of_window_received"] += 1
        elif seq == self._rcv_nxt:
            self._deliver(segment.payload)
            while self._rcv_nxt in self._out_of_order:
                self._deliver(self._out_of_order.pop(self._rcv_nxt))
        else:
            self._out_of_order[seq] = segment.payload
            self.stats["out_of_order_received"] += 1

    def _deliver(self, payload: bytes) -> None:
        self._readable.append(payload)
        self._readable_bytes += len(payload)
        self._rcv_nxt += 1

    def _sack_bitmap(self) -> int:
        # Built for every segment sent: at most SACK_BITS lookups, none without a hole.
        if not self._out_of_order:
            return 0
        bitmap = 0
        first = self._rcv_nxt + 1
        for bit in range(SACK_BITS):
            if first + bit in self._out_of_order:
                bitmap |= 1 << bit
        return bitmap

    # -- receiving acknowledgements --------------------------------------------------------

    def _on_ack(self, segment: Segment, now: float) -> None:
        ack = unwrap_seq(segment.ack, self._snd_una)
        if ack < self._snd_una:
            self.stats["stale_acks"] += 1  # reordered: its window is out of date too
            return
        if ack > self._snd_nxt:
            self.stats["invalid_acks"] += 1  # acknowledges what was never sent
            return
        self._peer_window = segment.window
        acked = self._retire_cumulative(ack)
        sacked = self._apply_sack(ack, segment.sack)
        delivered = acked + sacked
        if delivered:
            self._sample_rtt(acked, sacked, now)
        if ack > self._snd_una:
            self._snd_una = ack
            # RFC 6298 section 5.2 / 5.3: stop the timer, or restart it for what is left.
            self._rto_deadline = now + self._rto if self._sent else None
        if self._recovery_point is not None and self._snd_una >= self._recovery_point:
            self._recovery_point = None
            self._fast_recovery = False
        if delivered:
            self._grow_cwnd(len(delivered))
            self._note_delivered(delivered)
            self._detect_losses()
        if self._peer_window > 0:
            self._persist_deadline = None

    def _retire_cumulative(self, ack: int) -> list[_Sent]:
        newly: list[_Sent] = []
        for seq in range(self._snd_una, ack):
            sent = self._sent.pop(seq)
            self._sent_bytes -= len(sent.payload)
            if sent.lost:
                self._lost.discard(seq)
            elif not sent.sacked:
                self._pipe -= 1
            if not sent.sacked:
                newly.append(sent)
        return newly

    def _apply_sack(self, ack: int, bitmap: int) -> list[_Sent]:
        newly: list[_Sent] = []
        seq = ack + 1
        while bitmap:
            if bitmap & 1:
                sent = self._sent.get(seq)
                if sent is not None and not sent.sacked:
                    if sent.lost:
                        sent.lost = False
                        self._lost.discard(seq)
                    else:
                        self._pipe -= 1
                    sent.sacked = True
                    newly.append(sent)
            bitmap >>= 1
            seq += 1
        return newly

    def _sample_rtt(self, acked: list[_Sent], sacked: list[_Sent], now: float) -> None:
        """One RTT sample per ACK, from the newest segment it newly covers.

        Karn's rule (RFC 6298 section 3): a retransmitted segment gives no sample, its ACK
        is ambiguous. Applied to the whole cumulative part, as Linux does: an ACK that
        fills a hole with a retransmission also covers segments that arrived long ago,
        and their "RTT" would be the time the hole took to fill. Newly SACKed segments
        that were sent once arrived just now, so they still give a sample."""
        if acked and not any(sent.retransmitted for sent in acked):
            fresh = acked + sacked
        else:
            fresh = [sent for sent in sacked if not sent.retransmitted]
        if fresh:
            self._update_rto(now - max(sent.sent_at for sent in fresh))

    def _update_rto(self, rtt: float) -> None:
        """RFC 6298 section 2.2 / 2.3; a sample also ends any backoff (the note after
        rule 5.7: RTO "collapses" back once a new RTT measurement is obtained)."""
        if self._srtt is None or self._rttvar is None:
            self._srtt = rtt
            self._rttvar = rtt / 2
        else:
            self._rttvar = (1 - RTT_BETA) * self._rttvar + RTT_BETA * abs(self._srtt - rtt)
            self._srtt = (1 - RTT_ALPHA) * self._srtt + RTT_ALPHA * rtt
        rto = self._srtt + max(CLOCK_GRANULARITY, RTO_K * self._rttvar)
        self._rto = min(self.config.rto_max, max(self.config.rto_min, rto))

    def _note_delivered(self, delivered: list[_Sent]) -> None:
        orders = sorted(self._delivered_tx + [sent.tx_order for sent in delivered])
        self._delivered_tx = orders[-DUP_THRESHOLD:]

    def _detect_losses(self) -> None:
        """A segment is lost once DUP_THRESHOLD segments sent after it have arrived.

        Runs on every ACK that delivers something, so it stops early: segments are first
        sent in seq order and a resend only raises tx_order, so once a segment sent just
        once is at or past the threshold, every later one is too. Without loss that is
        the first unacknowledged segment."""
        if len(self._delivered_tx) < DUP_THRESHOLD:
            return
        threshold = self._delivered_tx[0]
        found = []
        for sent in self._sent.values():
            if sent.tx_order >= threshold:
                if not sent.retransmitted:
                    break
            elif not sent.sacked and not sent.lost:
                found.append(sent)
        if not found:
            return
        self._enter_fast_recovery()
        for sent in found:
            self._mark_lost(sent)
        self.stats["fast_retransmits"] += len(found)

    # -- congestion control ----------------------------------------------------------------

    def _reset_congestion(self) -> None:
        self._cwnd = float(min(INITIAL_CWND_SEGMENTS, self.config.window_segments))
        self._ssthresh = float(self.config.window_segments)
        self._recovery_point: int | None = None  # no further reduction until acked past
        self._fast_recovery = False
        self._retransmit_now = False

    def _grow_cwnd(self, segments: int) -> None:
        if self._fast_recovery:
            return
        if self._cwnd < self._ssthresh:
            self._cwnd += segments                 # slow start
        else:
            self._cwnd += segments / self._cwnd    # congestion avoidance: +1 per window
        self._cwnd = min(self._cwnd, float(self.config.window_segments))

    def _flight_size(self) -> int:
        return sum(1 for sent in self._sent.values() if not sent.sacked)

    def _enter_fast_recovery(self) -> None:
        if self._recovery_point is not None:
            return  # one reduction per window of data (RFC 6675 section 5)
        self._ssthresh = max(self._flight_size() / 2, 2.0)
        self._cwnd = self._ssthresh
        self._recovery_point = self._snd_nxt
        self._fast_recovery = True
        # The first hole goes out at once, whatever the pipe (RFC 6675 section 5, step 4.3).
        self._retransmit_now = True

    # -- timers ----------------------------------------------------------------------------

    def _reset_rtt(self) -> None:
        self._srtt: float | None = None
        self._rttvar: float | None = None
        self._rto = self.config.rto_initial

    def _on_retransmission_timeout(self, now: float) -> None:
        """RFC 6298 section 5.4-5.6 and RFC 5681 section 3.1 (cwnd to one segment)."""
        self.stats["timeouts"] += 1
        self._ssthresh = max(self._flight_size() / 2, 2.0)
        self._cwnd = 1.0
        self._recovery_point = self._snd_nxt
        self._fast_recovery = False
        self._mark_all_lost()
        self._rto = min(self._rto * 2, self.config.rto_max)
        self._rto_deadline = now + self._rto

    def _update_persist(self, now: float) -> None:
        blocked = bool(self._queue) and not self._sent and self._usable_window() <= 0
        if not blocked:
            self._persist_deadline = None
        elif self._persist_deadline is None:
            self._persist_interval = self._rto
            self._persist_deadline = now + self._persist_interval

    def _send_window_probe(self, now: float, out: list[bytes]) -> None:
        out.append(self._encode(FLAG_ACK_ONLY | FLAG_WINDOW_PROBE))
        self.stats["window_probes"] += 1
        self._ack_due = None
        self._persist_interval = min(self._persist_interval * 2, self.config.rto_max)
        self._persist_deadline = now + self._persist_interval

    # -- sending -----------------------------------------------------------------------------

    def _usable_window(self) -> int:
        limit = min(self.config.window_segments, self._peer_window)
        return self._snd_una + limit - self._snd_nxt

    def _can_send(self) -> bool:
        if self._lost and self._retransmit_now:
            return True
        if self._pipe >= self._cwnd:
            return False
        return bool(self._lost) or (bool(self._queue) and self._usable_window() > 0)

    def _send_data(self, now: float, out: list[bytes]) -> None:
        while self._can_send():
            if self._lost:
                sent = self._sent[min(self._lost)]
                self._lost.discard(sent.seq)
                sent.lost = False
                sent.retransmitted = True
                self._retransmit_now = False
                self.stats["retransmits"] += 1
            else:
                sent = self._new_segment()
            out.append(self._transmit(sent, now))

    def _new_segment(self) -> _Sent:
        size = min(self.config.segment_bytes, len(self._queue))
        sent = _Sent(self._snd_nxt, bytes(self._queue[:size]))
        del self._queue[:size]
        self._sent[sent.seq] = sent
        self._sent_bytes += size
        self._snd_nxt += 1
        return sent

    def _transmit(self, sent: _Sent, now: float) -> bytes:
        sent.sent_at = now
        sent.tx_order = self._tx_counter
        self._tx_counter += 1
        self._pipe += 1
        if self._rto_deadline is None:
            self._rto_deadline = now + self._rto  # RFC 6298 section 5.1
        self.stats["data_segments_sent"] += 1
        self._ack_due = None  # the acknowledgement rides on this segment
        return self._encode(0, sent.seq, sent.payload)

    def _encode(self, flags: int, seq: int | None = None, payload: bytes = b"") -> bytes:
        window = min(self.receive_window, MAX_WINDOW_SEGMENTS)
        self._last_advertised = window
        return encode_segment(Segment(self._snd_nxt if seq is None else seq, self._rcv_nxt,
                                      window, self._sack_bitmap(), flags, payload))

    def _mark_lost(self, sent: _Sent) -> None:
        sent.lost = True
        self._lost.add(sent.seq)
        self._pipe -= 1

    def _mark_all_lost(self) -> None:
        for sent in self._sent.values():
            if not sent.sacked and not sent.lost:
                self._mark_lost(sent)

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise ChannelError(f"time went back from {self._now} to {now}")
        self._now = now
