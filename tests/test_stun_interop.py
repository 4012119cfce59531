"""Our STUN code against Debian's coturn 4.6, both ways round, on loopback.

coturn's `turnserver` (RFC 5780 on 127.0.0.1 + 127.0.0.2) answers our client and our NAT
detector; coturn's `turnutils_stunclient` and `turnutils_natdiscovery -m -f` judge our
server. Starting, stopping (by PID) and parsing are `netsprint.lab.coturn`'s.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import needs_tool
from netsprint.lab.coturn import (ENDPOINT_INDEPENDENT, free_port_pair, run_natdiscovery,
                                   start_turnserver)
from netsprint.stun.client import binding_request
from netsprint.stun.nat import detect_nat
from netsprint.stun.server import serving_in_thread

pytestmark = pytest.mark.interop

IPS = ("127.0.0.1", "127.0.0.2")


@pytest.fixture
def coturn():
    needs_tool("turnserver", "coturn")
    with start_turnserver(list(IPS), free_port_pair(list(IPS))) as server:
        yield server


@pytest.fixture
def our_server():
    with serving_in_thread(("127.0.0.1", 0), "127.0.0.2") as server:
        yield server


def test_our_client_gets_the_mapped_address_from_coturn(coturn):
    result = binding_request(coturn.address, local_addr=("127.0.0.1", 0), timeout=3)
    assert result is not None and result.ok
    assert result.mapped_address == result.local_address
    assert result.source_address == coturn.address
    assert result.other_address == ("127.0.0.2", coturn.alt_port)


def test_our_detector_against_coturn(coturn):
    report = detect_nat(coturn.address, local_ip="127.0.0.1")
    assert report.rfc5780
    assert (report.mapping, report.filtering, report.nat_type) == (
        "endpoint-independent", "endpoint-independent", "open-internet")


def test_coturn_stunclient_against_our_server(our_server):
    tool = needs_tool("turnutils_stunclient", "coturn")
    ip, port = our_server.primary
    done = subprocess.run([tool, "-p", str(port), ip], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "UDP reflexive addr: 127.0.0.1:" in done.stdout
    # its RFC 5780 round: the change-request answer came from our other socket
    assert f"Response origin: : 127.0.0.2:{port + 1}" in done.stdout
    assert our_server.counters()["requests"] >= 2


def test_coturn_natdiscovery_against_our_server(our_server):
    needs_tool("turnutils_natdiscovery", "coturn")
    ip, port = our_server.primary
    verdict = run_natdiscovery(ip, port, timeout=30)
    assert verdict.rfc5780
    assert verdict.mapping == ENDPOINT_INDEPENDENT
    assert verdict.filtering == ENDPOINT_INDEPENDENT
