"""The session state machine: the one transition table, illegal events, logging."""

from __future__ import annotations

import logging

import pytest

from netsprint.errors import NetsprintError
from netsprint.p2p.states import (TRANSITIONS, Event, State, StateChanged, StateMachine,
                                  TransitionError)

pytestmark = pytest.mark.unit

S, E = State, Event
LIVE = [S.INIT, S.SIGNALING, S.PROBING, S.CONNECTED, S.FALLBACK, S.RELAYED]

# The design's diagram, written out independently of the module's table.
EXPECTED = {
    (S.INIT, E.GATHERED): S.SIGNALING,
    (S.SIGNALING, E.SIGNALED): S.PROBING,
    (S.SIGNALING, E.SIGNALING_FAILED): S.FAILED,
    (S.PROBING, E.PROBE_ACKED): S.CONNECTED,
    (S.PROBING, E.PUNCH_TIMEOUT): S.FALLBACK,
    (S.CONNECTED, E.PATH_DEAD): S.PROBING,
    (S.FALLBACK, E.RELAY_BOUND): S.RELAYED,
    (S.FALLBACK, E.RELAY_FAILED): S.FAILED,
    (S.FALLBACK, E.PROBE_ACKED): S.CONNECTED,
    (S.RELAYED, E.PROBE_ACKED): S.CONNECTED,
    (S.RELAYED, E.PATH_DEAD): S.FALLBACK,
}
for _state in LIVE:
    for _event in (E.BYE, E.PEER_LEFT, E.CLOSE):
        EXPECTED[(_state, _event)] = S.CLOSED

ILLEGAL = [(s, e) for s in State for e in Event if (s, e) not in EXPECTED]


def test_the_table_is_the_designed_one():
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize("state, event", sorted(EXPECTED, key=lambda k: (k[0].value,
                                                                         k[1].value)))
def test_every_legal_transition(state, event):
    machine = StateMachine(now=1.0, state=state)
    change = machine.fire(event, 2.5, "because", path=("192.0.2.1", 9))
    assert change == StateChanged(state, EXPECTED[(state, event)], "because", ("192.0.2.1", 9))
    assert machine.state is EXPECTED[(state, event)]
    assert machine.entered_at == 2.5
    assert machine.history == [change]


@pytest.mark.parametrize("state, event", ILLEGAL)
def test_every_illegal_transition_raises(state, event):
    machine = StateMachine(now=0.0, state=state)
    with pytest.raises(TransitionError) as info:
        machine.fire(event, 1.0, "no")
    assert isinstance(info.value, NetsprintError)
    assert (info.value.state, info.value.event) == (state, event)
    assert machine.state is state and machine.history == []
    assert not machine.can_fire(event)


def test_final_states_have_no_way_out():
    for state in (S.FAILED, S.CLOSED):
        assert [e for e in Event if (state, e) in TRANSITIONS] == []
        assert StateMachine(0.0, state=state).final


def test_happy_path_with_reasons_is_logged(caplog):
    log = logging.LoggerAdapter(logging.getLogger("netsprint.p2p.test"), {"conn": "a->b"})
    machine = StateMachine(now=0.0, log=log)
    caplog.set_level(logging.INFO, logger="netsprint.p2p.test")
    steps = [(E.GATHERED, "2 candidates gathered"), (E.SIGNALED, "Answer with 2 candidates"),
             (E.PROBE_ACKED, "PROBE_ACK from 203.0.113.5:4000")]
    for i, (event, reason) in enumerate(steps):
        machine.fire(event, 0.1 * i, reason)
    assert [(c.old, c.new) for c in machine.history] == [
        (S.INIT, S.SIGNALING), (S.SIGNALING, S.PROBING), (S.PROBING, S.CONNECTED)]
    assert [c.reason for c in machine.history] == [r for _, r in steps]
    records = [r for r in caplog.records if r.name == "netsprint.p2p.test"]
    assert [r.levelno for r in records] == [logging.INFO] * 3
    assert all(r.conn == "a->b" for r in records)
    for record, (_, reason) in zip(records, steps):
        assert reason in record.getMessage()
    assert "PROBING -> CONNECTED" in records[-1].getMessage()
