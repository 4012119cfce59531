"""The client transaction's retransmission schedule, in FakeClock time."""

from __future__ import annotations

import pytest

from netsprint.clock import FakeClock
from netsprint.stun.message import (BINDING, REQUEST, SUCCESS_RESPONSE, Message,
                                    binding_request, encode)
from netsprint.stun.transaction import ClientTransaction, TransactionFailed, Transmit

pytestmark = pytest.mark.unit

TID = bytes(range(12))
REQUEST_BYTES = encode(binding_request(transaction_id=TID))


def run_to_end(txn: ClientTransaction, clock: FakeClock) -> tuple[list[float], float | None]:
    """Drive the transaction by jumping the clock to each deadline: (send times, fail time)."""
    sends: list[float] = []
    actions = txn.start(clock.now())
    for _ in range(100):
        for action in actions:
            if isinstance(action, Transmit):
                assert action.data == REQUEST_BYTES
                sends.append(round(clock.now(), 9))
            elif isinstance(action, TransactionFailed):
                return sends, round(clock.now(), 9)
        deadline = txn.next_deadline()
        if deadline is None:
            return sends, None
        clock.set(deadline)
        actions = txn.handle_timeout(clock.now())
    raise AssertionError("the transaction never ended")


def expected_schedule(rto: float, rc: int, rm: int) -> tuple[list[float], float]:
    """RFC 8489 §6.2.1 in words: waits of rto, 2rto, 4rto ...; Rm*rto after the last."""
    sends, at, wait = [], 0.0, rto
    for _ in range(rc):
        sends.append(at)
        at += wait
        wait *= 2
    return sends, sends[-1] + rm * rto


def test_rfc_default_schedule():
    clock = FakeClock()
    sends, failed_at = run_to_end(ClientTransaction(REQUEST_BYTES, TID), clock)
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert failed_at == 39.5


@pytest.mark.parametrize("rto, rc, rm", [(0.1, 3, 2), (1.0, 1, 4), (0.25, 9, 16), (3.0, 2, 1)])
def test_custom_schedules(rto, rc, rm):
    clock = FakeClock(100.0)
    sends, failed_at = run_to_end(ClientTransaction(REQUEST_BYTES, TID, rto=rto, rc=rc, rm=rm),
                                  clock)
    want_sends, want_fail = expected_schedule(rto, rc, rm)
    assert sends == pytest.approx([100.0 + t for t in want_sends])
    assert failed_at == pytest.approx(100.0 + want_fail)
    assert len(sends) == rc


def test_max_duration_cuts_the_schedule_short():
    clock = FakeClock()
    txn = ClientTransaction(REQUEST_BYTES, TID, max_duration=3.0)
    sends, failed_at = run_to_end(txn, clock)
    assert sends == [0.0, 0.5, 1.5]
    assert failed_at == 3.0
    assert txn.state == "failed"


def test_nothing_happens_before_the_deadline():
    txn = ClientTransaction(REQUEST_BYTES, TID)
    txn.start(10.0)
    assert txn.next_deadline() == 10.5
    assert txn.handle_timeout(10.49) == []
    assert txn.transmissions == 1
    assert txn.handle_timeout(10.5) == [Transmit(REQUEST_BYTES)]
    assert txn.next_deadline() == 11.5


def test_matching_response_completes_it():
    txn = ClientTransaction(REQUEST_BYTES, TID)
    txn.start(0.0)
    assert txn.response_received(Message(BINDING, SUCCESS_RESPONSE, TID))
    assert txn.state == "succeeded" and txn.done
    assert txn.next_deadline() is None
    assert txn.handle_timeout(100.0) == []
    # a retransmitted duplicate of the answer is not a second completion
    assert not txn.response_received(Message(BINDING, SUCCESS_RESPONSE, TID))


def test_other_transaction_ids_and_requests_are_not_answers():
    txn = ClientTransaction(REQUEST_BYTES, TID)
    txn.start(0.0)
    assert not txn.response_received(Message(BINDING, SUCCESS_RESPONSE, bytes(12)))
    assert not txn.response_received(Message(BINDING, REQUEST, TID))
    assert txn.state == "waiting"


def test_response_before_start_is_ignored_and_double_start_refused():
    txn = ClientTransaction(REQUEST_BYTES, TID)
    assert not txn.response_received(Message(BINDING, SUCCESS_RESPONSE, TID))
    txn.start(0.0)
    with pytest.raises(ValueError):
        txn.start(1.0)


@pytest.mark.parametrize("kwargs", [{"rto": 0}, {"rc": 0}, {"rm": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ClientTransaction(REQUEST_BYTES, TID, **kwargs)
