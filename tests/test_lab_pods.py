"""Pods on one machine: the IPAM, a node of pod namespaces on a bridge, cgroups, the pod
map, clean-up (also after a failure half-way) and `netsprint lab pods`.

Traffic stays inside the namespaces these tests create, on 198.51.100.0/24 (RFC 5737).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import have_netns, is_root

from netsprint.agent.model import PodRef
from netsprint.agent.pods import LabPods
from netsprint.errors import CapabilityError
from netsprint.lab import LabError, pods_command
from netsprint.lab.pods import (Ipam, IpamExhausted, PodNode, PodSpec, cgroup2_mount,
                                join_cgroup_argv, node_traces, parse_pod_list,
                                process_cgroup)

ECHO_PORT = 8080


# --- pure parts -------------------------------------------------------------------------------

@pytest.mark.unit
def test_ipam_hands_out_unique_addresses_releases_and_refuses_when_full():
    ipam = Ipam("198.51.100.0/28", first_offset=10)  # .10 .. .14 (.15 is broadcast)
    assert ipam.gateway == "198.51.100.1"
    got = [ipam.allocate(f"p{i}") for i in range(5)]
    assert got == [f"198.51.100.{n}" for n in range(10, 15)]
    with pytest.raises(IpamExhausted, match="full"):
        ipam.allocate("one-too-many")
    ipam.release("198.51.100.12")
    assert ipam.allocate("again") == "198.51.100.12"  # the lowest free address comes back
    with pytest.raises(LabError, match="not handed out"):
        ipam.release("198.51.100.1")


@pytest.mark.unit
def test_ipam_reserve_restores_and_refuses_conflicts():
    ipam = Ipam()
    ipam.reserve("198.51.100.11", "default/web-1")
    assert ipam.allocate("default/web-0") == "198.51.100.10"
    assert ipam.allocate("default/db-0") == "198.51.100.12"
    with pytest.raises(LabError, match="already belongs"):
        ipam.reserve("198.51.100.11", "default/other")
    with pytest.raises(LabError, match="not a pod address"):
        ipam.reserve("198.51.100.1", "x/gateway")


@pytest.mark.unit
def test_pod_specs_parse_names_namespaces_and_workloads():
    assert parse_pod_list("web-0, shop/db-1,cache") == [
        PodSpec("web-0", "default", "web"), PodSpec("db-1", "shop", "db"),
        PodSpec("cache", "default", "cache")]
    with pytest.raises(ValueError, match="DNS label"):
        PodSpec("Web_0")
    with pytest.raises(ValueError, match="no pods"):
        parse_pod_list(" , ")


@pytest.mark.unit
def test_cgroup2_mount_in_hybrid_and_unified_layouts():
    hybrid = ("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"
              "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n")
    unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n"
    escaped = "cgroup2 /mnt/my\\040cgroups cgroup2 rw 0 0\n"
    assert cgroup2_mount(hybrid) == Path("/sys/fs/cgroup/unified")
    assert cgroup2_mount(unified + hybrid) == Path("/sys/fs/cgroup")
    assert cgroup2_mount(escaped) == Path("/mnt/my cgroups")
    with pytest.raises(CapabilityError, match="no cgroup v2"):
        cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n")


@pytest.mark.unit
def test_join_cgroup_argv_writes_the_pid_that_then_runs_the_command(tmp_path):
    # A plain directory stands in for the cgroup: the wrapper must write the PID of the
    # very process that goes on to run the command (exec keeps the PID).
    argv = join_cgroup_argv(tmp_path, ["sh", "-c", "echo $$"])
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10)
    assert (tmp_path / "cgroup.procs").read_text().strip() == done.stdout.strip()


@pytest.mark.unit
def test_cli_refuses_without_root(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(CapabilityError) as caught:
        pods_cli("list", "--node", "nobody")
    assert "sudo" in caught.value.hint
    assert pods_command.main(["pods", "up", "--node", "nobody"]) == 2  # one line, no traceback
    assert "needs root" in capsys.readouterr().err


# --- a node (root) ----------------------------------------------------------------------------

def require_pods() -> None:
    if not is_root():
        pytest.skip("needs root (run `sudo make test`)")
    if not have_netns():
        pytest.skip("network namespaces unavailable: install iproute2 and run as root")


def assert_clean(node: PodNode) -> None:
    traces = node_traces(node.name, node.map_path, node.cgroup_root)
    assert traces == [], f"node {node.name!r} left behind: {traces}"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node with three pods for the read-only tests of this module."""
    require_pods()
    built = PodNode(pods=["web-0", "web-1", "shop/db-0"],
                    map_path=tmp_path_factory.mktemp("pods") / "map.json")
    with built:
        yield built
    assert_clean(built)


@pytest.fixture
def fresh_node(tmp_path):
    """A node per test (tests that change or break it); checked clean afterwards."""
    require_pods()
    made: list[PodNode] = []

    def make(pods=("web-0", "db-0"), **kwargs) -> PodNode:
        made.append(PodNode(pods=pods, map_path=tmp_path / f"map{len(made)}.json", **kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for each in made:
            each.down()
            assert_clean(each)


def ip_lines(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", netns, "-o", *args], capture_output=True, text=True,
                          check=True, timeout=20).stdout


@pytest.mark.lab
def test_up_builds_pods_on_the_bridge_with_unique_addresses(node):
    addresses = [pod.ip for pod in node.pods]
    assert len(set(addresses)) == 3
    assert all(ip.startswith("198.51.100.") and int(ip.rsplit(".", 1)[1]) >= 10
               for ip in addresses)
    for pod in node.pods:
        assert f"inet {pod.ip}/24" in ip_lines(pod.netns, "addr", "show", "dev", "eth0")
    ports = ip_lines(node.netns, "link", "show", "master", "cni0")
    assert sorted(pod.host_if for pod in node.pods) == sorted(
        line.split(":")[1].strip().split("@")[0] for line in ports.splitlines())
    # The root namespace got nothing: no bridge, no veth, no route to the pod network.
    assert "198.51.100." not in subprocess.run(["ip", "route"], capture_output=True,
                                               text=True, check=True).stdout
    assert not [t for t in node_traces(node.name, node.map_path) if "root-namespace" in t]


ECHO_SERVER = textwrap.dedent(f"""
    import socket, sys
    listener = socket.socket()
    listener.bind(("0.0.0.0", {ECHO_PORT}))
    listener.listen()
    print("listening", flush=True)
    conn, peer = listener.accept()
    data = conn.recv(100)
    conn.sendall(data.upper())
    print(peer[0], flush=True)
""")

ECHO_CLIENT = textwrap.dedent(f"""
    import socket, sys
    with socket.create_connection((sys.argv[1], {ECHO_PORT}), timeout=5) as conn:
        conn.sendall(b"hello pod")
        print(conn.recv(100).decode())
""")


@pytest.mark.lab
def test_pod_to_pod_tcp_crosses_the_bridge_without_nat(node):
    server = node.popen("web-0", [sys.executable, "-c", ECHO_SERVER],
                        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        client = node.exec("shop/db-0", [sys.executable, "-c", ECHO_CLIENT,
                                         node.address("web-0")],
                           capture_output=True, text=True, timeout=20)
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == "HELLO POD"
        # The server saw the client pod's own address: the Kubernetes model, no NAT.
        assert server.stdout.readline().strip() == node.address("db-0")
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.mark.lab
def test_map_file_lists_every_pod_with_address_cgroup_and_netns(node):
    state = json.loads(node.map_path.read_text())
    assert state["status"] == "up"
    assert state["node"] == node.name
    listed = {(p["namespace"], p["name"]): p for p in state["pods"]}
    assert set(listed) == {("default", "web-0"), ("default", "web-1"), ("shop", "db-0")}
    for pod in node.pods:
        entry = listed[(pod.namespace, pod.name)]
        assert entry["ip"] == pod.ip and entry["netns"] == pod.netns
        assert entry["workload"] == pod.name.rsplit("-", 1)[0]
        assert entry["cgroup_id"] == os.stat(entry["cgroup_path"]).st_ino
        assert Path(entry["cgroup_path"]).parent == node.cgroup_dir
        assert os.path.exists(f"/run/netns/{entry['netns']}")


@pytest.mark.lab
def test_exec_runs_in_the_pods_cgroup_and_netns(node):
    assert node.cgroup_id("web-1") == os.stat(node.pod("web-1").cgroup_path).st_ino
    sleeper = node.popen("web-1", ["sleep", "30"])
    try:
        assert process_cgroup(sleeper.pid) == "/" + cgroup_relative(node, "web-1")
        assert str(sleeper.pid) in Path(node.pod("web-1").cgroup_path, "cgroup.procs").read_text()
        pod_netns = os.stat(f"/run/netns/{node.pod('web-1').netns}").st_ino
        assert os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino == pod_netns
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
    done = node.exec("db-0", ["cat", "/proc/self/cgroup"], capture_output=True, text=True,
                     check=True, timeout=10)
    assert f"0::/{cgroup_relative(node, 'db-0')}" in done.stdout


def cgroup_relative(node: PodNode, pod: str) -> str:
    """The pod's cgroup as /proc/<pid>/cgroup names it (relative to the cgroup2 mount)."""
    return str(Path(node.pod(pod).cgroup_path).relative_to(node.cgroup_root))


@pytest.mark.lab
def test_call_runs_in_the_pods_netns_and_the_caller_stays(node):
    def netns_inode() -> int:
        return os.stat("/proc/thread-self/ns/net").st_ino

    before = netns_inode()
    pod_netns = os.stat(f"/run/netns/{node.pod('web-0').netns}").st_ino
    assert node.call("web-0", netns_inode) == pod_netns != before
    assert netns_inode() == before


@pytest.mark.lab
def test_lab_pods_resolver_reads_the_nodes_map(node):
    resolver = LabPods(node.map_path)
    assert resolver.local_pod(node.cgroup_id("web-1"), "") == PodRef("default", "web-1", "web")
    assert resolver.peer_pod(node.address("db-0")) == PodRef("shop", "db-0", "db")


@pytest.mark.lab
def test_up_is_idempotent_and_adds_only_missing_pods(fresh_node):
    first = fresh_node(pods=["web-0"]).up()
    before = {p.qualified: (p.ip, p.cgroup_id) for p in first.pods}
    again = PodNode(first.name, ["web-0", "web-1"], map_path=first.map_path).up()
    after = {p.qualified: (p.ip, p.cgroup_id) for p in again.pods}
    assert after["default/web-0"] == before["default/web-0"]  # kept, not rebuilt
    assert set(after) == {"default/web-0", "default/web-1"}
    assert after["default/web-1"][0] != after["default/web-0"][0]


@pytest.mark.lab
def test_up_rewires_pods_whose_node_namespace_is_gone(fresh_node):
    first = fresh_node(pods=["web-0"]).up()
    # Deleting the node namespace takes the veths, so the pods' eth0 with them, a moment
    # later: the kernel frees a namespace from a workqueue.
    subprocess.run(["ip", "netns", "delete", first.netns], check=True, timeout=20)
    deadline = time.monotonic() + 10
    while "eth0" in ip_lines(first.pod("web-0").netns, "link"):
        assert time.monotonic() < deadline, "eth0 outlived its node namespace"
        time.sleep(0.02)
    again = PodNode(first.name, ["web-0"], map_path=first.map_path).up()
    assert f"inet {again.address('web-0')}/24" in ip_lines(again.pod("web-0").netns, "addr")


@pytest.mark.lab
def test_removing_a_pod_releases_its_address_and_resources(fresh_node):
    built = fresh_node(pods=["web-0", "web-1"]).up()
    gone = built.pod("web-0")
    built.remove_pod("web-0")
    assert not os.path.exists(f"/run/netns/{gone.netns}")
    assert not os.path.exists(gone.cgroup_path)
    assert gone.host_if not in ip_lines(built.netns, "link")
    assert [p["name"] for p in json.loads(built.map_path.read_text())["pods"]] == ["web-1"]
    assert built.add_pod("cache-0").ip == gone.ip  # the released address is handed out again


@pytest.mark.lab
def test_down_removes_everything_and_stops_pod_processes(fresh_node):
    built = fresh_node().up()
    sleeper = built.popen("web-0", ["sleep", "60"])
    built.down()
    assert sleeper.wait(timeout=10) != 0  # stopped by down, not finished
    assert_clean(built)
    built.down()  # twice is fine


@pytest.mark.lab
def test_down_cleans_up_after_a_failure_in_the_middle_of_up(fresh_node, monkeypatch):
    built = fresh_node(pods=["web-0", "web-1", "db-0"])
    real_wire = PodNode._wire

    def wire_then_fail_on_the_second_pod(self, pod):
        if pod.name == "web-1":
            raise LabError("injected failure while wiring web-1")
        real_wire(self, pod)

    monkeypatch.setattr(PodNode, "_wire", wire_then_fail_on_the_second_pod)
    with pytest.raises(LabError, match="injected"):
        built.up()
    assert_clean(built)


@pytest.mark.lab
def test_down_refuses_a_process_it_did_not_start_and_names_it(fresh_node):
    built = fresh_node(pods=["web-0"]).up()
    stranger = subprocess.Popen(["sleep", "60"])  # in the root netns: not started in the pod
    try:
        Path(built.pod("web-0").cgroup_path, "cgroup.procs").write_text(str(stranger.pid))
        with pytest.raises(LabError, match=rf"{stranger.pid} \(sleep\)"):
            built.down()
        assert stranger.poll() is None  # left alone
        Path(built.cgroup_root, "cgroup.procs").write_text(str(stranger.pid))
    finally:
        stranger.kill()
        stranger.wait(timeout=10)
    built.down()
    assert_clean(built)


@pytest.mark.lab
def test_two_nodes_coexist_with_the_same_pod_names(fresh_node):
    one = fresh_node(pods=["web-0"]).up()
    two = fresh_node(pods=["web-0"]).up()
    assert one.address("web-0") == two.address("web-0")  # separate pod networks
    assert one.pod("web-0").netns != two.pod("web-0").netns
    assert one.cgroup_id("web-0") != two.cgroup_id("web-0")
    one.down()
    assert_clean(one)
    done = two.exec("web-0", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
                    capture_output=True, text=True, check=True, timeout=10)
    assert two.address("web-0") in done.stdout


# --- the command line -------------------------------------------------------------------------

def pods_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    pods_command.add_arguments(parser.add_subparsers(dest="lab_command", required=True))
    return pods_command.run(parser.parse_args(["pods", *argv]))


@pytest.mark.lab
def test_cli_up_list_exec_down(tmp_path, capsys):
    require_pods()
    name, map_path = f"cli{os.getpid() % 100000}", str(tmp_path / "map.json")
    try:
        assert pods_cli("up", "--node", name, "--map", map_path, "--pods", "web-0,shop/db-0") == 0
        assert "198.51.100.11" in capsys.readouterr().out
        assert pods_cli("list", "--node", name, "--map", map_path, "--json") == 0
        listed = json.loads(capsys.readouterr().out)
        assert [p["name"] for p in listed["pods"]] == ["web-0", "db-0"]
        # exec replaces the process, so it runs as a child: the real path end to end.
        done = subprocess.run([sys.executable, "-m", "netsprint.lab.pods_command", "pods",
                               "exec", "db-0", "--node", name, "--map", map_path, "--",
                               "cat", "/proc/self/cgroup"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert f"/netsprint/{name}/shop_db-0" in done.stdout
    finally:
        assert pods_cli("down", "--node", name, "--map", map_path) == 0
    assert node_traces(name, map_path) == []


@pytest.mark.lab
def test_known_traffic_between_pods_and_a_clear_error_without_a_sink(node):
    from netsprint.lab import podtraffic

    sink = podtraffic.serve(node, "web-0", connections=2, port=8081)
    try:
        podtraffic.send_from(node, "web-1", "web-0", [1000, 23_456], port=8081)
    finally:
        podtraffic.finish(sink)
    assert sink.returncode == 0, "the sink serves exactly its connections, then exits"
    with pytest.raises(LabError, match="the sender in web-1 failed: .*(refused|Refused)"):
        podtraffic.send_from(node, "web-1", "web-0", [10], port=8081)
