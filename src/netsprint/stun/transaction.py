"""A STUN client transaction over UDP, sans-I/O (RFC 8489 §6.2.1, RFC 5389 §7.2.1).

Retransmission: send at 0, then after RTO, 2*RTO, 4*RTO ... (each wait doubles) for Rc
transmissions in all; after the last one wait Rm*RTO more, then give up. With the RFC's
defaults (RTO 0.5 s, Rc 7, Rm 16) the sends are at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s and
the transaction fails at 39.5 s. `max_duration` cuts that short (a NAT filtering test
treats "no reply in 3 s" as an answer, not a failure to wait 39.5 s for).

The transaction never reads a clock or touches a socket: the driver passes `now`, sends
what `Transmit` says and calls `handle_timeout` at `next_deadline()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsprint.stun.message import ERROR_RESPONSE, SUCCESS_RESPONSE, Message

DEFAULT_RTO = 0.5
DEFAULT_RC = 7
DEFAULT_RM = 16


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send these bytes to the server now."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TransactionFailed:
    """No matching response: stop waiting."""

    reason: str


Action = Transmit | TransactionFailed


class ClientTransaction:
    """Owns one request's retransmission schedule and its outcome; not the socket, not the
    clock.

    States: "new" -> "waiting" -> "succeeded" (a response with our transaction id came)
    or "failed" (the schedule ran out).
    """

    def __init__(self, request: bytes, transaction_id: bytes, *, rto: float = DEFAULT_RTO,
                 rc: int = DEFAULT_RC, rm: int = DEFAULT_RM,
                 max_duration: float | None = None) -> None:
        if rto <= 0 or rc < 1 or rm < 1:
            raise ValueError(f"need rto > 0, rc >= 1, rm >= 1 (got {rto}, {rc}, {rm})")
        self.request = request
        self.transaction_id = transaction_id
        self.rto = rto
        self.rc = rc
        self.rm = rm
        self.max_duration = max_duration
        self.state = "new"
        self.transmissions = 0
        self.started_at: float | None = None
        self.response: Message | None = None
        self._interval = rto
        self._next_deadline: float | None = None
        self._give_up_at: float | None = None

    def start(self, now: float) -> list[Action]:
        """The first transmission."""
        if self.state != "new":
            raise ValueError(f"start() on a transaction that is {self.state}")
        self.state = "waiting"
        self.started_at = now
        if self.max_duration is not None:
            self._give_up_at = now + self.max_duration
        return self._transmit(now)

    def next_deadline(self) -> float | None:
        """When `handle_timeout` must run next (None once finished)."""
        if self.state != "waiting":
            return None
        if self._give_up_at is not None and self._give_up_at < self._next_deadline:
            return self._give_up_at
        return self._next_deadline

    def handle_timeout(self, now: float) -> list[Action]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        if self._give_up_at is not None and now >= self._give_up_at:
            return self._fail(f"no response within {self.max_duration:g} s "
                              f"({self.transmissions} transmissions)")
        if self.transmissions >= self.rc:
            waited = self.rm * self.rto
            return self._fail(f"no response after {self.transmissions} transmissions "
                              f"and a final {waited:g} s wait")
        return self._transmit(now)

    def response_received(self, message: Message) -> bool:
        """True if `message` answers this transaction (a success or error response with our
        transaction id); it then completes. Retransmitted duplicates return False."""
        if self.state != "waiting" or message.transaction_id != self.transaction_id:
            return False
        if message.msg_class not in (SUCCESS_RESPONSE, ERROR_RESPONSE):  # not a request
            return False
        self.state = "succeeded"
        self.response = message
        return True

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")

    def _transmit(self, now: float) -> list[Action]:
        self.transmissions += 1
        if self.transmissions < self.rc:
            self._next_deadline = now + self._interval
            self._interval *= 2  # RFC 8489 §6.2.1: RTO doubles after each retransmission
        else:
            # After the last transmission: Rm times the *initial* RTO (39.5 s in the RFC).
            self._next_deadline = now + self.rm * self.rto
        return [Transmit(self.request)]

    def _fail(self, reason: str) -> list[Action]:
        self.state = "failed"
        return [TransactionFailed(reason)]
