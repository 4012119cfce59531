"""Keepalives and dead-path detection, sans-I/O.

A NAT forgets an idle UDP mapping: Linux conntrack after 30 s (nf_conntrack_udp_timeout),
and RFC 4787 REQ-5 allows as little as 2 minutes but notes many NATs use less. A KEEPALIVE
after `keepalive_interval` (1 s) of send-silence keeps the mapping well inside that, and
proves the path to the peer. Any traffic counts: a sender of data needs no keepalives.
Nothing received for `dead_after` (3 s, three missed keepalives) means the path is dead;
the session then re-punches or re-binds the relay.
"""

from __future__ import annotations

from dataclasses import dataclass

KEEPALIVE = "keepalive"
DEAD = "dead"


@dataclass(frozen=True)
class HeartbeatConfig:
    keepalive_interval: float = 1.0   # send a KEEPALIVE after this long without sending anything
    dead_after: float = 3.0           # path dead after this long without receiving anything

    def __post_init__(self) -> None:
        if self.keepalive_interval <= 0 or self.dead_after <= 0:
            raise ValueError("keepalive_interval and dead_after must be > 0")


class Heartbeat:
    """Owns the times of the last packet sent and received on one path; decides when a
    keepalive is due and when the path is dead. Sends nothing itself."""

    def __init__(self, config: HeartbeatConfig, now: float) -> None:
        self.config = config
        self.last_sent = now
        self.last_received = now

    def on_sent(self, now: float) -> None:
        self.last_sent = max(self.last_sent, now)

    def on_received(self, now: float) -> None:
        self.last_received = max(self.last_received, now)

    def poll(self, now: float) -> str | None:
        """DEAD if nothing was received for dead_after, else KEEPALIVE if nothing was sent
        for keepalive_interval (the caller sends one and calls on_sent), else None."""
        if now >= self.last_received + self.config.dead_after:
            return DEAD
        if now >= self.last_sent + self.config.keepalive_interval:
            return KEEPALIVE
        return None

    def next_deadline(self) -> float:
        return min(self.last_sent + self.config.keepalive_interval,
                   self.last_received + self.config.dead_after)
