"""`netsprint lab matrix`: two peers connect behind every pair of NAT types.

For each cell the lab's routers get the two NAT types, the peers run in peer-a and peer-b
(each on its own reactor, in a thread that entered the peer's namespace), and the STUN
server and the signaling server with its relay run in the internet namespace. A cell
passes when each peer has received the other's record over the P2P channel; it records
the path (direct or relay) and the initiator's time to connect (from `connect()` to a
working path: signaling, punching and, for relay cells, the punch timeout and relay bind).

Theory (RFC 4787): punching works unless one side's NAT picks a new port per destination
(symmetric: address-and-port-dependent mapping) and the other side filters on the port it
was sent to, or also picks new ports. So symmetric<->symmetric and
symmetric<->port-restricted need the relay; everything else goes direct. Birthday mode
turns symmetric<->port-restricted into a game of chance that the peers usually win.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterator, TypeVar

from netsprint.lab import LabError
from netsprint.lab.nat_types import NAT_TYPES
from netsprint.lab.topology import STUN_PORT, NatLab
from netsprint.p2p.peer import Peer
from netsprint.p2p.relay import RelayLimits
from netsprint.p2p.session import SessionConfig
from netsprint.reactor.loop import EventLoop
from netsprint.signaling.server import SignalingServer
from netsprint.stun.server import StunServer

SIGNAL_PORT = 7000
CELL_TIMEOUT = 15.0  # punch timeout + relay set-up + exchange, with room to spare
NEEDS_RELAY = frozenset({frozenset({"symmetric"}), frozenset({"symmetric", "port-restricted"})})

T = TypeVar("T")


def expected_path(nat_a: str, nat_b: str) -> str:
    """What theory says without birthday mode: "relay" or "direct"."""
    return "relay" if frozenset({nat_a, nat_b}) in NEEDS_RELAY else "direct"


@dataclass
class Cell:
    """One pair of NAT types and what happened: `path` as `cell_path` tells it, the
    initiator's (a's) time to connect, each side's state names in order."""

    nat_a: str
    nat_b: str
    expected: str
    connected: bool = False
    path: str | None = None
    time_to_connect: float | None = None
    states_a: list[str] = field(default_factory=list)
    states_b: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def as_expected(self) -> bool:
        return self.connected and self.path == self.expected

    def to_dict(self) -> dict:
        return {**asdict(self), "as_expected": self.as_expected}


def _nobody() -> list[str]:
    return []


@dataclass(frozen=True)
class LabServices:
    stun: tuple[str, int]
    stun_alt: tuple[str, int]
    signal: tuple[str, int]
    # The peer ids the signaling server holds now (read from another thread: a snapshot).
    registered_peers: Callable[[], list[str]] = field(default=_nobody, compare=False,
                                                      repr=False)


@contextlib.contextmanager
def loop_in_netns(lab: NatLab, node: str, build: Callable[[EventLoop], T],
                  name: str) -> Iterator[T]:
    """`build(loop)` runs inside `node`'s namespace (so its sockets live there), then the
    loop serves in that thread until the block ends."""
    loop = EventLoop()
    ready = threading.Event()
    box: dict[str, object] = {}

    def serve() -> None:
        try:
            box["value"] = build(loop)
        except BaseException as exc:  # handed to the caller below, not swallowed
            box["error"] = exc
            return
        finally:
            ready.set()
        loop.run_forever()

    thread = lab.thread(node, serve, name=name)
    thread.daemon = True
    thread.start()
    ready.wait()
    try:
        if "error" in box:
            raise LabError(f"{name} did not start in {node}: {box['error']}") from box["error"]
        yield box["value"]
    finally:
        loop.stop()
        thread.join(timeout=10.0)
        value = box.get("value")
        if value is not None:
            value.close()
        if not thread.is_alive():
            loop.close()


class _Servers:
    """The STUN server and the signaling server (with relay) of one internet namespace."""

    def __init__(self, loop: EventLoop, stun_ips: tuple[str, str], relay: RelayLimits) -> None:
        self.stun = StunServer(loop, (stun_ips[0], STUN_PORT), stun_ips[1])
        try:
            self.signal = SignalingServer(loop, stun_ips[0], SIGNAL_PORT, relay_limits=relay)
        except BaseException:
            self.stun.close()
            raise

    def close(self) -> None:
        self.signal.close()
        self.stun.close()


@contextlib.contextmanager
def lab_services(lab: NatLab, relay: RelayLimits | None = None) -> Iterator[LabServices]:
    """STUN (RFC 5780, both addresses) and signaling + relay, in the lab's internet."""
    ips = lab.stun_addresses
    with loop_in_netns(lab, "internet", lambda loop: _Servers(loop, ips, relay or RelayLimits()),
                       name="lab-services") as servers:
        yield LabServices((ips[0], STUN_PORT), (ips[1], STUN_PORT), (ips[0], SIGNAL_PORT),
                          registered_peers=servers.signal.core.peer_ids)


class PeerRun:
    """One peer of a pair, run by `run_pair` in its node's thread: it registers, connects
    (the initiator) and, once a path is up, calls `exchange`; it keeps what happened (states,
    path kind, time to connect, the error that ended it). The matrix's exchange is one
    hello each way; subclasses (the end-to-end tests) override `attach` and `exchange`."""

    def __init__(self, peer_id: str, services: LabServices, config: SessionConfig,
                 timeout: float) -> None:
        self.peer_id, self.services, self.config, self.timeout = peer_id, services, config, timeout
        self.registered = threading.Event()
        self.peer: Peer | None = None
        self.states: list[str] = []
        self.path: str | None = None
        self.time_to_connect: float | None = None
        self.error: str | None = None

    def run(self, remote: str | None, wait_for: threading.Event | None) -> None:
        """Thread body: connect to `remote` once `wait_for` is set (None: wait to be called)."""
        loop = EventLoop()
        try:
            self._run(loop, remote, wait_for)
        except Exception as exc:  # reported in the cell: one broken cell must not stop the rest
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.registered.set()
            if self.peer is not None:
                self.peer.close()
            loop.close()

    def _run(self, loop: EventLoop, remote: str | None, wait_for: threading.Event | None) -> None:
        s = self.services
        peer = self.peer = Peer(loop, self.peer_id, s.signal, stun=s.stun, stun_alt=s.stun_alt,
                                session_config=self.config,
                                on_state=lambda c: self.states.append(c.new.name))
        self.attach(peer)
        deadline = time.monotonic() + self.timeout
        loop.run_until(lambda: peer.registered, self.timeout)
        self.registered.set()
        if remote is not None:
            if not wait_for.wait(self.timeout):
                raise LabError("the other peer never registered")
            peer.connect(remote)
        loop.run_until(lambda: peer.path_up or peer.finished, deadline - time.monotonic())
        if not peer.path_up:
            raise LabError(f"no path: session ended in {peer.state.name}")
        self.path = peer.session.path_kind
        self.time_to_connect = peer.time_to_connect
        self.exchange(loop, peer, deadline)

    def attach(self, peer: Peer) -> None:
        """Called once the peer exists, before it registers (e.g. to wrap it in a chat)."""

    def exchange(self, loop: EventLoop, peer: Peer, deadline: float) -> None:
        """What the peers do over the path, until `deadline` (monotonic): one hello each."""
        peer.send_record(f"hello from {self.peer_id}".encode())
        # The other side may leave (BYE) before its last ACK reaches us: left counts as done.
        loop.run_until(lambda: peer.records_received >= 1
                       and (peer.all_acknowledged or peer.finished), deadline - time.monotonic())


def run_pair(lab: NatLab, a: PeerRun, b: PeerRun, *,
             while_running: Callable[[], object] | None = None) -> None:
    """Run `b` in peer-b and `a` in peer-a, `a` connecting to `b` once `b` has registered;
    `while_running()` runs in this thread meanwhile (e.g. to cut the path). Returns when
    both are done (each is bounded by its own timeout)."""
    threads = [lab.thread("peer-b", b.run, None, None, name="peer-b"),
               lab.thread("peer-a", a.run, b.peer_id, b.registered, name="peer-a")]
    for thread in threads:
        thread.start()
    try:
        if while_running is not None:
            while_running()
    finally:
        for thread in threads:
            thread.join(max(a.timeout, b.timeout) + 10.0)


def cell_path(a: str | None, b: str | None) -> str | None:
    """The cell's path from each side's: the one both saw, "direct/relay" (a's / b's) when
    each side got a path of another kind, None when either side got none."""
    if a is None or b is None:
        return None
    return a if a == b else f"{a}/{b}"


def wait_until_no_peers(services: LabServices, timeout: float = 60.0) -> None:
    """Before a conntrack flush: the last run's peers have closed their signaling
    connections, but under loss a FIN may still be in retransmission. Flushing conntrack
    under it strands the server's side until its heartbeat timeout, and the next peer of
    the same id is refused as taken."""
    deadline = time.monotonic() + timeout
    while services.registered_peers():
        if time.monotonic() >= deadline:
            raise LabError(f"the signaling server still holds {services.registered_peers()}")
        time.sleep(0.02)


def run_cell(lab: NatLab, services: LabServices, nat_a: str, nat_b: str, *,
             config: SessionConfig | None = None, timeout: float = CELL_TIMEOUT) -> Cell:
    """Connect peer-a (initiator) to peer-b behind the given NAT types."""
    lab.set_nat("a", nat_a)
    lab.set_nat("b", nat_b)
    wait_until_no_peers(services)
    lab.flush_conntrack()  # no mapping or permission left over from the previous cell
    config = config or SessionConfig()
    a = PeerRun("a", services, config, timeout)
    b = PeerRun("b", services, config, timeout)
    run_pair(lab, a, b)
    error = a.error or b.error
    path = cell_path(a.path, b.path)
    return Cell(nat_a, nat_b, expected_path(nat_a, nat_b),
                connected=error is None and path is not None, path=path,
                time_to_connect=a.time_to_connect, states_a=a.states, states_b=b.states,
                error=error)


def run_matrix(nat_types: tuple[str, ...] = NAT_TYPES, *, config: SessionConfig | None = None,
               progress: Callable[[str], object] | None = None) -> list[Cell]:
    """Every ordered pair of `nat_types`, on one lab."""
    tell = progress or (lambda message: None)
    cells = []
    tell("building the lab")
    with NatLab() as lab, lab_services(lab) as services:
        for nat_a in nat_types:
            for nat_b in nat_types:
                tell(f"{nat_a} <-> {nat_b}")
                cells.append(run_cell(lab, services, nat_a, nat_b, config=config))
    return cells


def birthday_trials(trials: int, *, config: SessionConfig | None = None,
                    progress: Callable[[str], object] | None = None) -> list[Cell]:
    """Repeat symmetric (a) <-> port-restricted (b) with birthday mode on."""
    tell = progress or (lambda message: None)
    base = config or SessionConfig()
    config = replace(base, punch=replace(base.punch, birthday=True))
    cells = []
    with NatLab() as lab, lab_services(lab) as services:
        for trial in range(trials):
            tell(f"birthday trial {trial + 1}/{trials}")
            cell = run_cell(lab, services, "symmetric", "port-restricted", config=config)
            cell.expected = "direct"
            cells.append(cell)
    return cells


def summary(cells: list[Cell]) -> dict:
    """The figures the issue asks for: connected cells, paths, p50 time to connect."""
    direct = [c.time_to_connect for c in cells if c.path == "direct" and c.time_to_connect]
    relay = [c.time_to_connect for c in cells if c.path == "relay" and c.time_to_connect]
    return {
        "cells": len(cells),
        "connected": sum(c.connected for c in cells),
        "as_expected": sum(c.as_expected for c in cells),
        "direct": sum(c.path == "direct" for c in cells),
        "relay": sum(c.path == "relay" for c in cells),
        "p50_direct_seconds": statistics.median(direct) if direct else None,
        "max_direct_seconds": max(direct) if direct else None,
        "p50_relay_seconds": statistics.median(relay) if relay else None,
    }
