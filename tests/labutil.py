"""Fixtures and helpers for the NAT lab tests (import the fixtures into a test module).

Every lab a fixture builds is torn down by its `with` block, also when the test fails, and
the fixture then checks the root namespace shows nothing of it: no namespace, veth, bridge or
nft table (`assert_no_traces`). Module-scoped fixtures cannot use the
function-scoped `needs_netns`, so `require_lab()` / `require_coturn()` apply conftest's
same checks (and the same REQUIRE_ALL rule, since they skip through pytest).
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass

import pytest
from conftest import have_netns, is_root, needs_tool

from netsprint.lab.coturn import start_turnserver
from netsprint.lab.topology import STUN_PORT, NatLab

# Names a lab gives its interfaces and nft tables: none may ever show up in the root netns.
LAB_LINK_NAMES = {"br0", "wan", "lan", "port-a", "port-b"}
LAB_TABLE_NAMES = {"netsprint_nat", "netsprint_loss", "netsprint_cut"}
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; Python's socket module does not export it


def require_lab() -> None:
    """Skip unless this machine can build namespaces (root + iproute2)."""
    if not is_root():
        pytest.skip("needs root (run `sudo make test`)")
    if not have_netns():
        pytest.skip("network namespaces unavailable: install iproute2 and run as root")
    needs_tool("nft", "nftables")


def require_coturn() -> None:
    needs_tool("turnserver", "coturn")
    needs_tool("turnutils_natdiscovery", "coturn")


@pytest.fixture
def lab():
    """A fresh lab (port-restricted on both sides), removed after the test."""
    require_lab()
    with NatLab() as built:
        yield built
    assert_no_traces(built.name)


@dataclass
class CoturnLab:
    """A lab with coturn's turnserver listening on both STUN addresses of its internet."""

    lab: NatLab
    port: int = STUN_PORT


@pytest.fixture(scope="module")
def coturn_lab(tmp_path_factory):
    """One lab and one turnserver for a whole module: tests switch NAT types with
    `set_nat`, which costs milliseconds, instead of building a lab each."""
    require_lab()
    require_coturn()
    log_dir = tmp_path_factory.mktemp("turnserver")
    with NatLab() as built:
        with start_turnserver(list(built.stun_addresses), STUN_PORT,
                              netns=built.netns("internet"), log_dir=log_dir):
            yield CoturnLab(built)
    assert_no_traces(built.name)


# --- looking at the host ----------------------------------------------------------------------

@dataclass(frozen=True)
class HostSnapshot:
    """What the root namespace shows of labs: namespace names, link names, nft tables."""

    namespaces: frozenset[str]
    links: frozenset[str]
    nft_tables: frozenset[str]


def _lines(argv: list[str]) -> list[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True,
                          timeout=20).stdout.splitlines()


def host_snapshot() -> HostSnapshot:
    namespaces = {line.split()[0] for line in _lines(["ip", "netns", "list"]) if line.strip()}
    links = {line.split(":")[1].strip().split("@")[0] for line in _lines(["ip", "-o", "link"])}
    tables = {line.split()[-1] for line in _lines(["nft", "list", "tables"]) if line.strip()}
    return HostSnapshot(frozenset(namespaces), frozenset(links), frozenset(tables))


def lab_traces(snapshot: HostSnapshot, lab_name: str) -> list[str]:
    """Everything in `snapshot` that belongs to a lab (by its names); empty means clean.

    Other test runs may add their own namespaces and links at the same time, so the check
    looks for this lab's names rather than comparing whole listings.
    """
    traces = [f"netns {ns}" for ns in snapshot.namespaces if ns.startswith(f"{lab_name}-")]
    traces += [f"link {name}" for name in snapshot.links & LAB_LINK_NAMES]
    traces += [f"nft table {name}" for name in snapshot.nft_tables & LAB_TABLE_NAMES]
    return sorted(traces)


def assert_no_traces(lab_name: str) -> None:
    """The root namespace shows nothing of lab `lab_name` (and no lab link or table)."""
    traces = lab_traces(host_snapshot(), lab_name)
    assert traces == [], f"lab {lab_name!r} left behind: {traces}"


# --- traffic ------------------------------------------------------------------------------------

def udp_receiver(lab: NatLab, node: str, ip: str, port: int = 0,
                 rcvbuf_bytes: int = 4 << 20) -> socket.socket:
    """A bound UDP socket in `node`; a big receive buffer so a burst is not dropped there."""
    sock = lab.socket(node)
    # SO_RCVBUFFORCE (root) lifts net.core.rmem_max: the count must measure the router's
    # drops, not the socket's.
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf_bytes)
    sock.bind((ip, port))
    return sock


def send_burst(lab: NatLab, node: str, target: tuple[str, int], count: int) -> None:
    with lab.socket(node) as sender:
        for seq in range(count):
            sender.sendto(seq.to_bytes(4, "big"), target)


def drain(sock: socket.socket, quiet: float = 0.3, limit: float = 5.0) -> list[tuple[bytes, tuple]]:
    """Every datagram waiting on `sock`, until it stays quiet for `quiet` s (bounded)."""
    got = []
    sock.settimeout(quiet)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            got.append(sock.recvfrom(2048))
        except TimeoutError:
            break
    return got
