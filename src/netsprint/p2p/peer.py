"""The P2P peer on the week-1 reactor: the thin I/O shell around the sans-I/O cores.

`Peer` turns socket events, signaling messages and timer expiries into calls on the
`PeerSession` (path: punch, relay, heartbeats) and the `ReliableChannel` (the byte stream on
top), and carries out the actions they return. Records (chat lines, file transfer) travel
on the stream as 4-byte length frames, the week-2 framing.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Any, Callable, Iterator

from netsprint.errors import DecodeError, NetsprintError
from netsprint.log import connection_logger
from netsprint.p2p.channel import ChannelConfig, ReliableChannel
from netsprint.p2p.gather import Gathered, gather
from netsprint.p2p.session import (CloseSockets, Deliver, OpenSockets, PeerSession,
                                   SendDatagram, SendSignal, SessionConfig, State,
                                   StateChanged)
from netsprint.p2p.states import FINAL_STATES
from netsprint.reactor.addresses import resolve
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.protocols import DatagramProtocol
from netsprint.reactor.timers import Timer
from netsprint.reactor.udp import UdpSocket
from netsprint.signaling import protocol as sp
from netsprint.signaling.client import SignalingClient
from netsprint.signaling.framing import FrameDecoder, encode_frame

PATH_UP = (State.CONNECTED, State.RELAYED)
# A full window (128 segments of ~1.2 KB) may arrive in one burst while the loop is busy;
# the kernel drops what the receive buffer cannot hold (capped at net.core.rmem_max).
RECV_BUFFER_BYTES = 1024 * 1024

RecordHandler = Callable[[bytes], Any]
StateHandler = Callable[[StateChanged], Any]


class _SocketTap(DatagramProtocol):
    """Tells the peer which of its sockets a datagram (or ICMP error) came in on."""

    def __init__(self, peer: Peer, index: int) -> None:
        self._peer = peer
        self._index = index

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self._peer._datagram_received(data, addr, self._index)

    def error_received(self, exc: OSError) -> None:
        # ICMP port unreachable from a candidate that is not listening: expected while
        # punching (RFC 8445 section 7.2.5.2.1 treats it as a failed check, nothing more).
        self._peer.log.debug("socket %d: %s", self._index, exc)


class Peer:
    """One peer. Owns its UDP sockets (socket 0: the one used for STUN and punching;
    1..N: birthday probe sockets), its signaling client, the session and the channel;
    does not own the loop."""

    def __init__(self, loop: EventLoop, peer_id: str, signal: tuple[str, int], *,
                 stun: tuple[str, int] | None = None, stun_alt: tuple[str, int] | None = None,
                 session_config: SessionConfig | None = None,
                 channel_config: ChannelConfig | None = None,
                 bind: tuple[str, int] = ("0.0.0.0", 0),
                 on_record: RecordHandler | None = None,
                 on_state: StateHandler | None = None) -> None:
        self.loop = loop
        self.peer_id = peer_id
        self.session_config = session_config or SessionConfig()
        self.channel_config = channel_config or ChannelConfig()
        self.on_record = on_record or (lambda record: None)
        self.on_state = on_state or (lambda change: None)
        self.log = connection_logger("netsprint.p2p.peer", peer_id)
        self.gathered: Gathered = Gathered(())
        self.session: PeerSession | None = None
        self.channel: ReliableChannel | None = None
        self.records_received = 0
        self.malformed_segments = 0
        self.connect_started: float | None = None
        self.time_to_connect: float | None = None
        self.signal_error: sp.Error | None = None
        self._decoder = FrameDecoder()
        self._outbox = bytearray()
        self._sources: deque[Iterator[bytes]] = deque()
        self._timer: Timer | None = None
        self._sockets: dict[int, UdpSocket] = {}
        self._open_main_socket(bind, stun, stun_alt, towards=signal)
        self.signal = SignalingClient(loop, signal[0], signal[1], on_message=self._on_signal,
                                      on_close=self._on_signal_closed)
        self.signal.register(peer_id)

    def _open_main_socket(self, bind: tuple[str, int], stun: tuple[str, int] | None,
                          stun_alt: tuple[str, int] | None, *,
                          towards: tuple[str, int]) -> None:
        family, local_addr = resolve(bind[0], bind[1], socket.SOCK_DGRAM, passive=True)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(local_addr)
            self.gathered = gather(sock, stun, stun_alt, towards=None if stun else towards)
            self._sockets[0] = UdpSocket(self.loop, None, _SocketTap(self, 0), sock=sock,
                                         recv_buffer_bytes=RECV_BUFFER_BYTES)
        except BaseException:
            sock.close()
            raise
        self.log.info("candidates %s, mapping %s",
                      ", ".join(f"{c.kind} {c.ip}:{c.port}" for c in self.gathered.candidates),
                      self.gathered.mapping or "unknown")

    # -- what applications call -------------------------------------------------------------

    @property
    def registered(self) -> bool:
        return self.signal.peer_id is not None

    @property
    def state(self) -> State | None:
        return self.session.state if self.session else None

    @property
    def path_up(self) -> bool:
        return self.state in PATH_UP

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def connect(self, remote_id: str) -> None:
        """Start a session towards `remote_id` (which must be registered already)."""
        self._start_session(remote_id, initiator=True)

    def send_record(self, record: bytes) -> None:
        """Queue one record (chat line, file piece) for reliable, ordered delivery."""
        self._outbox += encode_frame(record)
        self._pump()

    def send_records(self, records: Iterator[bytes]) -> None:
        """Queue a stream of records, pulled only as the channel drains (a file is read as
        it is sent)."""
        self._sources.append(records)
        self._pump()

    @property
    def all_acknowledged(self) -> bool:
        """True when every queued record has reached the peer (acknowledged); also before
        anything was queued. Records in flight when a session fails or closes are never
        acknowledged: wait for `all_acknowledged or finished`."""
        return (not self._outbox and not self._sources
                and (self.channel is None or self.channel.idle()))

    def close(self) -> None:
        if self.session is not None and self.session.state not in FINAL_STATES:
            self._apply(self.session.close(self.loop.time()))
        self._cancel_timer()
        for udp in self._sockets.values():
            udp.close()
        self._sockets.clear()
        if not self.signal.closed:
            self.signal.close()

    # -- session lifecycle -----------------------------------------------------------------

    def _start_session(self, remote_id: str, *, initiator: bool) -> None:
        now = self.loop.time()
        self.connect_started = now
        self.time_to_connect = None
        self.session = PeerSession(self.peer_id, remote_id, initiator=initiator, now=now,
                                   config=self.session_config)
        self.channel = ReliableChannel(self.channel_config, now=now)
        self._apply(self.session.candidates_gathered(list(self.gathered.candidates), now,
                                                     mapping=self.gathered.mapping))

    def _on_signal(self, msg: sp.Message) -> None:
        if isinstance(msg, sp.Offer) and (self.session is None or self.finished):
            self._start_session(msg.from_, initiator=False)
        if isinstance(msg, sp.Error):
            self.signal_error = msg
            self.log.warning("signaling error %s: %s", msg.code, msg.reason)
        if self.session is not None:
            self._apply(self.session.signal_received(msg, self.loop.time()))

    def _on_signal_closed(self, exc: BaseException | None) -> None:
        # A live direct path does not need signaling; only a session still setting up does.
        self.log.info("signaling connection closed%s", f": {exc}" if exc else "")

    def _datagram_received(self, data: bytes, addr: tuple, index: int) -> None:
        if self.session is not None:
            self._apply(self.session.datagram_received(data, addr[:2], self.loop.time(),
                                                       sock=index))

    def _on_timer(self) -> None:
        self._timer = None
        if self.session is not None:  # the channel's retransmissions run in _pump
            self._apply(self.session.tick(self.loop.time()))

    # -- carrying out actions --------------------------------------------------------------

    def _apply(self, actions: list, *, pump: bool = True) -> None:
        for action in actions:
            if isinstance(action, SendDatagram):
                self._send_datagram(action)
            elif isinstance(action, SendSignal):
                self._send_signal(action.msg)
            elif isinstance(action, Deliver):
                self._segment_received(action.body)
            elif isinstance(action, StateChanged):
                self._state_changed(action)
            elif isinstance(action, OpenSockets):
                self._open_probe_sockets(action.count)
            elif isinstance(action, CloseSockets):
                self._close_probe_sockets(keep=action.keep)
        if pump:
            self._pump()

    def _segment_received(self, body: bytes) -> None:
        try:
            self.channel.segment_received(body, self.loop.time())
        except DecodeError as exc:  # one bad datagram is dropped, the stream goes on
            self.malformed_segments += 1
            self.log.debug("malformed segment dropped: %s", exc)

    def _send_datagram(self, action: SendDatagram) -> None:
        udp = self._sockets.get(action.sock)
        if udp is not None and not udp.closed:
            udp.sendto(action.data, action.addr)

    def _send_signal(self, msg: sp.Message) -> None:
        if self.signal.closed:
            self.log.warning("cannot send %s: signaling is closed", msg.TYPE)
            return
        self.signal.send(msg)

    def _state_changed(self, change: StateChanged) -> None:
        now = self.loop.time()
        if change.new in PATH_UP:
            if self.time_to_connect is None and self.connect_started is not None:
                self.time_to_connect = now - self.connect_started
            self.channel.path_changed(now)  # new path: fresh RTT estimate, resend what is unacked
        self.on_state(change)

    def _open_probe_sockets(self, count: int) -> None:
        start = max(self._sockets) + 1
        for index in range(start, start + count):
            self._sockets[index] = UdpSocket(self.loop, ("0.0.0.0", 0), _SocketTap(self, index))

    def _close_probe_sockets(self, keep: int) -> None:
        for index in [i for i in self._sockets if i not in (0, keep)]:
            self._sockets.pop(index).close()

    def _pump(self) -> None:
        """Move record bytes into the channel, segments onto the path, delivered bytes up,
        and re-arm the one timer."""
        if self.session is None or self.channel is None:
            return
        now = self.loop.time()
        self._fill_channel()
        if self.session.state in PATH_UP:
            for body in self.channel.poll(now):
                self._apply(self.session.send(body, now), pump=False)
        self._deliver_records()
        self._arm_timer()

    def _fill_channel(self) -> None:
        """Write framed records into the channel while its bounded send buffer has room.
        Records of a stream are pulled only then, so a file is read as it is sent; the
        outbox holds what the channel refused (records queued before a session exists,
        or the tail of the last record that did not fit)."""
        while True:
            if self._outbox:
                accepted = self.channel.write(self._outbox)
                del self._outbox[:accepted]
                if self._outbox:
                    return  # the send buffer is full: acknowledgements will free it
            if not self._sources:
                return
            try:
                record = next(self._sources[0], None)
            except (OSError, NetsprintError) as exc:
                # A file that changed or vanished while being sent ends its stream here
                # (the receiver drops the unfinished file at the next offer); an escaping
                # exception would leave this pump half done and the timer unarmed.
                self.log.warning("record stream abandoned: %s", exc)
                record = None
            if record is None:
                self._sources.popleft()
            else:
                self._outbox += encode_frame(record)

    def _deliver_records(self) -> None:
        data = self.channel.read()
        if not data:
            return
        for record in self._decoder.feed(data):
            self.records_received += 1
            self.on_record(record)

    def _arm_timer(self) -> None:
        deadlines = [d for d in (self.session.next_deadline(),
                                 self.channel.next_deadline() if self.path_up else None)
                     if d is not None]
        when = min(deadlines) if deadlines else None
        if self._timer is not None and self._timer.when == when:
            return
        self._cancel_timer()
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
