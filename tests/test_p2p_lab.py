"""End to end in the NAT lab (root): the 25-cell matrix, birthday mode, a 1 MiB transfer
with 5 % loss and across a cut of the direct path. Figures go to the issue note and
docs/performance.md; no timing is asserted here."""

from __future__ import annotations

import hashlib
import os

import pytest
from labutil import assert_no_traces, require_lab
from p2plab import exchange

from netsprint.lab.matrix import (NEEDS_RELAY, birthday_trials, cell_path, expected_path,
                                  lab_services, run_matrix, wait_until_no_peers)
from netsprint.lab.nat_types import NAT_TYPES
from netsprint.lab.topology import NatLab

pytestmark = pytest.mark.lab

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def p2p_lab():
    """One lab with STUN and signaling + relay in its internet, for the transfer tests."""
    require_lab()
    with NatLab() as lab, lab_services(lab) as services:
        yield lab, services
    assert_no_traces(lab.name)


@pytest.fixture
def fresh(p2p_lab):
    """The module's lab reset to port-restricted on both sides, no loss, no cut."""
    lab, services = p2p_lab
    for side in "ab":
        lab.set_nat(side, "port-restricted")
        lab.set_loss(side, 0)
    lab.cut_direct(False)
    wait_until_no_peers(services)
    lab.flush_conntrack()
    yield lab, services
    lab.cut_direct(False)
    for side in "ab":
        lab.set_loss(side, 0)


def test_theory_table_names_exactly_the_two_relay_pairs():
    relay = {(a, b) for a in NAT_TYPES for b in NAT_TYPES if expected_path(a, b) == "relay"}
    assert relay == {("symmetric", "symmetric"), ("symmetric", "port-restricted"),
                     ("port-restricted", "symmetric")}
    assert len(NEEDS_RELAY) == 2


def test_a_cell_path_names_what_each_side_got():
    assert cell_path("relay", "relay") == "relay"
    assert cell_path("direct", "relay") == "direct/relay"  # a's, then b's
    assert cell_path("direct", None) is None and cell_path(None, None) is None


def test_every_pair_of_nat_types_connects_on_the_path_theory_allows():
    require_lab()
    cells = run_matrix()
    assert len(cells) == 25
    failed = [c.to_dict() for c in cells if not c.as_expected]
    assert not failed, f"cells off theory: {failed}"
    for cell in cells:
        assert cell.time_to_connect is not None and cell.time_to_connect > 0
        assert cell.states_a[-1] == "CLOSED" and cell.states_b[-1] == "CLOSED"


def test_birthday_mode_punches_symmetric_to_port_restricted():
    require_lab()
    cells = birthday_trials(3)
    assert all(c.connected for c in cells), [c.to_dict() for c in cells]
    # 256 sockets x 2048 probes over 64512 ports: each trial fails with p ~ 3e-4
    # (docs/p2p.md); two of three direct makes a flake a 1-in-4-million event.
    assert sum(c.path == "direct" for c in cells) >= 2, [c.to_dict() for c in cells]


def _check_transfer(a, b, payload: bytes) -> None:
    assert a.error is None and b.error is None, (a.error, b.error)
    assert b.files == [("payload.bin", len(payload), hashlib.sha256(payload).hexdigest())]
    assert a.lines == ["hello from b"] and b.lines == ["hello from a"]


def test_one_mib_arrives_intact_with_five_percent_loss(fresh):
    lab, services = fresh
    lab.set_loss("a", 5)
    lab.set_loss("b", 5)
    payload = os.urandom(MIB)
    a, b = exchange(lab, services, payload)
    _check_transfer(a, b, payload)
    assert a.final_path == "direct"


def test_transfer_survives_a_cut_of_the_direct_path_by_moving_to_the_relay(fresh):
    lab, services = fresh
    payload = os.urandom(MIB)
    a, b = exchange(lab, services, payload, cut_after_bytes=MIB // 4)
    _check_transfer(a, b, payload)
    # dead path -> re-punch (fails: still cut) -> relay, on both sides
    for states in (a.states, b.states):
        connected = states.index("CONNECTED")
        assert states[connected:connected + 4] == ["CONNECTED", "PROBING", "FALLBACK", "RELAYED"], \
            states
    assert a.final_path == "relay" and b.final_path == "relay"
