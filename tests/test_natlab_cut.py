"""The lab's tools for weeks 5-6: cutting the direct path, threads inside a node, and
forgetting NAT mappings between experiments.

Traffic stays inside the namespaces these tests create, on documentation ranges only; the
`lab` fixture tears everything down (also on failure) and checks the host is clean.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
import threading

import pytest
from labutil import lab  # noqa: F401  (a fixture)
from labutil import assert_no_traces, drain, host_snapshot, require_lab, udp_receiver

from netsprint.lab import LabError, topology
from netsprint.lab.nat_types import CUT_TABLE
from netsprint.lab.topology import NETNS_DIR, NatLab, call_in_netns, socket_in_netns

pytestmark = pytest.mark.lab

PORT_A, PORT_B, SERVER_PORT = 41000, 41001, 41002


def reach_internet(built: NatLab, sock: socket.socket) -> tuple[str, int] | None:
    """Send from `sock` to the first STUN address; the source the internet saw, or None."""
    server = built.stun_addresses[0]
    with udp_receiver(built, "internet", server, SERVER_PORT) as receiver:
        sock.sendto(b"hello", (server, SERVER_PORT))
        got = drain(receiver)
    return got[0][1] if got else None


def one_way(sender: socket.socket, receiver: socket.socket, target: tuple[str, int],
            payload: bytes) -> list[tuple[bytes, tuple]]:
    sender.sendto(payload, target)
    return drain(receiver)


def cut_counters(built: NatLab) -> list[int]:
    """The packet counters of the two drop rules of the cut table (empty: no table)."""
    done = built.run("internet", ["nft", "list", "table", "bridge", CUT_TABLE],
                     capture_output=True, text=True)
    return [int(n) for n in re.findall(r"counter packets (\d+)", done.stdout)]


def root_has_cut_table() -> bool:
    return CUT_TABLE in host_snapshot().nft_tables


@pytest.fixture
def peers(lab):
    """peer-a (NAT none) and peer-b (full cone) with one bound socket each; peer-b has
    opened its mapping, so peer-a can reach it directly. Yields (lab, a, b, b's public)."""
    lab.set_nat("a", "none")
    lab.set_nat("b", "full-cone")
    with udp_receiver(lab, "peer-a", lab.address("peer-a"), PORT_A) as sock_a, \
            udp_receiver(lab, "peer-b", lab.address("peer-b"), PORT_B) as sock_b:
        public_b = reach_internet(lab, sock_b)
        assert public_b == (lab.address("nat-b"), PORT_B)
        yield lab, sock_a, sock_b, public_b


def test_cut_direct_kills_peer_traffic_but_not_the_servers(peers):
    built, sock_a, sock_b, public_b = peers
    public_a = (built.address("peer-a"), PORT_A)  # NAT "none": the peer's own address

    def both_ways(tag: bytes) -> tuple[list, list]:
        return (one_way(sock_a, sock_b, public_b, b"a->b " + tag),
                one_way(sock_b, sock_a, public_a, b"b->a " + tag))

    before = both_ways(b"before")
    assert [data for data, _ in before[0]] == [b"a->b before"]
    assert [data for data, _ in before[1]] == [b"b->a before"]
    assert before[1][0][1] == public_b  # b's reply left through its NAT

    built.cut_direct()
    assert both_ways(b"while cut") == ([], [])
    # The bridge rules did the dropping (each way; ARP probes between the routers die
    # there too, so the counts may be higher than one each), not anything else.
    drops = cut_counters(built)
    assert len(drops) == 2 and min(drops) >= 1, drops
    # Both peers still reach the servers on the internet's bridge, through their NATs.
    assert reach_internet(built, sock_a) == public_a
    assert reach_internet(built, sock_b) == public_b

    built.cut_direct(False)
    after = both_ways(b"after")
    assert [data for data, _ in after[0]] == [b"a->b after"]
    assert [data for data, _ in after[1]] == [b"b->a after"]


def test_cut_direct_is_idempotent_remembered_and_stays_in_the_lab(lab):
    lab.cut_direct()
    lab.cut_direct()
    # One table, two rules: not doubled. (Their packet counts are not ours to predict: a late
    # packet of an earlier test in this lab may meet the cut.)
    assert len(cut_counters(lab)) == 2
    assert NatLab.load(lab.name).cut is True
    assert not root_has_cut_table()
    lab.cut_direct(False)
    lab.cut_direct(False)
    assert cut_counters(lab) == []
    assert NatLab.load(lab.name).cut is False


def test_down_removes_a_cut_lab_entirely():
    require_lab()
    with NatLab() as built:
        built.cut_direct()
    assert_no_traces(built.name)
    assert not root_has_cut_table()


# --- threads inside a node ---------------------------------------------------------------------

def netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def test_thread_lives_in_the_node_and_the_process_does_not_move(lab):
    seen: dict[str, object] = {}

    def look_around(node: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((lab.stun_addresses[0], 9))  # UDP connect: a route lookup, no packet
            seen[f"{node} source"] = sock.getsockname()[0]
        seen[f"{node} netns"] = netns_inode("/proc/thread-self/ns/net")

    main_netns = netns_inode("/proc/thread-self/ns/net")
    workers = [lab.thread(node, look_around, node) for node in ("peer-a", "nat-b")]
    assert not any(worker.is_alive() for worker in workers)  # returned unstarted
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert seen["peer-a source"] == lab.address("peer-a")
    assert seen["nat-b source"] == lab.address("nat-b")
    for node in ("peer-a", "nat-b"):
        assert seen[f"{node} netns"] == netns_inode(os.path.join(NETNS_DIR, lab.netns(node)))
    assert netns_inode("/proc/thread-self/ns/net") == main_netns
    assert workers[0].name == f"{lab.name}-peer-a"


def test_thread_refuses_unknown_nodes_and_labs_that_are_not_up(lab):
    with pytest.raises(ValueError, match="unknown node"):
        lab.thread("router", print)
    with pytest.raises(LabError, match="no network namespace"):
        NatLab("nosuchlab").thread("peer-a", print)


def test_call_in_netns_hands_back_the_result_and_the_exception(lab):
    namespace = lab.netns("peer-a")
    seen = call_in_netns(namespace, netns_inode, "/proc/thread-self/ns/net")
    assert seen == netns_inode(os.path.join(NETNS_DIR, namespace))
    with pytest.raises(ZeroDivisionError):
        call_in_netns(namespace, divmod, 1, 0)
    with pytest.raises(LabError, match="no network namespace"):
        socket_in_netns("nosuchlab-peer-a")


def test_thread_sockets_talk_across_the_lab(lab):
    """A whole exchange run by a thread in peer-a, answered by the internet."""
    got: list[bytes] = []
    with udp_receiver(lab, "internet", lab.stun_addresses[0], SERVER_PORT) as server:
        def client() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5)
                sock.sendto(b"ping", (lab.stun_addresses[0], SERVER_PORT))
                got.append(sock.recv(100))

        worker = lab.thread("peer-a", client)
        worker.start()
        server.settimeout(5)
        data, source = server.recvfrom(100)
        assert source[0] == lab.address("nat-a")  # it went out through nat-a
        server.sendto(data.upper(), source)
        worker.join(timeout=10)
    assert got == [b"PING"]


# --- forgetting NAT mappings ---------------------------------------------------------------------

def flows_to(built: NatLab, node: str, port: int) -> list[str]:
    return [line for line in built.conntrack(node) if f"dport={port} " in line]


@pytest.fixture
def server(lab):
    with udp_receiver(lab, "internet", lab.stun_addresses[0], SERVER_PORT) as sock:
        yield sock


def test_flush_closes_the_way_back_in_port_restricted(lab, server):
    target = (lab.stun_addresses[0], SERVER_PORT)
    with udp_receiver(lab, "peer-a", lab.address("peer-a"), PORT_A) as peer:
        [(_, mapped)] = one_way(peer, server, target, b"out")
        assert [d for d, _ in one_way(server, peer, mapped, b"reply")] == [b"reply"]
        assert len(flows_to(lab, "nat-a", SERVER_PORT)) == 1

        lab.flush_conntrack("a")
        assert flows_to(lab, "nat-a", SERVER_PORT) == []
        # The same server, port and mapping as a moment ago: now unsolicited, dropped.
        assert one_way(server, peer, mapped, b"after flush") == []

        # Control: a new outbound packet opens the mapping again and replies come back.
        [(_, again)] = one_way(peer, server, target, b"out again")
        assert [d for d, _ in one_way(server, peer, again, b"reply 2")] == [b"reply 2"]


def test_flush_empties_the_full_cone_mapping_set(lab, server):
    lab.set_nat("a", "full-cone")
    stranger_ip = lab.stun_addresses[1]
    with udp_receiver(lab, "peer-a", lab.address("peer-a"), PORT_A) as peer, \
            udp_receiver(lab, "internet", stranger_ip, SERVER_PORT) as stranger:
        [(_, mapped)] = one_way(peer, server, (lab.stun_addresses[0], SERVER_PORT), b"out")
        # Full cone: anyone may send to an open mapping ...
        assert [d for d, _ in one_way(stranger, peer, mapped, b"hi")] == [b"hi"]
        lab.flush_conntrack("a")
        # ... until the mapping is forgotten: the set is empty and conntrack too.
        assert one_way(stranger, peer, mapped, b"hi again") == []
        assert lab.nat["a"] == "full-cone"


def test_flush_gives_a_symmetric_nat_new_ports_and_only_on_its_side(lab, server):
    lab.set_nat("a", "symmetric")
    target = (lab.stun_addresses[0], SERVER_PORT)
    with udp_receiver(lab, "peer-a", lab.address("peer-a"), PORT_A) as peer_a, \
            udp_receiver(lab, "peer-b", lab.address("peer-b"), PORT_B) as peer_b:
        [(_, first)] = one_way(peer_a, server, target, b"1")
        [(_, same)] = one_way(peer_a, server, target, b"2")
        assert same == first  # one flow, one mapping, while conntrack remembers it
        one_way(peer_b, server, target, b"b")
        assert len(flows_to(lab, "nat-b", SERVER_PORT)) == 1

        lab.flush_conntrack("a")
        [(_, fresh)] = one_way(peer_a, server, target, b"3")
        # `masquerade random` draws a new port for the new flow (same port: ~1 in 64k).
        assert fresh[0] == first[0] and fresh[1] != first[1]
        assert len(flows_to(lab, "nat-b", SERVER_PORT)) == 1  # side b untouched

        lab.flush_conntrack()
        assert flows_to(lab, "nat-a", SERVER_PORT) == []
        assert flows_to(lab, "nat-b", SERVER_PORT) == []


def netlink_reply(kind: int, error: int) -> bytes:
    header = topology.NLMSG_HEADER
    return header.pack(header.size + 4, kind, 0, 1, 0) + struct.pack("=i", error)  # host order


def test_the_flush_reads_the_kernels_ack_and_its_refusals():
    topology.check_netlink_ack(netlink_reply(topology.NLMSG_ERROR, 0), "flush")  # the ack
    with pytest.raises(OSError) as refused:
        topology.check_netlink_ack(netlink_reply(topology.NLMSG_ERROR, -errno.EPERM), "flush")
    assert refused.value.errno == errno.EPERM
    with pytest.raises(LabError, match="unexpected netlink message type"):
        topology.check_netlink_ack(netlink_reply(topology.NLMSG_ERROR + 1, 0), "flush")
    with pytest.raises(LabError, match="short"):
        topology.check_netlink_ack(b"\0" * 8, "flush")


def test_flush_refuses_a_bad_side(lab):
    with pytest.raises(ValueError, match="side"):
        lab.flush_conntrack("c")


def test_threads_are_not_leaked_by_the_helpers(lab):
    before = threading.active_count()
    lab.flush_conntrack()
    lab.socket("peer-a").close()
    assert threading.active_count() == before
