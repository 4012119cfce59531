"""UDP hole punching, sans-I/O: which PROBE goes where, when, and which answers count.

Both peers send PROBEs to every remote candidate from the socket they used for STUN, so
each NAT sees an outgoing packet to the other's address and opens its filter for the reply
(RFC 5128 section 3.3). Rounds go out at 0, 50, 150, 350, 750, 1150 ... ms: the wait starts
at `probe_interval` and doubles up to `probe_interval_max`; after `punch_timeout` without
an ack the session falls back to the relay. Every probe carries a fresh 8-byte txid, and a
PROBE_ACK counts only if its txid is one we sent (RFC 8445 section 7.2.5.2.1 matches
responses to checks the same way).

Birthday mode (RFC 5128 section 3.5 names the symmetric-NAT problem; the trick is the
birthday paradox): a symmetric NAT gives each destination a new, unpredictable port. The
symmetric side opens N extra sockets and probes the other's srflx address from each, which
opens N mappings that accept that address; the other side sprays PROBEs at M random ports
of the symmetric side's public IP. One spray probe lands on an open mapping with
probability 1 - (1 - N/P)^M for P ports: about 1 - e^-8 with N=256, M=2048, P=64512.

The `Puncher` never reads a clock or touches a socket: the session passes `now`, sends the
`SendDatagram`s it returns and calls `poll` at `next_deadline()`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Iterable

from netsprint.p2p import packet

Addr = tuple[str, int]
Target = tuple[Addr, int]  # (remote address, local socket number)


@dataclass(frozen=True)
class PunchConfig:
    probe_interval: float = 0.05      # first retry after 50 ms ...
    probe_backoff: float = 2.0        # ... doubling ...
    probe_interval_max: float = 0.4   # ... capped
    punch_timeout: float = 3.0        # Probing -> Fallback after this long without an ack
    birthday: bool = False            # birthday-paradox mode
    birthday_sockets: int = 256       # probe sockets opened by the symmetric side
    birthday_probes: int = 2048       # random-port probes sent by the other side (bound)
    birthday_rate: float = 2000.0     # probes per second, the other side
    # The ports the spray picks from (inclusive): ports below 1024 are not handed out by
    # NATs in practice (Linux masquerade keeps source ports < 1024 in that range).
    birthday_ports: tuple[int, int] = field(default=(1024, 65535))

    def __post_init__(self) -> None:
        if self.probe_interval <= 0 or self.probe_backoff < 1 or self.punch_timeout <= 0:
            raise ValueError("need probe_interval > 0, probe_backoff >= 1, punch_timeout > 0")
        if self.probe_interval_max < self.probe_interval:
            raise ValueError("probe_interval_max must be >= probe_interval")
        if self.birthday_sockets < 1 or self.birthday_probes < 0 or self.birthday_rate <= 0:
            raise ValueError("need birthday_sockets >= 1, birthday_probes >= 0, "
                             "birthday_rate > 0")
        low, high = self.birthday_ports
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"birthday_ports {self.birthday_ports} is not a port range")


@dataclass(frozen=True)
class SendDatagram:
    """Send `data` to `addr` from local socket `sock` (0: the socket used for STUN)."""

    data: bytes
    addr: Addr
    sock: int = 0


class Puncher:
    """Owns one punching attempt: the probe targets, the txids in flight, the round
    schedule and the birthday spray. Not the sockets, not the clock, not the session state.
    """

    def __init__(self, config: PunchConfig, session_id: bytes, rng: random.Random) -> None:
        self.config = config
        self.session_id = session_id
        self.rng = rng
        self.targets: list[Target] = []
        self.outstanding: dict[bytes, Target] = {}
        self.started_at: float | None = None
        self.probes_sent = 0  # in this attempt (the session counts across attempts)
        self._running = False
        self._next_round_at = math.inf
        self._interval = config.probe_interval
        self._spray_ip: str | None = None
        self._spray_ports: list[int] = []
        self._sprayed = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, now: float, targets: Iterable[Target],
              spray_ip: str | None = None) -> list[SendDatagram]:
        """Begin a fresh attempt: forget old txids, probe every target now. With `spray_ip`
        also spray birthday probes at random ports of that IP from socket 0."""
        self.stop()
        self.targets = []
        for target in targets:
            self._add(target)
        self.started_at = now
        self.probes_sent = 0
        self._running = True
        self._interval = self.config.probe_interval
        self._next_round_at = now
        if spray_ip is not None:
            self._start_spray(spray_ip)
        return self.poll(now)

    def stop(self) -> None:
        """Connected (or closed): no more probes and no more answers to wait for."""
        self.halt()
        self.outstanding.clear()

    def halt(self) -> None:
        """Stop the schedule but keep the txids, so a late PROBE_ACK still counts."""
        self._running = False
        self._next_round_at = math.inf
        self._spray_ip = None
        self._spray_ports = []

    # -- inputs ---------------------------------------------------------------------------

    def add_target(self, addr: Addr, sock: int, now: float) -> list[SendDatagram]:
        """A new remote address (trickled, or a PROBE came from it): probe it at once (a
        triggered check, RFC 8445 section 7.3.1.4) and, while running, on every round."""
        if self._running:
            self._add((addr, sock))
        return [self._probe((addr, sock))]

    def acked(self, txid: bytes) -> Target | None:
        """The target a PROBE_ACK's txid answers, or None if we never sent it."""
        return self.outstanding.get(txid)

    def poll(self, now: float) -> list[SendDatagram]:
        """The probes due at `now`: a round of all targets, and spray probes; none once
        `punch_timeout` has passed."""
        if not self._running or self.timed_out(now):
            return []
        out: list[SendDatagram] = []
        if now >= self._next_round_at:
            out.extend(self._round(now))
        out.extend(self._spray(now))
        return out

    def timed_out(self, now: float) -> bool:
        return self.started_at is not None and now >= self.started_at + self.config.punch_timeout

    def next_deadline(self) -> float | None:
        if not self._running:
            return None
        deadlines = [self._next_round_at, self.started_at + self.config.punch_timeout]
        if self._sprayed < len(self._spray_ports):
            deadlines.append(self.started_at + self._sprayed / self.config.birthday_rate)
        return min(deadlines)

    # -- internals ------------------------------------------------------------------------

    def _add(self, target: Target) -> None:
        if target not in self.targets:
            self.targets.append(target)

    def _probe(self, target: Target) -> SendDatagram:
        txid = self.rng.randbytes(packet.TXID_BYTES)
        self.outstanding[txid] = target
        self.probes_sent += 1
        addr, sock = target
        return SendDatagram(packet.probe(self.session_id, txid), addr, sock)

    def _round(self, now: float) -> list[SendDatagram]:
        self._next_round_at = now + self._interval
        self._interval = min(self._interval * self.config.probe_backoff,
                             self.config.probe_interval_max)
        return [self._probe(target) for target in self.targets]

    def _start_spray(self, ip: str) -> None:
        low, high = self.config.birthday_ports
        count = min(self.config.birthday_probes, high - low + 1)
        self._spray_ip = ip
        # Distinct ports: probing one port twice cannot find a second open mapping.
        self._spray_ports = self.rng.sample(range(low, high + 1), count)
        self._sprayed = 0

    def _spray(self, now: float) -> list[SendDatagram]:
        """Spray probes are paced at birthday_rate: probe k is due at start + k / rate."""
        if self._spray_ip is None:
            return []
        # + 1e-9: k / rate computed back from a float deadline may land a hair below k.
        due_by_time = math.floor((now - self.started_at) * self.config.birthday_rate + 1e-9) + 1
        due = min(len(self._spray_ports), due_by_time)
        out = []
        while self._sprayed < due:
            port = self._spray_ports[self._sprayed]
            self._sprayed += 1
            out.append(self._probe(((self._spray_ip, port), 0)))
        return out
