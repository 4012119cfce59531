"""An in-memory network for PeerSession tests, driven by a FakeClock.

Two peers ("alice" initiates, "bob" answers), each optionally behind a NAT model, a fake
signaling server that forwards Offer/Answer/Candidate and grants relays, and the real
sans-I/O `RelayCore` at the server's address. Nothing touches a socket: datagrams are
events on a heap, delivered after `latency` seconds.

NAT models (RFC 4787): mapping is endpoint-independent ("eim": one public port per
private address) or endpoint-dependent ("edm": a new random public port per destination);
filtering lets in anyone ("eif"), hosts we sent to ("adf"), or exactly the addresses we
sent to ("apdf"). The five classic types are NAT_TYPES below; "none" is a host with a
public address (EIM + EIF with no translation).

Addresses are documentation ranges and never leave this process.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Callable

from netsprint.clock import FakeClock
from netsprint.p2p import packet
from netsprint.p2p.relay import RelayCore
from netsprint.p2p.session import (CloseSockets, Deliver, OpenSockets, PeerSession,
                                   SendDatagram, SendSignal, SessionConfig, StateChanged)
from netsprint.p2p.states import State
from netsprint.signaling import protocol as sig
from netsprint.stun.nat import ADDRESS_AND_PORT_DEPENDENT, ENDPOINT_INDEPENDENT

Addr = tuple[str, int]

# name -> (mapping, filtering); None: no NAT, the host has a public address.
NAT_TYPES: dict[str, tuple[str, str] | None] = {
    "none": None,
    "full-cone": ("eim", "eif"),
    "restricted": ("eim", "adf"),
    "port-restricted": ("eim", "apdf"),
    "symmetric": ("edm", "apdf"),
}

SERVER: Addr = ("203.0.113.100", 7000)          # signaling + relay (same port number)
STUN_SERVERS: tuple[Addr, Addr] = (("203.0.113.200", 3478), ("203.0.113.201", 3478))
HOST_PORT = 40000                               # socket i is bound to HOST_PORT + i
SETTLED = (State.CONNECTED, State.RELAYED, State.FAILED, State.CLOSED)


class Nat:
    """Owns one NAT's mapping table and what each public port has sent to."""

    def __init__(self, public_ip: str, mapping: str, filtering: str,
                 ports: tuple[int, int], rng: random.Random) -> None:
        self.public_ip = public_ip
        self.mapping = mapping
        self.filtering = filtering
        self.ports = ports
        self.rng = rng
        self.mappings: dict[tuple, int] = {}
        self.private_of: dict[int, Addr] = {}
        self.sent_to: dict[int, set[Addr]] = {}

    def outbound(self, src: Addr, dst: Addr) -> Addr:
        key = (src,) if self.mapping == "eim" else (src, dst)
        port = self.mappings.get(key)
        if port is None:
            port = self._free_port()
            self.mappings[key] = port
            self.private_of[port] = src
            self.sent_to[port] = set()
        self.sent_to[port].add(dst)
        return (self.public_ip, port)

    def inbound(self, src: Addr, public_port: int) -> Addr | None:
        private = self.private_of.get(public_port)
        if private is None or not self._allows(src, self.sent_to[public_port]):
            return None
        return private

    def _allows(self, src: Addr, sent_to: set[Addr]) -> bool:
        if self.filtering == "eif":
            return True
        if self.filtering == "adf":
            return any(ip == src[0] for ip, _ in sent_to)
        return src in sent_to

    def _free_port(self) -> int:
        low, high = self.ports
        while True:  # random, as symmetric NATs that resist prediction do
            port = self.rng.randint(low, high)
            if port not in self.private_of:
                return port


@dataclass
class Peer:
    """One simulated host: its session, sockets, NAT and what it got."""

    name: str
    ip: str
    nat: Nat | None
    session: PeerSession | None = None
    sockets: set[int] = field(default_factory=lambda: {0})
    delivered: list[bytes] = field(default_factory=list)
    changes: list[StateChanged] = field(default_factory=list)
    signals_sent: list = field(default_factory=list)

    def socket_of(self, port: int) -> int | None:
        sock = port - HOST_PORT
        return sock if sock in self.sockets else None

    @property
    def public_ip(self) -> str:
        return self.nat.public_ip if self.nat else self.ip


class Sim:
    """Owns the clock, the event heap, both peers, the fake signaling server and the relay."""

    def __init__(self, nat_a: str = "none", nat_b: str = "none", *,
                 config: SessionConfig = SessionConfig(), seed: int = 0, loss: float = 0.0,
                 latency: float = 0.01, signal_latency: float = 0.02,
                 nat_ports: tuple[int, int] = (1024, 65535), refuse_relay: bool = False) -> None:
        self.clock = FakeClock()
        self.rng = random.Random(seed)
        self.config = config
        self.loss = loss
        self.latency = latency
        self.signal_latency = signal_latency
        self.refuse_relay = refuse_relay
        self.cut_direct = False  # drop every datagram that does not touch the server
        self.relay = RelayCore(rng_bytes=self.rng.randbytes)
        self.lost = 0
        self._events: list = []
        self._seq = itertools.count()
        self.a = self._peer("alice", "198.51.100.10", "203.0.113.10", nat_a, nat_ports)
        self.b = self._peer("bob", "198.51.100.20", "203.0.113.20", nat_b, nat_ports)

    def _peer(self, name: str, lan_ip: str, public_ip: str, nat_type: str,
              ports: tuple[int, int]) -> Peer:
        model = NAT_TYPES[nat_type]
        if model is None:
            return Peer(name, public_ip, None)
        return Peer(name, lan_ip, Nat(public_ip, *model, ports, self.rng))

    # -- start ------------------------------------------------------------------------------

    def start(self) -> "Sim":
        """Create both sessions and let both gather at t=0."""
        now = self.clock.now()
        self.a.session = PeerSession("alice", "bob", initiator=True, now=now,
                                     config=self.config, rng=random.Random(self.rng.random()))
        self.b.session = PeerSession("bob", "alice", initiator=False, now=now,
                                     config=self.config, rng=random.Random(self.rng.random()))
        for peer in (self.a, self.b):
            candidates, mapping = self.gather(peer)
            self.handle(peer, peer.session.candidates_gathered(candidates, now, mapping=mapping))
        return self

    def gather(self, peer: Peer) -> tuple[list[sig.CandidateAddr], str]:
        """Host + srflx of socket 0, and the mapping behaviour seen by two STUN servers."""
        host = (peer.ip, HOST_PORT)
        candidates = [sig.CandidateAddr(peer.ip, HOST_PORT, "host")]
        if peer.nat is None:
            return candidates, ENDPOINT_INDEPENDENT
        first, second = (peer.nat.outbound(host, stun) for stun in STUN_SERVERS)
        candidates.append(sig.CandidateAddr(*first, "srflx"))
        same = first == second
        return candidates, ENDPOINT_INDEPENDENT if same else ADDRESS_AND_PORT_DEPENDENT

    # -- running ----------------------------------------------------------------------------

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> None:
        """Process events and session deadlines in time order up to `until` (absolute)."""
        same_instant = 0
        while not (stop and stop()):
            when = self._next_time()
            if when is None or when > until:
                self.clock.set(max(until, self.clock.now()))
                return
            same_instant = same_instant + 1 if when <= self.clock.now() else 0
            if same_instant > 10_000:
                raise AssertionError(f"the simulation is stuck at t={when}")
            self.clock.set(max(when, self.clock.now()))
            self._run_due()

    def run_until_settled(self, limit: float = 30.0) -> None:
        self.run(self.clock.now() + limit, stop=self.settled)

    def settled(self) -> bool:
        return all(p.session.state in SETTLED for p in (self.a, self.b))

    def _next_time(self) -> float | None:
        times = [self._events[0][0]] if self._events else []
        times += [t for p in (self.a, self.b) if (t := p.session.next_deadline()) is not None]
        return min(times, default=None)

    def _run_due(self) -> None:
        now = self.clock.now()
        while self._events and self._events[0][0] <= now:
            _, _, fn = heapq.heappop(self._events)
            fn()
        for peer in (self.a, self.b):
            deadline = peer.session.next_deadline()
            if deadline is not None and deadline <= now:
                self.handle(peer, peer.session.tick(now))

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._events, (self.clock.now() + delay, next(self._seq), fn))

    # -- actions ----------------------------------------------------------------------------

    def handle(self, peer: Peer, actions: list) -> None:
        for action in actions:
            if isinstance(action, SendDatagram):
                self.send(peer, action)
            elif isinstance(action, SendSignal):
                peer.signals_sent.append(action.msg)
                self.at(self.signal_latency, lambda m=action.msg: self.signal(peer, m))
            elif isinstance(action, Deliver):
                peer.delivered.append(action.body)
            elif isinstance(action, StateChanged):
                peer.changes.append(action)
            elif isinstance(action, OpenSockets):
                peer.sockets |= set(range(action.count + 1))
            elif isinstance(action, CloseSockets):
                peer.sockets = {0, action.keep}
            else:
                raise AssertionError(f"unknown action {action!r}")

    def send(self, peer: Peer, action: SendDatagram) -> None:
        if action.sock not in peer.sockets:
            raise AssertionError(f"{peer.name} sent from closed socket {action.sock}")
        src = (peer.ip, HOST_PORT + action.sock)
        public_src = peer.nat.outbound(src, action.addr) if peer.nat else src
        self._transmit(public_src, action.addr, action.data)

    def _transmit(self, src: Addr, dst: Addr, data: bytes) -> None:
        if self.loss and self.rng.random() < self.loss:
            self.lost += 1
            return
        self.at(self.latency, lambda: self._arrive(src, dst, data))

    def _arrive(self, src: Addr, dst: Addr, data: bytes) -> None:
        if dst == SERVER:
            for action in self.relay.datagram_received(data, src, self.clock.now()):
                self._transmit(SERVER, action.addr, action.data)  # Forward and Reply alike
            return
        if self.cut_direct and src != SERVER:
            return
        peer = next((p for p in (self.a, self.b) if p.public_ip == dst[0]), None)
        if peer is None:
            return  # nobody on the internet has that address (e.g. a private candidate)
        private = peer.nat.inbound(src, dst[1]) if peer.nat else dst
        sock = peer.socket_of(private[1]) if private else None
        if sock is not None:
            now = self.clock.now()
            self.handle(peer, peer.session.datagram_received(data, src, now, sock))

    # -- the fake signaling server ------------------------------------------------------------

    def signal(self, sender: Peer, msg: sig.Message) -> None:
        other = self.b if sender is self.a else self.a
        if isinstance(msg, sig.FORWARDED_TYPES):
            forwarded = dataclasses.replace(msg, from_=sender.name)
            self.at(self.signal_latency, lambda: self._to_session(other, forwarded))
        elif isinstance(msg, sig.RelayRequest):
            reply = self._grant(sender, msg)
            self.at(self.signal_latency, lambda: self._to_session(sender, reply))
        else:
            raise AssertionError(f"the fake server does not take {msg!r}")

    def _grant(self, sender: Peer, msg: sig.RelayRequest) -> sig.Message:
        if self.refuse_relay:
            return sig.Error(code=sig.RELAY_REFUSED, reason="relay full", ref="relay_request")
        grant = self.relay.grant(msg.session, sender.name, msg.to, self.clock.now())
        return sig.RelayGranted(session=msg.session, token=grant.token.hex(),
                                relay=sig.Endpoint(*SERVER), lifetime=grant.lifetime)

    def _to_session(self, peer: Peer, msg: sig.Message) -> None:
        self.handle(peer, peer.session.signal_received(msg, self.clock.now()))

    def peer_left(self, peer: Peer) -> None:
        """The server tells `peer` that the other one disconnected."""
        other = self.b if peer is self.a else self.a
        self._to_session(peer, sig.PeerLeft(peer_id=other.name))


# -- helpers for driving one session alone ------------------------------------------------------

ALICE_HOST = sig.CandidateAddr("198.51.100.10", HOST_PORT, "host")
ALICE_SRFLX = sig.CandidateAddr("203.0.113.10", 5000, "srflx")
BOB_HOST = sig.CandidateAddr("198.51.100.20", HOST_PORT, "host")
BOB_SRFLX = sig.CandidateAddr("203.0.113.20", 6000, "srflx")


def probing_session(now: float = 0.0, config: SessionConfig = SessionConfig(), *,
                    remote: tuple = (BOB_SRFLX,), local_mapping: str | None = None,
                    remote_mapping: str | None = None,
                    seed: int = 7) -> tuple[PeerSession, list]:
    """An initiator ("alice" -> "bob") that has sent its Offer and got bob's Answer; with
    the actions that Answer caused (the transition and the first round of probes)."""
    session = PeerSession("alice", "bob", initiator=True, now=now, config=config,
                          rng=random.Random(seed))
    session.candidates_gathered([ALICE_HOST, ALICE_SRFLX], now, mapping=local_mapping)
    answer = sig.Answer(to="alice", candidates=tuple(remote), session=session.session_hex,
                        from_="bob", mapping=remote_mapping)
    return session, session.signal_received(answer, now)


def drive(session: PeerSession, until: float, clock: FakeClock,
          stop: Callable[[PeerSession], bool] = lambda s: False) -> list[tuple[float, object]]:
    """Tick `session` at each of its deadlines up to `until`: [(time, action), ...]."""
    timeline = []
    same_instant = 0
    while (deadline := session.next_deadline()) is not None and deadline <= until:
        # A deadline that never moves on (tick() acting, or not, without advancing it)
        # would loop forever: fail fast, as Sim.run does.
        same_instant = same_instant + 1 if deadline <= clock.now() else 0
        if same_instant > 10_000:
            raise AssertionError(f"the session is stuck at t={deadline}")
        clock.set(max(deadline, clock.now()))
        actions = session.tick(clock.now())
        timeline += [(clock.now(), a) for a in actions]
        if stop(session):
            break
    return timeline


def ms(t: float) -> int:
    return round(t * 1000)


def decoded(action: SendDatagram) -> packet.Packet:
    return packet.decode_packet(action.data)
