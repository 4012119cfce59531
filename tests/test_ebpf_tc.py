"""The TC egress classifier: struct mirrors and the netlink request (pure), then the program
on the egress of one veth end, counting per destination port and rate-limiting one port.

Every check compares three views: what the sender sent (and a's veth counted as sent), what
the program counted (passed and dropped), and what arrived on sockets in namespace b.
Timings are never asserted; the rate-limit tests use buckets whose refill is far slower
than a burst of sends, or bound the extra tokens by the time the test measured itself.
"""

from __future__ import annotations

import socket
import struct
import time
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from bpfutil import assert_mirror_matches, our_programs, still_loaded
from conftest import have_bcc, have_netns

from netsprint.ebpf.tc.clsact import (NLA_HEADER, NLMSG_HEADER, RTM_NEWTFILTER, TCA_BPF_FD,
                                      TCA_OPTIONS, TCMSG, filter_request)
from netsprint.ebpf.tc.loader import (HEADER, NS_PER_S, PortCount, TcBucket, TcEgress,
                                      TcPortCounter, TcPortKey, bucket_config)
from netsprint.lab import LabError
from netsprint.lab.vethpair import VethPair

WAIT_S = 3.0
HEADERS_BYTES = 14 + 20 + 8  # Ethernet + IPv4 + UDP: skb->len at egress includes them all


# --- pure ------------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("mirror, struct_name", [(TcPortKey, "struct tc_port_key"),
                                                 (TcPortCounter, "struct tc_port_counter"),
                                                 (TcBucket, "struct tc_bucket")])
def test_ctypes_mirrors_match_the_header(mirror, struct_name):
    assert_mirror_matches(mirror, HEADER, struct_name)


@pytest.mark.unit
def test_bucket_config_starts_full_and_converts_the_rate():
    bucket = bucket_config(5002, rate_per_s=4.0, burst=3)
    assert (bucket.port, bucket.protocol, bucket.burst, bucket.tokens) == (5002, 17, 3, 3)
    assert bucket.ns_per_token == NS_PER_S // 4
    assert bucket_config(53, rate_per_s=0, burst=2, protocol="tcp").ns_per_token == 0
    for bad in ({"port": 0}, {"burst": -1}, {"rate_per_s": -1.0}):
        with pytest.raises(ValueError):
            bucket_config(**{"port": 1, "rate_per_s": 1.0, "burst": 1, **bad})


def attributes(data: bytes) -> dict[int, bytes]:
    found, offset = {}, 0
    while offset + NLA_HEADER.size <= len(data):
        length, kind = NLA_HEADER.unpack_from(data, offset)
        found[kind & 0x3FFF] = data[offset + NLA_HEADER.size:offset + length]
        offset += (length + 3) & ~3
    return found


@pytest.mark.unit
def test_filter_request_is_what_tc_sends():
    message = filter_request(ifindex=7, prog_fd=42, name="ns_tc_egress")
    length, kind, _, _, _ = NLMSG_HEADER.unpack_from(message)
    assert (length, kind) == (len(message), RTM_NEWTFILTER)
    _, _, _, ifindex, handle, parent, info = TCMSG.unpack_from(message, NLMSG_HEADER.size)
    assert (ifindex, handle, parent) == (7, 0, 0xFFFFFFF3)  # clsact ffff:fff3 = egress
    assert info == (1 << 16) | socket.htons(0x0003)           # prio 1, protocol all
    attrs = attributes(message[NLMSG_HEADER.size + TCMSG.size:])
    assert attrs[1] == b"bpf\0"
    options = attributes(attrs[TCA_OPTIONS])
    assert struct.unpack("=I", options[TCA_BPF_FD]) == (42,)


# --- on a veth ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab():
    """One veth pair with the program on a's egress, shared by the module's bpf tests."""
    if not (have_netns() and have_bcc()):
        pytest.skip("needs root, iproute2 network namespaces and bcc (`make provision`)")
    with VethPair("ns-tc") as pair, TcEgress(pair.ifname("a"), netns=pair.netns("a")) as tc:
        yield pair, tc


@dataclass
class Run:
    """One burst, from both ends: the program's counter deltas per port, what a's veth
    transmitted, what arrived in b per port, and how long the sends took."""

    counted: dict[int, PortCount]
    tx_packets: int
    arrived: dict[int, int]
    send_s: float


def send_and_receive(pair: VethPair, tc: TcEgress, plan: dict[int, tuple[int, int]]) -> Run:
    """Send `count` datagrams of `size` bytes to each port in b, back to back."""
    with ExitStack() as stack:
        receivers = {}
        for port in plan:
            receivers[port] = stack.enter_context(pair.socket("b"))
            receivers[port].bind(("0.0.0.0", port))
        sender = stack.enter_context(pair.socket("a"))
        before, link_before = tc.counters(), pair.link_stats("a")
        started = time.monotonic()
        for port, (count, size) in plan.items():
            for _ in range(count):
                sender.sendto(bytes(size), (pair.address("b"), port))
        send_s = time.monotonic() - started
        tx_packets = pair.link_stats("a")["tx_packets"] - link_before["tx_packets"]
        after = tc.counters()  # egress runs inside sendto(): already counted
        counted = {port: difference(after, before, port) for port in plan}
        arrived = {port: drain(sock, counted[port].packets) for port, sock in receivers.items()}
    return Run(counted, tx_packets, arrived, send_s)


def difference(after: dict, before: dict, port: int) -> PortCount:
    zero = PortCount(0, 0, 0, 0)
    new, old = after.get(("udp", port), zero), before.get(("udp", port), zero)
    return PortCount(*(getattr(new, f) - getattr(old, f) for f in vars(zero)))


def drain(sock: socket.socket, expected: int) -> int:
    """How many datagrams arrive: wait (bounded) while fewer than `expected` came, then a
    short extra wait for any surplus."""
    got, deadline = 0, time.monotonic() + WAIT_S
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01) if got < expected else 0.1)
        try:
            sock.recv(65536)
        except TimeoutError:
            return got
        got += 1


@pytest.mark.bpf
def test_counts_packets_and_bytes_per_destination_port(lab):
    pair, tc = lab
    plan = {5001: (7, 100), 5003: (3, 300), 5004: (1, 0)}
    run = send_and_receive(pair, tc, plan)
    for port, (count, size) in plan.items():
        assert run.counted[port] == PortCount(count, count * (size + HEADERS_BYTES), 0, 0), port
        assert run.arrived[port] == count, port
    assert run.tx_packets == sum(count for count, _ in plan.values())


@pytest.mark.bpf
def test_rate_limit_passes_the_burst_and_drops_the_rest(lab):
    pair, tc = lab
    # One token per 100 s: no refill can happen while 20 datagrams are sent back to back.
    tc.set_limit(bucket_config(5002, rate_per_s=0.01, burst=5))
    try:
        plan = {5002: (20, 50), 5001: (4, 10)}
        run = send_and_receive(pair, tc, plan)
        assert run.counted[5002] == PortCount(5, 5 * (50 + HEADERS_BYTES), 15, 15 * (50 + HEADERS_BYTES))
        assert run.arrived[5002] == 5
        assert run.counted[5001] == PortCount(4, 4 * (10 + HEADERS_BYTES), 0, 0)  # untouched
        assert run.arrived[5001] == 4
        assert run.tx_packets == 5 + 4  # TC_ACT_SHOT drops before the device: never sent
        assert tc.bucket().tokens == 0

        tc.set_limit(bucket_config(5002, rate_per_s=0.01, burst=5))  # a fresh, full bucket
        run = send_and_receive(pair, tc, {5002: (8, 50)})
        assert (run.counted[5002].packets, run.counted[5002].dropped_packets, run.arrived[5002]) == (5, 3, 5)
    finally:
        tc.clear_limit()
    run = send_and_receive(pair, tc, {5002: (8, 50)})
    assert (run.counted[5002].packets, run.counted[5002].dropped_packets, run.arrived[5002]) == (8, 0, 8)


@pytest.mark.bpf
def test_tokens_come_back_but_never_beyond_the_burst(lab):
    pair, tc = lab
    rate_per_s, burst = 10.0, 2
    tc.set_limit(bucket_config(5005, rate_per_s=rate_per_s, burst=burst))
    try:
        for attempt in range(2):
            if attempt:
                time.sleep(3 * burst / rate_per_s)  # earns 6 tokens: the bucket keeps only 2
            run = send_and_receive(pair, tc, {5005: (6, 20)})
            # A full bucket gives `burst`; only sends stalled for a whole token interval
            # (1/rate s) between them could earn more, and the test measured how long they took.
            assert burst <= run.counted[5005].packets <= burst + int(run.send_s * rate_per_s)
            assert run.counted[5005].packets + run.counted[5005].dropped_packets == 6
            assert run.arrived[5005] == run.counted[5005].packets
    finally:
        tc.clear_limit()


@pytest.mark.bpf
def test_second_program_on_the_same_interface_is_refused_cleanly(lab):
    pair, _ = lab
    with pytest.raises(LabError, match="clsact"):
        TcEgress(pair.ifname("a"), netns=pair.netns("a"))
    # (the conftest fixture checks that the refused program was unloaded)


@pytest.mark.bpf
def test_close_removes_the_qdisc_and_the_filter(lab):
    pair, _ = lab
    def qdiscs() -> str:
        return pair.run("b", ["tc", "qdisc", "show", "dev", pair.ifname("b")],
                        capture_output=True, text=True, check=True).stdout

    before = set(our_programs())
    with TcEgress(pair.ifname("b"), netns=pair.netns("b")):
        ours = set(our_programs()) - before
        assert "clsact" in qdiscs()
        filters = pair.run("b", ["tc", "filter", "show", "dev", pair.ifname("b"), "egress"],
                           capture_output=True, text=True, check=True).stdout
        assert "ns_tc_egress" in filters and "direct-action" in filters
    assert "clsact" not in qdiscs()
    # cls_bpf drops its program reference from a work queue after an RCU grace period
    # (tcf_queue_work), so the kernel frees it a moment after `tc qdisc del`.
    assert not still_loaded(ours, WAIT_S), "the filter's program outlived its qdisc"
