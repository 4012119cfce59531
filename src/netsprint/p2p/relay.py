"""The UDP relay's logic, sans-I/O: grants in, datagrams in, datagrams out.

When hole punching fails (symmetric NAT on both sides, RFC 4787 section 4.1), two peers
talk through the signaling server, which doubles as a relay. A relay that forwards for
anyone is an open relay: a free traffic reflector for attackers. So this one forwards only
between two addresses that each proved, with a token handed out over the authenticated
signaling connection, that they belong to the same session:

1. `grant(session, peer, other, now)`: the signaling core asks for a token for `peer`
   (its `relay_request` named `other`). Both peers of a session ask separately; the two
   grants whose (peer, other) are mirror images form one *allocation*.
2. A peer sends RELAY_BIND(session, token) from the UDP socket it wants to use; the relay
   binds that source address to the grant and answers RELAY_BOUND(lifetime left). A bind
   from a new address (NAT rebinding) moves the binding.
3. Once both grants are bound, a p2p packet from one bound address with the allocation's
   session id is forwarded *unchanged* to the other bound address.

Everything else is dropped without an answer (an answer would make the relay an oracle
for guessed tokens) and counted in `stats` under `dropped_<why>`. Limits (`RelayLimits`):
a server-wide and a per-peer allocation count, a hard lifetime, an idle timeout, and a
token bucket per allocation and direction. Expiry is exact: an allocation whose deadline
is `now` is gone, whether `tick` has run yet or not.
"""

from __future__ import annotations

import collections
import hmac
import secrets
from dataclasses import dataclass
from typing import Callable, Union

from netsprint.errors import NetsprintError
from netsprint.p2p import packet
from netsprint.p2p.packet import PacketError, PacketType

Address = tuple  # a socket address as recvfrom gives it: (ip, port) or IPv6's 4-tuple


@dataclass(frozen=True)
class RelayLimits:
    """What one relay will do at most; every figure bounds memory or bandwidth."""

    max_allocations: int = 64         # sessions relayed at once, server-wide
    max_allocations_per_peer: int = 4
    lifetime: float = 600.0           # hard cap on one allocation
    idle_timeout: float = 30.0        # freed after this long without a relayed packet
    rate_bytes_per_second: float = 2_000_000.0  # token bucket per allocation (each direction)
    burst_bytes: int = 262_144

    def __post_init__(self) -> None:
        for name in ("max_allocations", "max_allocations_per_peer", "lifetime",
                     "idle_timeout", "rate_bytes_per_second", "burst_bytes"):
            if not getattr(self, name) > 0:  # `not ... > 0` also catches NaN
                raise ValueError(f"RelayLimits.{name} must be > 0")
        if self.burst_bytes < packet.MAX_PACKET_BYTES:
            # A bucket smaller than one packet would drop every full-size packet forever.
            raise ValueError(f"RelayLimits.burst_bytes must be >= {packet.MAX_PACKET_BYTES}")


class RelayRefused(NetsprintError):
    """The relay will not grant. `cause` is a short key (`full`, `peer_cap`,
    `session_taken`, `self`), counted as `refused_<cause>`; `reason` is a sentence."""

    def __init__(self, cause: str, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    """A token for RELAY_BIND (16 bytes) and the seconds the allocation has left."""

    token: bytes
    lifetime: float


@dataclass(frozen=True)
class Forward:
    """Send `data` (a peer's packet, unchanged) to `addr`, the other bound peer."""

    data: bytes
    addr: Address


@dataclass(frozen=True)
class Reply:
    """Send `data` (the relay's own RELAY_BOUND) to `addr`, the address that bound."""

    data: bytes
    addr: Address


RelayAction = Union[Forward, Reply]


class _TokenBucket:
    """Bytes one direction may still send: refills at `rate` per second up to `capacity`."""

    __slots__ = ("rate", "capacity", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity  # a fresh allocation may burst at once
        self.updated = now

    def take(self, size_bytes: int, now: float) -> bool:
        """Spend `size_bytes` if the bucket holds them; False (nothing spent) if not."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        if size_bytes > self.tokens:
            return False
        self.tokens -= size_bytes
        return True


class _Half:
    """One grant of an allocation (keyed by the peer that asked): its token, where it is
    bound (None until its first valid RELAY_BIND) and the bucket for what it sends."""

    __slots__ = ("token", "addr", "bucket")

    def __init__(self, token: bytes, bucket: _TokenBucket) -> None:
        self.token = token
        self.addr: Address | None = None
        self.bucket = bucket


class _Allocation:
    """One relayed session: its two parties, at most two halves, and its clocks."""

    __slots__ = ("session", "parties", "halves", "created", "last_active")

    def __init__(self, session: bytes, parties: frozenset[str], now: float) -> None:
        self.session = session
        self.parties = parties
        self.halves: dict[str, _Half] = {}
        self.created = now
        self.last_active = now

    def half_with_token(self, token: bytes) -> _Half | None:
        # hmac.compare_digest takes the same time wherever the tokens differ, and every
        # half is compared: the timing says nothing about how close a guess was.
        found = None
        for half in self.halves.values():
            if hmac.compare_digest(half.token, token):
                found = half
        return found

    def half_at(self, addr: Address) -> _Half | None:
        for half in self.halves.values():
            if half.addr == addr:
                return half
        return None

    def other(self, half: _Half) -> _Half | None:
        for candidate in self.halves.values():
            if candidate is not half:
                return candidate
        return None


class RelayCore:
    """Owns the allocations (session id -> two grants, their bound addresses, buckets and
    deadlines) and the counters in `stats`. Owns no socket and reads no clock."""

    def __init__(self, limits: RelayLimits = RelayLimits(), *,
                 rng_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.limits = limits
        self._rng_bytes = rng_bytes
        self._allocations: dict[bytes, _Allocation] = {}
        self.stats: dict[str, int] = collections.defaultdict(int)

    # -- grants (from the signaling core) -------------------------------------------------

    def grant(self, session_hex: str, peer_id: str, other_id: str, now: float) -> Grant:
        """A token for `peer_id` to relay `session_hex` with `other_id`; RelayRefused when
        a limit says no. Asking again for the same grant returns the same token."""
        session = packet.session_id_from_hex(session_hex)
        if peer_id == other_id:
            raise self._refuse("self", "a peer cannot relay to itself")
        self.tick(now)  # expired allocations must not count against the limits
        alloc = self._allocations.get(session)
        if alloc is not None and alloc.parties != {peer_id, other_id}:
            raise self._refuse("session_taken",
                               f"session {session_hex} is relayed for other peers")
        half = alloc.halves.get(peer_id) if alloc is not None else None
        if half is None:
            alloc = self._add_half(alloc, session, peer_id, other_id, now)
        self.stats["grants"] += 1
        return Grant(alloc.halves[peer_id].token, self._lifetime_left(alloc, now))

    def _add_half(self, alloc: _Allocation | None, session: bytes, peer_id: str,
                  other_id: str, now: float) -> _Allocation:
        held = sum(peer_id in a.halves for a in self._allocations.values())
        if held >= self.limits.max_allocations_per_peer:
            raise self._refuse("peer_cap", f"{peer_id!r} already holds {held} relay "
                               "allocations, the most one peer may hold")
        if alloc is None:
            if len(self._allocations) >= self.limits.max_allocations:
                raise self._refuse("full", f"the relay is full "
                                   f"({self.limits.max_allocations} allocations)")
            alloc = _Allocation(session, frozenset((peer_id, other_id)), now)
            self._allocations[session] = alloc
            self.stats["allocations"] += 1
        bucket = _TokenBucket(self.limits.rate_bytes_per_second, self.limits.burst_bytes, now)
        alloc.halves[peer_id] = _Half(self._rng_bytes(packet.TOKEN_BYTES), bucket)
        return alloc

    def _refuse(self, cause: str, reason: str) -> RelayRefused:
        self.stats[f"refused_{cause}"] += 1
        return RelayRefused(cause, reason)

    def release_peer(self, peer_id: str) -> int:
        """Free every allocation `peer_id` is a party to (its signaling connection is
        gone: nobody can renew or use its grants). Returns how many were freed."""
        gone = [s for s, a in self._allocations.items() if peer_id in a.parties]
        for session in gone:
            del self._allocations[session]
        self.stats["released"] += len(gone)
        return len(gone)

    # -- datagrams (from the UDP socket) --------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address, now: float) -> list[RelayAction]:
        """What to send for one datagram that reached the relay's socket from `addr`."""
        if not packet.is_p2p(data):
            return self._drop("non_p2p")  # STUN, noise, scans: never forwarded
        try:
            pkt = packet.decode_packet(data)
        except PacketError:
            return self._drop("malformed")
        alloc = self._live_allocation(pkt.session, now)
        if alloc is None:
            return self._drop("unknown_session")
        if pkt.type is PacketType.RELAY_BIND:
            return self._bind(alloc, pkt.body, addr, now)
        if pkt.type is PacketType.RELAY_BOUND:
            return self._drop("relay_bound")  # only the relay says that; peers must not
        return self._forward(alloc, bytes(data), addr, now)

    def _bind(self, alloc: _Allocation, token: bytes, addr: Address,
              now: float) -> list[RelayAction]:
        half = alloc.half_with_token(token)
        if half is None:
            return self._drop("bad_token")
        other = alloc.other(half)
        if other is not None and other.addr == addr:
            # Both halves on one address would make the relay send a peer's packets back
            # to itself: a loop, and a reflector. Real peers never share a socket address.
            return self._drop("same_address")
        if half.addr is not None and half.addr != addr:
            self.stats["rebound"] += 1  # NAT rebinding: the mapping changed
        half.addr = addr
        alloc.last_active = now  # a bind shows the allocation is wanted
        self.stats["bound"] += 1
        left_s = int(self._lifetime_left(alloc, now))  # floor: never promise too much
        return [Reply(packet.relay_bound(alloc.session, left_s), addr)]

    def _forward(self, alloc: _Allocation, data: bytes, addr: Address,
                 now: float) -> list[RelayAction]:
        source = alloc.half_at(addr)
        if source is None:
            return self._drop("unbound")  # no valid token was ever shown from here
        target = alloc.other(source)
        if target is None or target.addr is None:
            return self._drop("peer_unbound")
        if not source.bucket.take(len(data), now):
            self.stats["dropped_over_rate_bytes"] += len(data)
            return self._drop("over_rate")
        alloc.last_active = now
        self.stats["relayed_packets"] += 1
        self.stats["relayed_bytes"] += len(data)
        return [Forward(data, target.addr)]

    def _drop(self, why: str) -> list[RelayAction]:
        self.stats[f"dropped_{why}"] += 1
        return []

    # -- time -----------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Free every allocation whose lifetime or idle deadline is `now` or earlier."""
        for alloc in list(self._allocations.values()):
            self._expire_if_due(alloc, now)

    def next_deadline(self) -> float | None:
        """When `tick` next has work (None: no allocations)."""
        if not self._allocations:
            return None
        return min(self._deadline(a) for a in self._allocations.values())

    def _live_allocation(self, session: bytes, now: float) -> _Allocation | None:
        alloc = self._allocations.get(session)
        if alloc is None or self._expire_if_due(alloc, now):
            return None  # (due but not yet ticked counts as gone: expiry is exact)
        return alloc

    def _expire_if_due(self, alloc: _Allocation, now: float) -> bool:
        if now >= alloc.created + self.limits.lifetime:
            cause = "lifetime"
        elif now >= alloc.last_active + self.limits.idle_timeout:
            cause = "idle"
        else:
            return False
        del self._allocations[alloc.session]
        self.stats[f"expired_{cause}"] += 1
        return True

    def _deadline(self, alloc: _Allocation) -> float:
        return min(alloc.created + self.limits.lifetime,
                   alloc.last_active + self.limits.idle_timeout)

    def _lifetime_left(self, alloc: _Allocation, now: float) -> float:
        return max(0.0, alloc.created + self.limits.lifetime - now)

    # -- introspection --------------------------------------------------------------------

    @property
    def allocation_count(self) -> int:
        return len(self._allocations)

    def bound_addresses(self, session_hex: str) -> dict[str, Address | None]:
        """peer id -> bound address (None: granted, not bound) of one session's grants."""
        alloc = self._allocations.get(packet.session_id_from_hex(session_hex))
        if alloc is None:
            return {}
        return {peer_id: half.addr for peer_id, half in alloc.halves.items()}
