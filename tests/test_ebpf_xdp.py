"""The XDP source blocklist: LPM keys (pure), the struct mirrors (gcc), and the program on a
veth between two namespaces, checked from both sides.

Frames are built with scapy and sent through a packet socket in namespace a, with sources
from the documentation ranges only; namespace b runs the XDP program on its veth end and a
UDP socket behind it. For every test the sender knows what it sent per source, the program
says what it passed and dropped (per action and per trie entry), and the socket in b says
what arrived.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections import Counter

import pytest
from bpfutil import assert_mirror_matches, our_programs, still_loaded
from conftest import have_bcc, have_netns
from hypothesis import given
from hypothesis import strategies as st

from netsprint.ebpf.xdp.loader import (HEADER, XdpBlocklist, XdpCounter, XdpLpmKey, XdpRule,
                                       cidr_of, longest_match, lpm_key)
from netsprint.lab.vethpair import VethPair

WAIT_S = 3.0  # bound on every wait for packets; the tests never assert how long it took
PAYLOAD = b"netsprint-xdp"
FRAME_BYTES = 14 + 20 + 8 + len(PAYLOAD)  # Ethernet + IPv4 + UDP headers + payload

# The rules the module's program starts with: nested prefixes, the longest wins.
RULES = {"203.0.113.0/24": "drop", "203.0.113.128/25": "allow", "203.0.113.192/26": "drop",
         "192.0.2.0/25": "drop"}
# Ground truth written out by hand (not computed by the code under test):
# source -> (packets to send, the rule that decides it, arrives?)
TRAFFIC = {
    "203.0.113.5": (3, "203.0.113.0/24", False),
    "203.0.113.130": (4, "203.0.113.128/25", True),
    "203.0.113.200": (5, "203.0.113.192/26", False),
    "192.0.2.10": (2, "192.0.2.0/25", False),
    "192.0.2.200": (6, None, True),
    "198.51.100.1": (3, None, True),
}


# --- pure: keys and longest-prefix match ------------------------------------------------------

@pytest.mark.unit
def test_lpm_key_is_prefixlen_then_network_order_address():
    assert bytes(lpm_key("203.0.113.0/24")) == bytes([24, 0, 0, 0, 203, 0, 113, 0])
    assert bytes(lpm_key("192.0.2.7/32")) == bytes([32, 0, 0, 0, 192, 0, 2, 7])
    assert bytes(lpm_key("0.0.0.0/0")) == bytes(8)


@pytest.mark.unit
def test_lpm_key_refuses_host_bits_and_non_ipv4():
    with pytest.raises(ValueError):
        lpm_key("203.0.113.7/24")
    with pytest.raises(ValueError):
        lpm_key("2001:db8::/32")


@pytest.mark.unit
@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_cidr_of_inverts_lpm_key(address, prefixlen):
    network = ipaddress.IPv4Network((address, prefixlen), strict=False)
    assert cidr_of(lpm_key(str(network))) == str(network)


@pytest.mark.unit
def test_longest_match_picks_the_longest_containing_prefix():
    for source, (_, rule, _) in TRAFFIC.items():
        assert longest_match(RULES, source) == rule, source
    assert longest_match([], "192.0.2.1") is None


@pytest.mark.unit
@pytest.mark.parametrize("mirror, struct", [(XdpLpmKey, "struct xdp_lpm_key"),
                                            (XdpRule, "struct xdp_rule"),
                                            (XdpCounter, "struct xdp_counter")])
def test_ctypes_mirrors_match_the_header(mirror, struct):
    assert_mirror_matches(mirror, HEADER, struct)


# --- on a veth ----------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["generic", "native"])
def lab(request):
    """One veth pair and one loaded program per XDP mode, shared by the module's bpf tests."""
    if not (have_netns() and have_bcc()):
        pytest.skip("needs root, iproute2 network namespaces and bcc (`make provision`)")
    with VethPair("ns-xdp") as pair:
        with XdpBlocklist(pair.ifname("b"), netns=pair.netns("b"), mode=request.param) as xdp:
            for cidr, action in RULES.items():
                (xdp.block if action == "drop" else xdp.allow)(cidr)
            yield pair, xdp


def frame(pair: VethPair, source: str, port: int) -> bytes:
    from scapy.all import IP, UDP, Ether, Raw

    return bytes(Ether(src=pair.mac("a"), dst=pair.mac("b"))
                 / IP(src=source, dst=pair.address("b")) / UDP(sport=40000, dport=port)
                 / Raw(PAYLOAD))


def send_from_a(pair: VethPair, traffic: dict[str, int], port: int) -> Counter:
    """Send `count` frames per source out of a's veth; what was sent, per source."""
    sent: Counter = Counter()
    for source, count in traffic.items():
        sent[source] += pair.send_frames("a", [frame(pair, source, port)] * count)
    return sent


def arrivals(receiver: socket.socket, expected: int) -> Counter:
    """Sources of the datagrams that reach `receiver`: wait (bounded) for `expected`, then
    drain a little longer to catch any that should not have come."""
    got: Counter = Counter()
    deadline = time.monotonic() + WAIT_S
    while True:
        wait = deadline - time.monotonic() if sum(got.values()) < expected else 0.2
        receiver.settimeout(max(wait, 0.01))
        try:
            data, (source, _) = receiver.recvfrom(2048)
        except TimeoutError:
            return got
        assert data == PAYLOAD
        got[source] += 1


def settled(xdp: XdpBlocklist, before, total: int):
    """The program's counters once it has judged `total` more packets (bounded wait)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        now = xdp.counters()
        judged = sum(now.actions.values()) - sum(before.actions.values())
        if judged >= total or time.monotonic() > deadline:
            return now
        time.sleep(0.02)


def run_traffic(lab, traffic: dict[str, int], port: int):
    """Send `traffic` from a; (sent per source, tx packets a's veth counted, XDP counters
    before and after, arrivals per source in b)."""
    pair, xdp = lab
    with pair.socket("b") as receiver:
        receiver.bind(("0.0.0.0", port))
        before, link_before = xdp.counters(), pair.link_stats("a")
        sent = send_from_a(pair, traffic, port)
        tx_packets = pair.link_stats("a")["tx_packets"] - link_before["tx_packets"]
        after = settled(xdp, before, sum(sent.values()))
        expected = sum(n for source, n in traffic.items() if TRAFFIC[source][2])
        got = arrivals(receiver, expected)
    return sent, tx_packets, before, after, got


def delta(after: dict, before: dict) -> dict:
    return {key: after[key] - before.get(key, 0) for key in after}


def rule_packets(counters) -> dict[str, int]:
    return {cidr: packets for cidr, (_, packets) in counters.rules.items()}


@pytest.mark.bpf
def test_blocked_prefixes_are_dropped_and_counted_others_arrive(lab):
    traffic = {source: count for source, (count, _, _) in TRAFFIC.items()}
    sent, tx_packets, before, after, got = run_traffic(lab, traffic, port=7001)

    # Sender: every frame left a's veth, and the kernel's own counter agrees.
    assert sent == Counter(traffic)
    assert tx_packets == sum(traffic.values())
    # Receiver's program: drops and passes by action, and per deciding rule.
    allowed = {s: n for s, (n, _, arrives) in TRAFFIC.items() if arrives}
    blocked = {s: n for s, (n, _, arrives) in TRAFFIC.items() if not arrives}
    actions = delta(after.actions, before.actions)
    assert actions["drop"] == sum(blocked.values())
    assert actions["pass"] == sum(allowed.values())
    assert delta(after.action_bytes, before.action_bytes)["drop"] == sum(blocked.values()) * FRAME_BYTES
    per_rule = delta(rule_packets(after), rule_packets(before))
    for cidr in RULES:
        expected = sum(n for n, rule, _ in TRAFFIC.values() if rule == cidr)
        assert per_rule[cidr] == expected, f"{cidr}: counted {per_rule[cidr]}, decided {expected}"
    # Receiver's socket: exactly the allowed sources arrived, each as often as it was sent.
    assert got == Counter(allowed)


@pytest.mark.bpf
def test_unblock_and_block_change_what_arrives(lab):
    pair, xdp = lab
    try:
        xdp.unblock("203.0.113.192/26")  # .200 now falls to the /25 allow entry
        xdp.unblock("192.0.2.0/25")
        assert "192.0.2.0/25" not in xdp.rules()
        traffic = {"203.0.113.200": 4, "192.0.2.10": 2}
        _, _, before, after, got = run_traffic(lab, traffic, port=7002)
        assert got == Counter(traffic)
        assert delta(after.actions, before.actions)["drop"] == 0
        assert delta(rule_packets(after), rule_packets(before))["203.0.113.128/25"] == 4

        xdp.block("198.51.100.1/32")  # the sender's own address: nothing of it arrives
        _, _, before, after, got = run_traffic(lab, {"198.51.100.1": 3}, port=7003)
        assert got == Counter()
        assert delta(after.actions, before.actions)["drop"] == 3
        assert after.rules["198.51.100.1/32"] == ("drop", 3)
    finally:
        for cidr in ("203.0.113.192/26", "192.0.2.0/25"):
            xdp.block(cidr)
        if "198.51.100.1/32" in xdp.rules():
            xdp.unblock("198.51.100.1/32")


@pytest.mark.bpf
def test_unblock_of_a_missing_rule_is_a_key_error(lab):
    _, xdp = lab
    with pytest.raises(KeyError):
        xdp.unblock("198.51.100.0/24")


@pytest.mark.bpf
def test_attached_in_the_requested_mode_and_only_on_b(lab):
    pair, xdp = lab
    shown = pair.run("b", ["ip", "-d", "link", "show", "dev", pair.ifname("b")],
                     capture_output=True, text=True, check=True).stdout
    assert ("xdpgeneric" if xdp.mode == "generic" else "xdp ") in shown
    assert "ns_xdp_blocklis" in shown  # the kernel keeps 15 characters of the name
    other_end = pair.run("a", ["ip", "link", "show", "dev", pair.ifname("a")],
                         capture_output=True, text=True, check=True).stdout
    assert "prog/xdp" not in other_end


@pytest.mark.bpf
def test_close_detaches_and_survives_a_deleted_namespace(needs_bcc, needs_netns):
    with VethPair("ns-xdpc") as pair:
        with XdpBlocklist(pair.ifname("b"), ["192.0.2.0/24"], netns=pair.netns("b")):
            pass
        shown = pair.run("b", ["ip", "link", "show", "dev", pair.ifname("b")],
                         capture_output=True, text=True, check=True).stdout
        assert "prog/xdp" not in shown, shown
        before = set(our_programs())
        late = XdpBlocklist(pair.ifname("b"), netns=pair.netns("b"))
        ours = set(our_programs()) - before
    late.close()  # the namespace (and the attachment) went first: closing still succeeds
    # The kernel destroys a deleted namespace's devices later, in a work queue (cleanup_net),
    # and the device holds the XDP program until then.
    assert not still_loaded(ours, WAIT_S), "the program outlived its namespace"


@pytest.mark.bpf
def test_unknown_interface_fails_cleanly(needs_bcc, needs_netns):
    from netsprint.ebpf.loader import BpfLoadError

    with VethPair("ns-xdpe") as pair:
        with pytest.raises(BpfLoadError, match="attaching"):
            XdpBlocklist("no-such-if", netns=pair.netns("b"))
