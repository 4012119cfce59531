"""The NAT lab's namespaces: built, reachable, independent of each other, and removed.

Traffic stays inside namespaces these tests create, on documentation ranges only.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from labutil import lab  # noqa: F401  (a fixture)
from labutil import (assert_no_traces, drain, host_snapshot, lab_traces, require_lab,
                      send_burst, udp_receiver)

from netsprint.lab import LabError
from netsprint.lab import topology
from netsprint.lab.topology import NatLab

pytestmark = pytest.mark.lab

PROBE_PORT = 40000


def root_ip_forward() -> str:
    with open("/proc/sys/net/ipv4/ip_forward") as sysctl:
        return sysctl.read().strip()


def round_trip_source(built: NatLab, peer: str) -> tuple[str, int]:
    """Send one datagram from `peer` to the internet; return the source the internet saw."""
    with udp_receiver(built, "internet", built.stun_addresses[0], PROBE_PORT) as receiver:
        send_burst(built, peer, (built.stun_addresses[0], PROBE_PORT), 1)
        got = drain(receiver)
    assert len(got) == 1, f"expected one datagram at the internet, got {got}"
    return got[0][1]


def test_peer_reaches_internet_through_its_nat(lab):
    for side in "ab":
        source_ip, _ = round_trip_source(lab, f"peer-{side}")
        # Masquerade rewrites the peer's private address into the router's WAN address.
        assert source_ip == lab.address(f"nat-{side}")


def test_nat_none_routes_without_translation(lab):
    lab.set_nat("a", "none")
    source_ip, _ = round_trip_source(lab, "peer-a")
    assert source_ip == lab.address("peer-a")


def test_unsolicited_inbound_is_dropped_by_a_nat(lab):
    # The internet routes the LAN prefix via the router (for type "none"), so only the
    # router's forward policy stands between it and the peer.
    peer_ip = lab.address("peer-a")
    with udp_receiver(lab, "peer-a", peer_ip, PROBE_PORT) as receiver:
        send_burst(lab, "internet", (peer_ip, PROBE_PORT), 3)
        assert drain(receiver) == []
        lab.set_nat("a", "none")
        send_burst(lab, "internet", (peer_ip, PROBE_PORT), 3)
        assert len(drain(receiver)) == 3


def test_run_and_popen_execute_inside_the_node(lab):
    done = lab.run("peer-b", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
                   capture_output=True, text=True, check=True)
    assert f"inet {lab.address('peer-b')}/25" in done.stdout
    proc = lab.popen("server", ["ip", "-4", "-o", "addr", "show", "dev", "br0"],
                     stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=10)
    assert all(f"inet {ip}/24" in out for ip in lab.stun_addresses)


def test_state_file_lets_another_invocation_find_the_lab(lab):
    lab.set_nat("b", "symmetric")
    lab.set_loss("a", 12.5)
    state = json.loads(lab.state_path.read_text())
    assert state["status"] == "up"
    assert state["nat"] == {"a": "port-restricted", "b": "symmetric"}
    again = NatLab.load(lab.name)
    assert again.nat == lab.nat and again.loss == {"a": 12.5, "b": 0.0}
    assert again.namespaces == lab.namespaces


def test_lab_that_exists_is_not_built_twice(lab):
    with pytest.raises(LabError, match="already exists"):
        NatLab(lab.name).up()
    assert all(topology.netns_exists(ns) for ns in lab.namespaces)


def test_two_labs_side_by_side_do_not_collide():
    require_lab()
    with NatLab(nat_a="symmetric") as first, NatLab(nat_a="none") as second:
        assert set(first.namespaces).isdisjoint(second.namespaces)
        # Same addresses, different namespaces: each lab's NAT type holds in its own lab.
        assert round_trip_source(first, "peer-a")[0] == first.address("nat-a")
        assert round_trip_source(second, "peer-a")[0] == second.address("peer-a")
        first.set_loss("a", 100)
        assert round_trip_source(second, "peer-a")[0] == second.address("peer-a")
    assert_no_traces(first.name)
    assert_no_traces(second.name)


def test_root_namespace_gets_nothing_and_teardown_removes_all():
    require_lab()
    built = NatLab()
    before = host_snapshot()
    forwarding_before = root_ip_forward()
    assert lab_traces(before, built.name) == []
    with built:
        built.set_loss("a", 10)
        during = host_snapshot()
        # The routers forward; the host's own sysctl is untouched (it is per namespace).
        assert root_ip_forward() == forwarding_before
        assert built.run("nat-a", ["sysctl", "-n", "net.ipv4.ip_forward"], capture_output=True,
                         text=True).stdout.strip() == "1"
        assert {f"netns {ns}" for ns in built.namespaces} <= set(lab_traces(during, built.name))
        # No veth end, bridge or nft table of the lab ever appears in the root namespace.
        assert [t for t in lab_traces(during, built.name) if not t.startswith("netns")] == []
    assert_no_traces(built.name)
    assert not built.state_path.exists()


def test_teardown_happens_when_the_body_raises():
    require_lab()
    built = NatLab()
    with pytest.raises(RuntimeError, match="boom"):
        with built:
            assert topology.netns_exists(built.netns("peer-a"))
            raise RuntimeError("boom")
    assert_no_traces(built.name)
    assert not built.state_path.exists()


def test_half_built_lab_is_removed(monkeypatch):
    require_lab()

    def fail_side_b(self, side):
        if side == "b":
            raise LabError("simulated failure while wiring side b")
        return real_build_side(self, side)

    real_build_side = NatLab._build_side
    monkeypatch.setattr(NatLab, "_build_side", fail_side_b)
    built = NatLab()
    try:
        with pytest.raises(LabError, match="simulated"):
            built.up()
        assert_no_traces(built.name)
        assert not built.state_path.exists()
    finally:
        built.down()  # only does something when up() did not clean up after itself


def test_down_stops_processes_left_inside_the_lab():
    require_lab()
    with NatLab() as built:
        sleeper = built.popen("peer-a", ["sleep", "60"])
    try:
        # down() found the sleeper by its namespace and stopped it; the namespace is gone.
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
        assert_no_traces(built.name)
    finally:
        if sleeper.poll() is None:  # down() missed it: stop it here, by its PID
            sleeper.kill()
            sleeper.wait(timeout=10)


def test_loss_drops_roughly_the_asked_share(lab):
    count = 400
    target = (lab.stun_addresses[0], PROBE_PORT)
    with udp_receiver(lab, "internet", *target) as receiver:
        send_burst(lab, "peer-a", target, count)
        assert len(drain(receiver)) == count  # no loss configured: every datagram arrives
        lab.set_loss("a", 50)
        send_burst(lab, "peer-a", target, count)
        arrived = len(drain(receiver))
        lab.set_loss("a", 0)
        send_burst(lab, "peer-a", target, count)
        after_reset = len(drain(receiver))
    # numgen draws uniformly: 200 expected, sd 10, so +-60 is a 6-sigma band.
    assert 140 <= arrived <= 260, f"{arrived}/{count} arrived at 50 % loss"
    assert after_reset == count


def test_bad_arguments_are_refused_before_touching_the_host():
    with pytest.raises(ValueError):
        NatLab(nat_a="cone-ish")
    with pytest.raises(ValueError):
        NatLab(name="Bad_Name")
    with pytest.raises(ValueError):
        NatLab().netns("router")
