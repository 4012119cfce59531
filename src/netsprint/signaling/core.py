"""The signaling server's logic, sans-I/O: frames and times in, actions out.

`SignalingCore` never touches a socket or a clock. The shell (server.py) tells it what
happened — a connection came, a frame arrived, the framing broke, output piled up, a
connection went — with the current time `now`, and carries out the `Send` and `Close`
actions it returns. Tests drive it with plain numbers for `now`, so the heartbeat
deadline is checked to the exact instant.

Liveness: every frame holding a valid message renews its connection's deadline;
garbage does not, so a client that only sends garbage is closed like a silent one.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Hashable, Union

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

    __slots__ = ("conn_id", "peer_addr", "peer_id", "last_seen", "contacts", "logged_codes")

    def __init__(self, conn_id: Hashable, peer_addr: Any, now: float) -> None:
        self.conn_id = conn_id
        self.peer_addr = peer_addr
        self.peer_id: str | None = None
        self.last_seen = now
        self.contacts: set[Hashable] = set()  # conn ids it exchanged signaling with
        self.logged_codes: set[str] = set()


class SignalingCore:
    """Owns the peer registry (peer id -> connection), each connection's liveness deadline
    and contacts, and the counters in `stats`. Owns no sockets and reads no clock."""

    def __init__(self, heartbeat_timeout: float = HEARTBEAT_TIMEOUT) -> None:
        if heartbeat_timeout <= 0:
            raise ValueError("heartbeat_timeout must be > 0")
        self.heartbeat_timeout = heartbeat_timeout
        # Ordered by last_seen: every connection has the same timeout, so the oldest
        # activity is the next deadline (O(1)), and a touch moves a connection to the end.
        self._conns: collections.OrderedDict[Hashable, _Connection] = collections.OrderedDict()
        self._peers: dict[str, _Connection] = {}
        self.stats: dict[str, int] = collections.defaultdict(int)

    # -- events from the shell ------------------------------------------------------------

    def connection_made(self, conn_id: Hashable, peer_addr: Any, now: float) -> list[Action]:
        """A client connected from `peer_addr` ((host, port), reported as `observed`)."""
        self._conns[conn_id] = _Connection(conn_id, peer_addr, now)
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
        return self._dispatch(conn, msg)

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
        """Close every connection silent for heartbeat_timeout (at the deadline, not before)."""
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
        """When `tick` next has work (None: no connections)."""
        if not self._conns:
            return None
        return next(iter(self._conns.values())).last_seen + self.heartbeat_timeout

    # -- introspection --------------------------------------------------------------------

    def peer_ids(self) -> list[str]:
        return sorted(self._peers)

    # -- messages -------------------------------------------------------------------------

    def _dispatch(self, conn: _Connection, msg: p.Message) -> list[Action]:
        if isinstance(msg, p.Heartbeat):
            self.stats["heartbeats"] += 1
            return [self._send(conn, p.HeartbeatAck(seq=msg.seq))]
        if isinstance(msg, p.Register):
            return self._register(conn, msg)
        if isinstance(msg, p.FORWARDED_TYPES):
            return self._forward(conn, msg)
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

    def _send(self, conn: _Connection, msg: p.Message) -> Send:
        self.stats["frames_out"] += 1
        return Send(conn.conn_id, p.encode_message(msg))

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
        left = p.PeerLeft(peer_id=conn.peer_id)
        actions: list[Action] = []
        for contact_id in conn.contacts:
            contact = self._conns.get(contact_id)
            if contact is None:
                continue
            contact.contacts.discard(conn.conn_id)
            if contact.peer_id is not None:
                self.stats["peer_left_sent"] += 1
                actions.append(self._send(contact, left))
        return actions

    def _touch(self, conn: _Connection, now: float) -> None:
        conn.last_seen = now
        self._conns.move_to_end(conn.conn_id)

    @staticmethod
    def _name(conn: _Connection) -> str:
        peer = f" ({conn.peer_id})" if conn.peer_id else ""
        return f"connection {conn.conn_id} from {short_addr(conn.peer_addr)}{peer}"
