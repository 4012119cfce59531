"""The signaling server's logic, sans-I/O: frames and times in, actions out.

`SignalingCore` never touches a socket or a clock. The shell (server.py) tells it what
happened — a connection came, a frame arrived, the framing broke, output piled up, a
connection went — with the current time `now`, and carries out the `Send` and `Close`
actions it returns. Tests drive it with plain numbers for `now`, so the heartbeat
deadline is checked to the exact instant.

Liveness: every frame holding a valid message renews its connection's deadline;
garbage does not, so a client that only sends garbage is closed like a silent one.

Relay (week 5): given a `RelayCore`, the core answers `relay_request` with a token
(`relay_granted`) and frees a peer's allocations when its connection goes; `tick` and
`next_deadline` cover the relay's expiry too. The relay's datagrams do not pass through
here: the shell hands them to the RelayCore directly.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any, Hashable, Union

from netsprint.p2p.relay import RelayCore, RelayRefused
from netsprint.reactor.addresses import short_addr
from netsprint.signaling import protocol as p
from netsprint.signaling.framing import FrameError

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = 30.0  # seconds of silence before a connection is closed


@dataclass(frozen=True)
class Send:
    """Write one message payload (the shell frames it) to a connection."""

    conn_id: Hashable
    payload: bytes


@dataclass(frozen=True)
class Close:
    """Close a connection after what was sent to it; `reason` is for logs."""

    conn_id: Hashable
    reason: str


Action = Union[Send, Close]


class _Connection:
    """What the core knows of one connection."""

    __slots__ = ("conn_id", "peer_addr", "local_addr", "peer_id", "last_seen", "contacts",
                 "logged_codes")

    def __init__(self, conn_id: Hashable, peer_addr: Any, now: float,
                 local_addr: Any = None) -> None:
        self.conn_id = conn_id
        self.peer_addr = peer_addr
        self.local_addr = local_addr  # the server's end: the address the client reached
        self.peer_id: str | None = None
        self.last_seen = now
        self.contacts: set[Hashable] = set()  # conn ids it exchanged signaling with
        self.logged_codes: set[str] = set()


class SignalingCore:
    """Owns the peer registry (peer id -> connection), each connection's liveness deadline
    and contacts, and the counters in `stats`. Owns no sockets and reads no clock. Uses,
    but does not own, the optional RelayCore (its UDP socket is the shell's)."""

    def __init__(self, heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
                 relay: RelayCore | None = None, *, relay_port: int | None = None) -> None:
        if heartbeat_timeout <= 0:
            raise ValueError("heartbeat_timeout must be > 0")
        if relay is not None and not (relay_port and 0 < relay_port <= 65535):
            raise ValueError("a relay needs relay_port, the UDP port it listens on")
        self.heartbeat_timeout = heartbeat_timeout
        self.relay = relay
        self.relay_port = relay_port
        # Ordered by last_seen: every connection has the same timeout, so the oldest
        # activity is the next deadline (O(1)), and a touch moves a connection to the end.
        self._conns: collections.OrderedDict[Hashable, _Connection] = collections.OrderedDict()
        self._peers: dict[str, _Connection] = {}
        self.stats: dict[str, int] = collections.defaultdict(int)

    # -- events from the shell ------------------------------------------------------------

    def connection_made(self, conn_id: Hashable, peer_addr: Any, now: float,
                        local_addr: Any = None) -> list[Action]:
        """A client connected from `peer_addr` ((host, port), reported as `observed`) to
        the server's `local_addr` (whose IP a relay grant names; None: no relay for it)."""
        self._conns[conn_id] = _Connection(conn_id, peer_addr, now, local_addr)
        self.stats["connections_opened"] += 1
        return []

    def frame_received(self, conn_id: Hashable, payload: bytes, now: float) -> list[Action]:
        conn = self._conns.get(conn_id)
        if conn is None:
            return []  # closed by an earlier action; bytes already read are dropped
        self.stats["frames_in"] += 1
        try:
            msg = p.decode_message(payload)
        except p.MessageError as exc:
            return self._error(conn, exc.code, exc.reason, exc.ref)
        self._touch(conn, now)
        return self._dispatch(conn, msg, now)

    def frame_error(self, conn_id: Hashable, error: FrameError, now: float) -> list[Action]:
        """The framing broke (length over the limit): the stream cannot be resynchronised."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return []
        self.stats["closed_frame_too_large"] += 1
        actions = self._error(conn, p.FRAME_TOO_LARGE, error.reason)
        return actions + self._drop(conn, f"framing error: {error.reason}")

    def output_overflow(self, conn_id: Hashable, buffered_bytes: int,
                        now: float) -> list[Action]:
        """The connection's unsent output passed its limit: it does not read."""
        conn = self._conns.get(conn_id)
        if conn is None:
            return []
        self.stats["closed_slow"] += 1
        reason = f"{buffered_bytes} bytes of output are waiting: the client does not read"
        actions = self._error(conn, p.SLOW_CONSUMER, reason)
        return actions + self._drop(conn, "slow consumer")

    def connection_lost(self, conn_id: Hashable, now: float) -> list[Action]:
        conn = self._conns.get(conn_id)
        if conn is None:
            return []  # the core closed it itself, and already let go
        return self._forget(conn)

    def tick(self, now: float) -> list[Action]:
        """Close every connection silent for heartbeat_timeout (at the deadline, not before);
        free the relay's expired allocations."""
        if self.relay is not None:
            self.relay.tick(now)
        actions: list[Action] = []
        while self._conns:
            conn = next(iter(self._conns.values()))
            if conn.last_seen + self.heartbeat_timeout > now:
                break
            self.stats["expired"] += 1
            log.info("%s: silent for %.1f s, closing", self._name(conn), now - conn.last_seen)
            actions += self._drop(conn, "heartbeat timeout")
        return actions

    def next_deadline(self) -> float | None:
        """When `tick` next has work (None: no connections and no relay allocations)."""
        deadlines = [] if self.relay is None else [self.relay.next_deadline()]
        if self._conns:
            deadlines.append(next(iter(self._conns.values())).last_seen
                             + self.heartbeat_timeout)
        due = [d for d in deadlines if d is not None]
        return min(due) if due else None

    # -- introspection --------------------------------------------------------------------

    def peer_ids(self) -> list[str]:
        return sorted(self._peers)

    # -- messages -------------------------------------------------------------------------

    def _dispatch(self, conn: _Connection, msg: p.Message, now: float) -> list[Action]:
        if isinstance(msg, p.Heartbeat):
            self.stats["heartbeats"] += 1
            return [self._send(conn, p.HeartbeatAck(seq=msg.seq))]
        if isinstance(msg, p.Register):
            return self._register(conn, msg)
        if isinstance(msg, p.FORWARDED_TYPES):
            return self._forward(conn, msg)
        if isinstance(msg, p.RelayRequest):
            return self._relay_request(conn, msg, now)
        # registered, heartbeat_ack, error, peer_left: server-to-client types.
        return self._error(conn, p.UNKNOWN_TYPE,
                           f"{msg.TYPE!r} is sent by the server, not to it", msg.TYPE)

    def _register(self, conn: _Connection, msg: p.Register) -> list[Action]:
        if conn.peer_id is not None:
            return self._error(conn, p.ALREADY_REGISTERED,
                               f"this connection is already registered as {conn.peer_id!r}",
                               msg.TYPE)
        if msg.peer_id in self._peers:
            return self._error(conn, p.PEER_ID_TAKEN,
                               f"peer id {msg.peer_id!r} is registered by another connection",
                               msg.TYPE)
        conn.peer_id = msg.peer_id
        self._peers[msg.peer_id] = conn
        self.stats["registered"] += 1
        ip, port = conn.peer_addr[0], conn.peer_addr[1]
        return [self._send(conn, p.Registered(peer_id=msg.peer_id,
                                              observed=p.Endpoint(ip=ip, port=port)))]

    def _forward(self, conn: _Connection, msg: p.Forwarded) -> list[Action]:
        if conn.peer_id is None:
            return self._error(conn, p.NOT_REGISTERED,
                               f"register before sending {msg.TYPE!r}", msg.TYPE)
        if msg.from_ is not None and msg.from_ != conn.peer_id:
            return self._error(conn, p.SPOOFED_FROM,
                               f"'from' is {msg.from_!r} but this connection is "
                               f"{conn.peer_id!r}", msg.TYPE)
        target = self._peers.get(msg.to)
        if target is None:
            return self._error(conn, p.UNKNOWN_PEER, f"no peer {msg.to!r} is registered",
                               msg.TYPE)
        conn.contacts.add(target.conn_id)
        target.contacts.add(conn.conn_id)
        self.stats["forwarded"] += 1
        # Re-encoded, not copied: `from` is stamped and unknown fields stay behind.
        return [self._send(target, dataclasses.replace(msg, from_=conn.peer_id))]

    def _relay_request(self, conn: _Connection, msg: p.RelayRequest,
                       now: float) -> list[Action]:
        if conn.peer_id is None:
            return self._error(conn, p.NOT_REGISTERED, "register before asking for a relay",
                               msg.TYPE)
        if msg.to not in self._peers:
            # Both ends must be on this server: the allocation lives as long as they do.
            return self._error(conn, p.UNKNOWN_PEER, f"no peer {msg.to!r} is registered",
                               msg.TYPE)
        if self.relay is None or conn.local_addr is None:
            return self._error(conn, p.RELAY_REFUSED, "this server does not relay", msg.TYPE)
        try:
            grant = self.relay.grant(msg.session, conn.peer_id, msg.to, now)
        except RelayRefused as exc:
            return self._error(conn, p.RELAY_REFUSED, exc.reason, msg.TYPE)
        self.stats["relay_granted"] += 1
        # The UDP relay listens on the TCP port number, on the IP this client reached.
        relay = p.Endpoint(ip=_client_facing_ip(conn.local_addr[0]), port=self.relay_port)
        return [self._send(conn, p.RelayGranted(session=msg.session, token=grant.token.hex(),
                                                relay=relay, lifetime=grant.lifetime))]

    def _send(self, conn: _Connection, msg: p.Message) -> Send:
        return self._send_payload(conn, p.encode_message(msg))

    def _send_payload(self, conn: _Connection, payload: bytes) -> Send:
        self.stats["frames_out"] += 1
        return Send(conn.conn_id, payload)

    def _error(self, conn: _Connection, code: str, reason: str,
               ref: str | None = None) -> list[Action]:
        self.stats["errors"] += 1
        self.stats[f"errors.{code}"] += 1
        if code not in conn.logged_codes:  # once per connection and code, not per frame
            conn.logged_codes.add(code)
            log.warning("%s: %s: %s", self._name(conn), code, reason)
        return [self._send(conn, p.Error(code=code, reason=reason, ref=ref))]

    # -- leaving --------------------------------------------------------------------------

    def _drop(self, conn: _Connection, reason: str) -> list[Action]:
        """The core closes the connection: forget it now (its peer id is free at once)."""
        return [Close(conn.conn_id, reason)] + self._forget(conn)

    def _forget(self, conn: _Connection) -> list[Action]:
        del self._conns[conn.conn_id]
        self.stats["connections_closed"] += 1
        if conn.peer_id is None:
            return []
        del self._peers[conn.peer_id]
        if self.relay is not None:
            self.relay.release_peer(conn.peer_id)
        left = p.encode_message(p.PeerLeft(peer_id=conn.peer_id))  # once, for every contact
        actions: list[Action] = []
        for contact_id in conn.contacts:
            contact = self._conns.get(contact_id)
            if contact is None:
                continue
            contact.contacts.discard(conn.conn_id)
            if contact.peer_id is not None:
                self.stats["peer_left_sent"] += 1
                actions.append(self._send_payload(contact, left))
        return actions

    def _touch(self, conn: _Connection, now: float) -> None:
        conn.last_seen = now
        self._conns.move_to_end(conn.conn_id)

    @staticmethod
    def _name(conn: _Connection) -> str:
        peer = f" ({conn.peer_id})" if conn.peer_id else ""
        return f"connection {conn.conn_id} from {short_addr(conn.peer_addr)}{peer}"


def _client_facing_ip(local_ip: str) -> str:
    """The server's IP as the client addresses it. A dual-stack listener on "::" sees an
    IPv4 client's connection arrive on "::ffff:a.b.c.d" (RFC 4291 section 2.5.5.2), which
    the client's IPv4 UDP socket cannot send to; it sent to a.b.c.d."""
    mapped = ipaddress.ip_address(local_ip.split("%", 1)[0])
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
        return str(mapped.ipv4_mapped)
    return local_ip
