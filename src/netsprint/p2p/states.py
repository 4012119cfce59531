"""The states of one peer-to-peer session and the one table of legal transitions.

    INIT --gathered--> SIGNALING --signaled--> PROBING --probe_acked--> CONNECTED
                          |                       |                       |
                  signaling_failed          punch_timeout             path_dead
                          v                       v                       v
                       FAILED <--relay_failed-- FALLBACK <-punch_timeout- (PROBING again)
                                                  |   ^
                                        relay_bound   path_dead
                                                  v   |
                                                 RELAYED

A late PROBE_ACK still upgrades FALLBACK or RELAYED to CONNECTED (probe_acked), and BYE,
PeerLeft or a local close end every live state in CLOSED. FAILED and CLOSED are final.

Everything else is a bug in the caller: `StateMachine.fire` raises `TransitionError`, so a
session never drifts into a state the design did not draw.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from netsprint.errors import NetsprintError


class State(enum.Enum):
    INIT = "init"
    SIGNALING = "signaling"
    PROBING = "probing"
    CONNECTED = "connected"  # direct path up
    FALLBACK = "fallback"    # asking for / binding a relay
    RELAYED = "relayed"      # relay path up
    FAILED = "failed"
    CLOSED = "closed"


class Event(enum.Enum):
    GATHERED = "gathered"                  # own candidates known (and Offer sent by the initiator)
    SIGNALED = "signaled"                  # remote candidates known: Offer or Answer in hand
    SIGNALING_FAILED = "signaling_failed"  # no Answer in time, or the server refused the Offer
    PROBE_ACKED = "probe_acked"            # a PROBE_ACK for an outstanding txid: direct path
    PUNCH_TIMEOUT = "punch_timeout"        # no ack within punch_timeout
    RELAY_BOUND = "relay_bound"            # the relay answered our RELAY_BIND
    RELAY_FAILED = "relay_failed"          # relay refused, or no RELAY_BOUND in time
    PATH_DEAD = "path_dead"                # nothing received for dead_after
    BYE = "bye"                            # the peer said BYE
    PEER_LEFT = "peer_left"                # the signaling server says the peer is gone
    CLOSE = "close"                        # our own side closed


LIVE_STATES = (State.INIT, State.SIGNALING, State.PROBING, State.CONNECTED, State.FALLBACK,
               State.RELAYED)
FINAL_STATES = (State.FAILED, State.CLOSED)

TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.INIT, Event.GATHERED): State.SIGNALING,
    (State.SIGNALING, Event.SIGNALED): State.PROBING,
    (State.SIGNALING, Event.SIGNALING_FAILED): State.FAILED,
    (State.PROBING, Event.PROBE_ACKED): State.CONNECTED,
    (State.PROBING, Event.PUNCH_TIMEOUT): State.FALLBACK,
    (State.CONNECTED, Event.PATH_DEAD): State.PROBING,     # re-punch first
    (State.FALLBACK, Event.RELAY_BOUND): State.RELAYED,
    (State.FALLBACK, Event.RELAY_FAILED): State.FAILED,
    (State.FALLBACK, Event.PROBE_ACKED): State.CONNECTED,  # a late direct answer
    (State.RELAYED, Event.PROBE_ACKED): State.CONNECTED,   # upgrade from relay to direct
    (State.RELAYED, Event.PATH_DEAD): State.FALLBACK,      # re-bind the relay
    **{(state, event): State.CLOSED
       for state in LIVE_STATES for event in (Event.BYE, Event.PEER_LEFT, Event.CLOSE)},
}


class TransitionError(NetsprintError):
    """An event that the transition table does not allow in the current state."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"event {event.name} is not allowed in state {state.name}")
        self.state = state
        self.event = event


@dataclass(frozen=True)
class StateChanged:
    """A transition happened: from `old` to `new` because of `reason`; `path` is the
    session's path after it (None while there is none)."""

    old: State
    new: State
    reason: str
    path: tuple[str, int] | None


class StateMachine:
    """Owns the current state, when it was entered and the history of transitions; knows
    nothing of packets or timers."""

    def __init__(self, now: float, log: logging.LoggerAdapter | logging.Logger | None = None,
                 state: State = State.INIT) -> None:
        self.state = state
        self.entered_at = now
        self.history: list[StateChanged] = []
        self._log = log or logging.getLogger("netsprint.p2p")

    def can_fire(self, event: Event) -> bool:
        return (self.state, event) in TRANSITIONS

    def fire(self, event: Event, now: float, reason: str,
             path: tuple[str, int] | None = None) -> StateChanged:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise TransitionError(self.state, event)
        change = StateChanged(self.state, new, reason, path)
        self._log.info("%s -> %s (%s): %s", self.state.name, new.name, event.value, reason)
        self.state = new
        self.entered_at = now
        self.history.append(change)
        return change

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES
