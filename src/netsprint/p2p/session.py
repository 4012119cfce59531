"""One peer-to-peer session, sans-I/O: signaling, hole punching, heartbeats, relay fallback.

`PeerSession` composes the state machine (states.py), one punching attempt at a time
(punch.py) and the heartbeat of the current path (heartbeat.py). Its inputs are what
happened — candidates gathered, a signaling message, a datagram on socket N, a tick — each
with `now`; its outputs are actions for the shell (p2p/peer.py) to carry out, in order:

- `SendDatagram(data, addr, sock)`: send from local socket `sock` (0 = the STUN socket);
- `SendSignal(msg)`: send over the signaling connection;
- `Deliver(body)`: a DATA body from the peer, for the reliable channel;
- `StateChanged(old, new, reason, path)`: a transition (the channel resets on a new path);
- `OpenSockets(count)` / `CloseSockets(keep)`: birthday mode's extra sockets 1..count.

The shell calls `tick(now)` at `next_deadline()`. Nothing here reads a clock or a socket,
so tests run whole sessions on a FakeClock.

Paths: the first PROBE_ACK for one of our txids makes its *source* the direct path (the
address the peer's NAT really uses, which may be none of its candidates). After
`punch_timeout` the session asks the signaling server for a relay and binds to it. A path
silent for `dead_after` is dead: a direct one is re-punched, a relayed one re-bound.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Union

from netsprint.log import connection_logger
from netsprint.p2p import packet
from netsprint.p2p.heartbeat import DEAD, KEEPALIVE, Heartbeat, HeartbeatConfig
from netsprint.p2p.punch import Addr, PunchConfig, Puncher, SendDatagram, Target
from netsprint.p2p.states import Event, State, StateChanged, StateMachine
from netsprint.signaling import protocol as sig
from netsprint.signaling.protocol import CandidateAddr, Message
from netsprint.stun.nat import ENDPOINT_INDEPENDENT

__all__ = ["SessionConfig", "PeerSession", "SendDatagram", "SendSignal", "Deliver",
           "StateChanged", "OpenSockets", "CloseSockets", "Action", "State"]

STAT_KEYS = (
    # dropped inputs
    "not_p2p", "undecodable", "wrong_session", "unexpected_packet", "unmatched_ack",
    "own_probe", "after_close", "bad_signal", "unexpected_signal", "send_without_path",
    # traffic
    "probes_sent", "probe_acks_sent", "keepalives_sent", "relay_binds_sent", "data_sent",
    "data_received",
)


@dataclass(frozen=True)
class SessionConfig:
    signaling_timeout: float = 10.0   # Signaling -> Failed without an answer
    relay_timeout: float = 5.0        # Fallback -> Failed without RELAY_BOUND
    relay_bind_interval: float = 0.2  # RELAY_BIND retransmission interval
    punch: PunchConfig = field(default_factory=PunchConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)


@dataclass(frozen=True)
class SendSignal:
    """Send `msg` over the signaling connection."""

    msg: Message


@dataclass(frozen=True)
class Deliver:
    """A DATA body from the peer, for the channel."""

    body: bytes


@dataclass(frozen=True)
class OpenSockets:
    """Birthday mode: open local sockets 1..count (socket 0 is the STUN socket)."""

    count: int


@dataclass(frozen=True)
class CloseSockets:
    """Birthday mode: close the extra sockets, all but `keep` (0 closes every extra one)."""

    keep: int


Action = Union[SendDatagram, SendSignal, Deliver, StateChanged, OpenSockets, CloseSockets]


@dataclass(frozen=True)
class _RelayGrant:
    token: bytes
    relay: Addr
    expires_at: float


class PeerSession:
    """Owns one session with one remote peer: its state, the punching attempt, the current
    path and its heartbeat, the relay grant and the counters in `stats`. Does not own
    sockets, the clock or the signaling connection: it returns actions for those."""

    def __init__(self, local_id: str, remote_id: str, *, initiator: bool, now: float,
                 config: SessionConfig = SessionConfig(), session_id: bytes | None = None,
                 rng: random.Random | None = None,
                 log: logging.LoggerAdapter | None = None) -> None:
        self.local_id = local_id
        self.remote_id = remote_id
        self.initiator = initiator
        self.config = config
        self._rng = rng if rng is not None else random.SystemRandom()
        if session_id is None and initiator:
            session_id = self._rng.randbytes(packet.SESSION_ID_BYTES)
        # A responder learns the id from the Offer; until then every datagram is a stray.
        self.session_id: bytes | None = session_id
        self.log = log or connection_logger(__name__, f"{local_id}->{remote_id}")
        self._machine = StateMachine(now, self.log)
        self.transitions: list[StateChanged] = self._machine.history
        self.path: Addr | None = None
        self.path_kind: str | None = None  # "direct" | "relay"
        self.path_sock = 0
        self.connected_at: float | None = None
        self.local_candidates: tuple[CandidateAddr, ...] = ()
        self.remote_candidates: list[CandidateAddr] = []
        self.local_mapping: str | None = None
        self.remote_mapping: str | None = None
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._learned_targets: list[Target] = []  # PROBE sources (peer-reflexive addresses)
        self._pending_offer: sig.Offer | None = None
        self._puncher = Puncher(config.punch, session_id or bytes(packet.SESSION_ID_BYTES),
                                self._rng)
        self._heartbeat: Heartbeat | None = None
        self._keepalive_seq = 0
        self._grant: _RelayGrant | None = None
        self._next_bind_at: float | None = None
        self._deadline: float | None = None  # signaling or relay timeout, by state
        self._extra_sockets_open = False

    @property
    def state(self) -> State:
        return self._machine.state

    @property
    def session_hex(self) -> str | None:
        return None if self.session_id is None else packet.session_id_hex(self.session_id)

    # -- inputs: gathering and signaling ------------------------------------------------------

    def candidates_gathered(self, candidates: list[CandidateAddr], now: float, *,
                            mapping: str | None = None) -> list[Action]:
        """Own candidates known (host + srflx, from socket 0). The initiator sends the
        Offer; a responder holding an Offer answers it and starts probing."""
        self.local_candidates = tuple(candidates)
        self.local_mapping = mapping
        actions: list[Action] = [self._fire(Event.GATHERED, now,
                                            f"{len(candidates)} candidates gathered")]
        self._deadline = now + self.config.signaling_timeout
        if self.initiator:
            offer = sig.Offer(to=self.remote_id, candidates=self.local_candidates,
                              session=self.session_hex, mapping=mapping)
            actions.append(SendSignal(offer))
        elif self._pending_offer is not None:
            offer, self._pending_offer = self._pending_offer, None
            actions.extend(self._accept_offer(offer, now))
        return actions

    def signal_received(self, msg: Message, now: float) -> list[Action]:
        if self._machine.final:
            return self._ignore_signal("unexpected_signal", msg, f"session is {self.state.name}")
        if isinstance(msg, sig.PeerLeft):
            if msg.peer_id != self.remote_id:
                return self._ignore_signal("unexpected_signal", msg, "another peer left")
            return self._finish(Event.PEER_LEFT, now, f"signaling: peer {msg.peer_id} left")
        if isinstance(msg, sig.Error):
            return self._on_error(msg, now)
        if isinstance(msg, sig.Offer):
            return self._on_offer(msg, now)
        if not self._matches(msg):
            return self._ignore_signal("bad_signal", msg, "wrong sender or session")
        if isinstance(msg, sig.Answer):
            return self._on_answer(msg, now)
        if isinstance(msg, sig.Candidate):
            return self._on_candidate(msg, now)
        if isinstance(msg, sig.RelayGranted):
            return self._on_relay_granted(msg, now)
        return self._ignore_signal("unexpected_signal", msg, "not for a session")

    def _matches(self, msg: Message) -> bool:
        """From our peer (when the server said who) and for our session."""
        sender = getattr(msg, "from_", None)
        session = getattr(msg, "session", None)
        return (sender in (None, self.remote_id) and self.session_hex is not None
                and isinstance(session, str) and session.lower() == self.session_hex)

    def _on_offer(self, msg: sig.Offer, now: float) -> list[Action]:
        if self.initiator or msg.from_ not in (None, self.remote_id):
            return self._ignore_signal("bad_signal", msg, "an Offer we cannot take")
        if self.session_id is None:
            try:
                self.session_id = packet.session_id_from_hex(msg.session or "")
            except packet.PacketError as exc:
                return self._ignore_signal("bad_signal", msg, exc.reason)
            self._puncher.session_id = self.session_id
        elif not self._matches(msg):
            return self._ignore_signal("bad_signal", msg, "Offer for another session")
        if self.state is State.INIT:
            self._pending_offer = msg  # answered once our own candidates are known
            return []
        if self.state is not State.SIGNALING:
            return self._ignore_signal("unexpected_signal", msg, "Offer after signaling")
        return self._accept_offer(msg, now)

    def _accept_offer(self, msg: sig.Offer, now: float) -> list[Action]:
        self._learn_remote(msg.candidates, msg.mapping)
        answer = sig.Answer(to=self.remote_id, candidates=self.local_candidates,
                            session=self.session_hex, mapping=self.local_mapping)
        return [SendSignal(answer),
                *self._start_probing(now, f"Offer with {len(msg.candidates)} candidates")]

    def _on_answer(self, msg: sig.Answer, now: float) -> list[Action]:
        if not self.initiator or self.state is not State.SIGNALING:
            return self._ignore_signal("unexpected_signal", msg, f"Answer in {self.state.name}")
        self._learn_remote(msg.candidates, msg.mapping)
        return self._start_probing(now, f"Answer with {len(msg.candidates)} candidates")

    def _on_candidate(self, msg: sig.Candidate, now: float) -> list[Action]:
        """Trickle: one more remote candidate, probed at once while a check can help."""
        if msg.candidate not in self.remote_candidates:
            self.remote_candidates.append(msg.candidate)
        if self.state in (State.PROBING, State.FALLBACK, State.RELAYED):
            addr = (msg.candidate.ip, msg.candidate.port)
            return self._probes(self._puncher.add_target(addr, 0, now))
        return []

    def _on_relay_granted(self, msg: sig.RelayGranted, now: float) -> list[Action]:
        self._grant = _RelayGrant(bytes.fromhex(msg.token), (msg.relay.ip, msg.relay.port),
                                  now + msg.lifetime)
        if self.state is not State.FALLBACK:
            return []  # a late grant after a late direct path: kept for a later fallback
        self._next_bind_at = now
        return self._bind_if_due(now)

    def _on_error(self, msg: sig.Error, now: float) -> list[Action]:
        why = f"signaling error {msg.code}: {msg.reason}"
        if msg.ref == sig.RelayRequest.TYPE and self.state is State.FALLBACK:
            return self._finish(Event.RELAY_FAILED, now, f"relay refused ({why})")
        if msg.ref in (sig.Offer.TYPE, sig.Answer.TYPE) and self.state is State.SIGNALING:
            return self._finish(Event.SIGNALING_FAILED, now, why)
        return self._ignore_signal("unexpected_signal", msg, why)

    def _learn_remote(self, candidates: tuple[CandidateAddr, ...], mapping: str | None) -> None:
        for candidate in candidates:
            if candidate not in self.remote_candidates:
                self.remote_candidates.append(candidate)
        self.remote_mapping = mapping

    # -- inputs: datagrams --------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Addr, now: float,
                          sock: int = 0) -> list[Action]:
        if self._machine.final:
            return self._drop("after_close", addr, f"session is {self.state.name}")
        if not packet.is_p2p(data):
            return self._drop("not_p2p", addr, "no 'NS' header")
        try:
            pkt = packet.decode_packet(data)
        except packet.PacketError as exc:
            return self._drop("undecodable", addr, str(exc))
        if pkt.session != self.session_id:
            return self._drop("wrong_session", addr,
                              f"session {packet.session_id_hex(pkt.session)}")
        handler = self._PACKET_HANDLERS.get(pkt.type)
        if handler is None:
            return self._drop("unexpected_packet", addr, f"{pkt.type.name} is for relays")
        return handler(self, pkt, addr, sock, now)

    def _on_probe(self, pkt: packet.Packet, addr: Addr, sock: int,
                  now: float) -> list[Action]:
        if self._puncher.acked(pkt.body) is not None:
            # Our own PROBE came back (a candidate that is our own address): answering it
            # would "connect" us to ourselves.
            return self._drop("own_probe", addr, "our own PROBE")
        self._heard(now)
        # Answer to the address the PROBE came from, not to a candidate: that source is
        # the mapping the peer's NAT opened towards us (RFC 8445 section 7.3.1.3).
        self.stats["probe_acks_sent"] += 1
        actions: list[Action] = [
            SendDatagram(packet.probe_ack(self.session_id, pkt.body, addr), addr, sock)]
        return actions + self._triggered_check(addr, sock, now)

    def _triggered_check(self, addr: Addr, sock: int, now: float) -> list[Action]:
        """Probe a PROBE's source at once: for a symmetric peer that source is the only
        address its NAT will let our answer through (RFC 8445 section 7.3.1.4). It is also
        remembered for every later attempt; before probing starts it is only remembered,
        and a source already on this attempt's schedule waits for its next round."""
        target = (addr, sock)
        if self.state not in (State.SIGNALING, State.PROBING, State.FALLBACK, State.RELAYED):
            return []
        if target not in self._learned_targets:
            self._learned_targets.append(target)
        if self.state is State.SIGNALING:
            return []  # probed when probing starts
        if self.state is State.PROBING and target in self._puncher.targets:
            return []  # already on the schedule
        return self._probes(self._puncher.add_target(addr, sock, now))

    def _on_probe_ack(self, pkt: packet.Packet, addr: Addr, sock: int,
                      now: float) -> list[Action]:
        self._heard(now)
        txid, observed = packet.parse_probe_ack(pkt.body)
        if self._puncher.acked(txid) is None or self.state not in (
                State.PROBING, State.FALLBACK, State.RELAYED):
            return self._drop("unmatched_ack", addr, "PROBE_ACK for no probe in flight")
        return self._go_direct(addr, sock, now, observed)

    def _on_keepalive(self, pkt: packet.Packet, addr: Addr, sock: int,
                      now: float) -> list[Action]:
        self._heard(now)
        return []

    def _on_data(self, pkt: packet.Packet, addr: Addr, sock: int, now: float) -> list[Action]:
        self._heard(now)
        self.stats["data_received"] += 1
        return [Deliver(pkt.body)]

    def _on_relay_bound(self, pkt: packet.Packet, addr: Addr, sock: int,
                        now: float) -> list[Action]:
        if self.state is not State.FALLBACK or self._grant is None or addr != self._grant.relay:
            return self._drop("unexpected_packet", addr, f"RELAY_BOUND in {self.state.name}")
        return self._go_relayed(now, packet.u32(pkt.body))

    def _on_bye(self, pkt: packet.Packet, addr: Addr, sock: int, now: float) -> list[Action]:
        return self._finish(Event.BYE, now, f"BYE from {addr}")

    _PACKET_HANDLERS = {
        packet.PacketType.PROBE: _on_probe,
        packet.PacketType.PROBE_ACK: _on_probe_ack,
        packet.PacketType.KEEPALIVE: _on_keepalive,
        packet.PacketType.DATA: _on_data,
        packet.PacketType.RELAY_BOUND: _on_relay_bound,
        packet.PacketType.BYE: _on_bye,
    }

    # -- inputs: the application and time -----------------------------------------------------

    def send(self, body: bytes, now: float) -> list[Action]:
        """A DATA body on the current path. Without a path it is dropped (and counted): the
        channel above retransmits, as over any lossy datagram path. A body over
        packet.MAX_BODY_BYTES is a caller's bug (ValueError)."""
        if self._machine.final or self.path is None:
            self.stats["send_without_path"] += 1
            return []
        return [self._send(packet.data(self.session_id, body), now, "data_sent")]

    def close(self, now: float) -> list[Action]:
        """BYE on the current path (best effort: the peer's heartbeat covers its loss)."""
        if self._machine.final:
            return []
        actions: list[Action] = []
        if self.path is not None:
            actions.append(SendDatagram(packet.bye(self.session_id), self.path, self.path_sock))
        return actions + self._finish(Event.CLOSE, now, "closed locally")

    def tick(self, now: float) -> list[Action]:
        handler = self._TICK_HANDLERS.get(self.state)
        return handler(self, now) if handler else []

    def next_deadline(self) -> float | None:
        state = self.state
        if state is State.SIGNALING:
            return self._deadline
        if state is State.PROBING:
            return self._puncher.next_deadline()
        if state is State.FALLBACK:
            return min(t for t in (self._deadline, self._next_bind_at) if t is not None)
        if state in (State.CONNECTED, State.RELAYED) and self._heartbeat is not None:
            return self._heartbeat.next_deadline()
        return None

    def _tick_signaling(self, now: float) -> list[Action]:
        if now >= self._deadline:
            return self._finish(Event.SIGNALING_FAILED, now,
                              f"no answer within {self.config.signaling_timeout:g} s")
        return []

    def _tick_probing(self, now: float) -> list[Action]:
        if self._puncher.timed_out(now):
            self._puncher.halt()  # keep the txids: a late PROBE_ACK still connects
            change = self._fire(Event.PUNCH_TIMEOUT, now,
                                f"no PROBE_ACK within {self.config.punch.punch_timeout:g} s "
                                f"({self._puncher.probes_sent} probes)")
            return [change, *self._request_or_bind(now)]
        return self._probes(self._puncher.poll(now))

    def _tick_fallback(self, now: float) -> list[Action]:
        if now >= self._deadline:
            return self._finish(Event.RELAY_FAILED, now,
                              f"no RELAY_BOUND within {self.config.relay_timeout:g} s")
        return self._bind_if_due(now)

    def _tick_path(self, now: float) -> list[Action]:
        due = self._heartbeat.poll(now)
        if due == DEAD:
            return self._path_dead(now)
        if due == KEEPALIVE:
            self._keepalive_seq += 1
            data = packet.keepalive(self.session_id, self._keepalive_seq)
            return [self._send(data, now, "keepalives_sent")]
        return []

    _TICK_HANDLERS = {
        State.SIGNALING: _tick_signaling,
        State.PROBING: _tick_probing,
        State.FALLBACK: _tick_fallback,
        State.CONNECTED: _tick_path,
        State.RELAYED: _tick_path,
    }

    # -- the steps ----------------------------------------------------------------------------

    def _start_probing(self, now: float, reason: str) -> list[Action]:
        self._deadline = None
        change = self._fire(Event.SIGNALED, now, reason)
        return [change, *self._punch(now, birthday=self.config.punch.birthday)]

    def _punch(self, now: float, *, birthday: bool) -> list[Action]:
        """A fresh punching attempt at every remote candidate from socket 0, plus the
        addresses PROBEs came from, (re-punch) the path that just died and (birthday,
        symmetric side) the peer's srflx from every extra socket."""
        targets: list[Target] = [((c.ip, c.port), 0) for c in self.remote_candidates
                                 if c.kind != "relay"]
        if self.path is not None and self.path_kind == "direct":
            targets.insert(0, (self.path, self.path_sock))
        targets.extend(self._learned_targets)
        actions: list[Action] = []
        spray_ip = None
        role = self._birthday_role() if birthday else None
        srflx = [(c.ip, c.port) for c in self.remote_candidates if c.kind == "srflx"]
        if role == "sockets":
            count = self.config.punch.birthday_sockets
            actions.append(OpenSockets(count))
            self._extra_sockets_open = True
            targets.extend((addr, sock) for sock in range(1, count + 1) for addr in srflx)
        elif role == "spray":
            spray_ip = srflx[0][0]
        return actions + self._probes(self._puncher.start(now, targets, spray_ip))

    def _birthday_role(self) -> str | None:
        """Our part in birthday mode: "sockets" if ours is the one NAT that maps per
        destination, "spray" if the peer's is; None when neither or both are (or either
        is unknown)."""
        if self.local_mapping is None or self.remote_mapping is None:
            return None
        if not any(c.kind == "srflx" for c in self.remote_candidates):
            return None
        local_dependent = self.local_mapping != ENDPOINT_INDEPENDENT
        remote_dependent = self.remote_mapping != ENDPOINT_INDEPENDENT
        if local_dependent and not remote_dependent:
            return "sockets"
        if remote_dependent and not local_dependent:
            return "spray"
        return None

    def _go_direct(self, addr: Addr, sock: int, now: float, observed: Addr) -> list[Action]:
        self._puncher.stop()
        self._next_bind_at = None
        self._deadline = None
        self._set_path(addr, "direct", sock, now)
        change = self._fire(Event.PROBE_ACKED, now,
                            f"PROBE_ACK from {addr} on socket {sock} (it saw us as {observed})")
        return [change, *self._close_extra_sockets(keep=sock)]

    def _go_relayed(self, now: float, lifetime_s: int) -> list[Action]:
        self._next_bind_at = None
        self._deadline = None
        self._set_path(self._grant.relay, "relay", 0, now)
        change = self._fire(Event.RELAY_BOUND, now,
                            f"relay {self._grant.relay} bound us for {lifetime_s} s")
        return [change, *self._close_extra_sockets(keep=0)]

    def _set_path(self, addr: Addr, kind: str, sock: int, now: float) -> None:
        self.path, self.path_kind, self.path_sock = addr, kind, sock
        self.connected_at = now
        self._heartbeat = Heartbeat(self.config.heartbeat, now)

    def _path_dead(self, now: float) -> list[Action]:
        silent = now - self._heartbeat.last_received
        self._heartbeat = None
        reason = f"nothing from {self.path} for {silent:.3g} s"
        if self.state is State.CONNECTED:
            change = self._fire(Event.PATH_DEAD, now, reason + "; punching again")
            return [change, *self._punch(now, birthday=False)]
        change = self._fire(Event.PATH_DEAD, now, reason + "; binding the relay again")
        return [change, *self._request_or_bind(now)]

    def _request_or_bind(self, now: float) -> list[Action]:
        """Entering FALLBACK: bind with the grant we hold, else ask for one."""
        self._deadline = now + self.config.relay_timeout
        if self._grant is not None and now < self._grant.expires_at:
            self._next_bind_at = now
            return self._bind_if_due(now)
        self._grant = None
        self._next_bind_at = None
        return [SendSignal(sig.RelayRequest(to=self.remote_id, session=self.session_hex))]

    def _bind_if_due(self, now: float) -> list[Action]:
        if self._next_bind_at is None or now < self._next_bind_at or self._grant is None:
            return []
        self._next_bind_at = now + self.config.relay_bind_interval
        self.stats["relay_binds_sent"] += 1
        data = packet.relay_bind(self.session_id, self._grant.token)
        return [SendDatagram(data, self._grant.relay, 0)]

    def _finish(self, event: Event, now: float, reason: str) -> list[Action]:
        """Into FAILED or CLOSED: every timer stops."""
        self._puncher.stop()
        self._heartbeat = None
        self._next_bind_at = None
        self._deadline = None
        change = self._fire(event, now, reason)
        return [change, *self._close_extra_sockets(keep=0)]

    # -- helpers ------------------------------------------------------------------------------

    def _fire(self, event: Event, now: float, reason: str) -> StateChanged:
        return self._machine.fire(event, now, reason, self.path)

    def _close_extra_sockets(self, keep: int) -> list[Action]:
        if not self._extra_sockets_open:
            return []
        self._extra_sockets_open = False
        # PROBEs that reached a socket being closed leave targets a re-punch cannot use.
        self._learned_targets = [t for t in self._learned_targets if t[1] in (0, keep)]
        return [CloseSockets(keep=keep)]

    def _heard(self, now: float) -> None:
        if self._heartbeat is not None:
            self._heartbeat.on_received(now)

    def _send(self, data: bytes, now: float, counter: str) -> SendDatagram:
        self.stats[counter] += 1
        if self._heartbeat is not None:
            self._heartbeat.on_sent(now)
        return SendDatagram(data, self.path, self.path_sock)

    def _probes(self, datagrams: list[SendDatagram]) -> list[Action]:
        self.stats["probes_sent"] += len(datagrams)
        return list(datagrams)

    def _drop(self, counter: str, addr: Addr, why: str) -> list[Action]:
        self.stats[counter] += 1
        self.log.debug("dropped a datagram from %s: %s", addr, why)
        return []

    def _ignore_signal(self, counter: str, msg: Message, why: str) -> list[Action]:
        self.stats[counter] += 1
        self.log.debug("ignored signaling %s: %s", type(msg).__name__, why)
        return []
