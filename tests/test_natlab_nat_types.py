"""Each NAT type's nftables recipe, judged by an outside referee: coturn's natdiscovery.

The unit tests read natdiscovery output captured in this lab (coturn 4.6.1); the lab tests
run turnserver in the lab's internet namespace on both STUN addresses and
`turnutils_natdiscovery -m -f` from behind the NAT.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from labutil import coturn_lab  # noqa: F401  (a fixture)
from labutil import require_coturn

from netsprint.lab.coturn import (
    ADDRESS_AND_PORT_DEPENDENT, ADDRESS_DEPENDENT, ENDPOINT_INDEPENDENT, UNKNOWN,
    binding_answered, free_port_pair, parse_natdiscovery, run_natdiscovery, start_turnserver,
    terminate, wait_for_binding, wait_until_answering,
)
from netsprint.lab.nat_types import EXPECTED_BEHAVIOUR, NAT_TYPES, Router, loss_script, nft_script
from netsprint.stun.server import serving_in_thread


# --- the parser, on captured output -------------------------------------------------------

NO_NAT_OUTPUT = """
-= Mapping Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.1:3478
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 198.51.100.2:50360
0: : IPv4. Local addr: : 198.51.100.2:50360

========================================
No NAT! (Endpoint Independent Mapping)
========================================

========================================
RFC 5780 response 2
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.2:3478
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 198.51.100.2:50360
0: : IPv4. Local addr: : 198.51.100.2:50360

========================================
NAT with Endpoint Independent Mapping!
========================================

-= Filtering Behavior Discovery =-

========================================
RFC 5780 response 3
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.1:3478
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 198.51.100.2:37933
0: : IPv4. Local addr: : 198.51.100.2:37933

========================================
No NAT! (Endpoint Independent Mapping)
========================================

========================================
RFC 5780 response 4
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.2:3479
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 198.51.100.2:37933
0: : IPv4. Local addr: : 198.51.100.2:37933

========================================
NAT with Endpoint Independent Filtering!
========================================
"""

RESTRICTED_OUTPUT = """
-= Mapping Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.1:3478
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 203.0.113.10:50903
0: : IPv4. Local addr: : 0.0.0.0:50903

========================================
RFC 5780 response 2
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.2:3478
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 203.0.113.10:50903
0: : IPv4. Local addr: : 0.0.0.0:50903

========================================
NAT with Endpoint Independent Mapping!
========================================

-= Filtering Behavior Discovery =-

========================================
RFC 5780 response 3
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.1:3478
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 203.0.113.10:46227
0: : IPv4. Local addr: : 0.0.0.0:46227
STUN receive timeout..

========================================
RFC 5780 response 4
No ALG: Mapped == XOR-Mapped
3: : IPv4. Response origin: : 203.0.113.1:3479
3: : IPv4. Other addr: : 203.0.113.2:3479
3: : IPv4. UDP reflexive addr: 203.0.113.10:46227
3: : IPv4. Local addr: : 0.0.0.0:46227

========================================
NAT with Address Dependent Filtering!
========================================
"""

SYMMETRIC_OUTPUT = """
-= Mapping Behavior Discovery =-

========================================
RFC 5780 response 1
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.1:3478
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 203.0.113.10:34926
0: : IPv4. Local addr: : 0.0.0.0:36494

========================================
RFC 5780 response 2
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.2:3478
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 203.0.113.10:14561
0: : IPv4. Local addr: : 0.0.0.0:36494

========================================
RFC 5780 response 3
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.2:3479
0: : IPv4. Other addr: : 203.0.113.2:3478
0: : IPv4. UDP reflexive addr: 203.0.113.10:4456
0: : IPv4. Local addr: : 0.0.0.0:36494

========================================
NAT with Address and Port Dependent Mapping!
========================================

-= Filtering Behavior Discovery =-

========================================
RFC 5780 response 4
No ALG: Mapped == XOR-Mapped
0: : IPv4. Response origin: : 203.0.113.1:3478
0: : IPv4. Other addr: : 203.0.113.2:3479
0: : IPv4. UDP reflexive addr: 203.0.113.10:23077
0: : IPv4. Local addr: : 0.0.0.0:60133
STUN receive timeout..
STUN receive timeout..

========================================
NAT with Address and Port Dependent Filtering!
========================================
"""

# A server without RFC 5780 (one address): answers, but no OTHER-ADDRESS, so no verdict.
NO_RFC5780_OUTPUT = """
-= Mapping Behavior Discovery =-
0: : IPv4. UDP reflexive addr: 203.0.113.10:40001
0: : IPv4. Local addr: : 0.0.0.0:40001

-= Filtering Behavior Discovery =-
0: : IPv4. UDP reflexive addr: 203.0.113.10:40002
0: : IPv4. Local addr: : 0.0.0.0:40002
"""


@pytest.mark.unit
@pytest.mark.parametrize("output, mapping, filtering, nat_present, mapped, local", [
    (NO_NAT_OUTPUT, ENDPOINT_INDEPENDENT, ENDPOINT_INDEPENDENT, False,
     ("198.51.100.2", 50360), ("198.51.100.2", 50360)),
    (RESTRICTED_OUTPUT, ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, True,
     ("203.0.113.10", 50903), ("0.0.0.0", 50903)),
    (SYMMETRIC_OUTPUT, ADDRESS_AND_PORT_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT, True,
     ("203.0.113.10", 34926), ("0.0.0.0", 36494)),
], ids=["no-nat", "restricted", "symmetric"])
def test_parser_reads_captured_verdicts(output, mapping, filtering, nat_present, mapped, local):
    found = parse_natdiscovery(output)
    assert (found.mapping, found.filtering) == (mapping, filtering)
    assert found.nat_present is nat_present and found.rfc5780
    # The first response's addresses (later ones carry other ports).
    assert (found.mapped_address, found.local_address) == (mapped, local)
    assert found.raw == output


@pytest.mark.unit
@pytest.mark.parametrize("output", [NO_RFC5780_OUTPUT, "", "garbage\n-= nonsense =-\n"])
def test_parser_says_unknown_without_a_verdict(output):
    found = parse_natdiscovery(output)
    assert (found.mapping, found.filtering) == (UNKNOWN, UNKNOWN)
    assert found.nat_present is None and not found.rfc5780


@pytest.mark.unit
def test_parser_keeps_sections_apart():
    # Only the mapping half: the filtering verdict must not be borrowed from elsewhere.
    mapping_only = SYMMETRIC_OUTPUT.split("-= Filtering")[0]
    found = parse_natdiscovery(mapping_only)
    assert (found.mapping, found.filtering) == (ADDRESS_AND_PORT_DEPENDENT, UNKNOWN)


# --- the recipes as text (what the docs promise) ------------------------------------------

ROUTER = Router(wan_if="wan", lan_if="lan", peer_ip="198.51.100.2")


@pytest.mark.unit
@pytest.mark.parametrize("nat_type", NAT_TYPES)
def test_every_script_replaces_the_table_in_one_transaction(nat_type):
    script = nft_script(nat_type, ROUTER)
    assert script.startswith("table ip netsprint_nat\ndelete table ip netsprint_nat\n")
    translates = "masquerade" in script
    assert translates == (nat_type != "none")
    assert ("policy drop" in script) == (nat_type != "none")
    assert ("dnat to 198.51.100.2" in script) == (nat_type in ("full-cone", "restricted"))


@pytest.mark.unit
def test_only_symmetric_randomises_ports():
    assert "masquerade random" in nft_script("symmetric", ROUTER)
    assert all("random" not in nft_script(t, ROUTER) for t in NAT_TYPES if t != "symmetric")


@pytest.mark.unit
def test_loss_script_bounds():
    assert "mod 1000 < 125 " in loss_script(12.5)
    assert "numgen" not in loss_script(100) and "drop" in loss_script(100)
    assert "chain" not in loss_script(0)
    with pytest.raises(ValueError):
        loss_script(101)
    with pytest.raises(ValueError):
        nft_script("cone-ish", ROUTER)


# --- coturn against each recipe ---------------------------------------------------------------

def discover(setup, side: str = "a", *, with_local_ip: bool = True):
    lab = setup.lab
    peer = f"peer-{side}"
    local_ip = lab.address(peer) if with_local_ip else None
    started = time.monotonic()
    found = run_natdiscovery(lab.stun_addresses[0], setup.port, netns=lab.netns(peer),
                             local_ip=local_ip, timeout=30)
    return found, time.monotonic() - started


@pytest.mark.parametrize("nat_type", NAT_TYPES)
@pytest.mark.lab
@pytest.mark.interop
def test_coturn_sees_the_designed_behaviour(coturn_lab, nat_type, record_property):
    coturn_lab.lab.set_nat("a", nat_type)
    found, elapsed = discover(coturn_lab)
    record_property("natdiscovery_seconds", round(elapsed, 2))
    assert (found.mapping, found.filtering) == EXPECTED_BEHAVIOUR[nat_type], found.raw
    own_ip = coturn_lab.lab.address("peer-a")
    if nat_type == "none":
        assert found.nat_present is False
        assert found.mapped_address[0] == own_ip
    else:
        assert found.nat_present is True
        assert found.mapped_address[0] == coturn_lab.lab.address("nat-a")


@pytest.mark.lab
@pytest.mark.interop
def test_sides_are_independent(coturn_lab):
    lab = coturn_lab.lab
    lab.set_nat("a", "symmetric")
    lab.set_nat("b", "full-cone")
    try:
        found, _ = discover(coturn_lab, "b")
        assert (found.mapping, found.filtering) == EXPECTED_BEHAVIOUR["full-cone"], found.raw
        assert found.mapped_address[0] == lab.address("nat-b")
    finally:
        lab.set_nat("b", "port-restricted")


@pytest.mark.interop
def test_turnserver_is_stopped_even_when_the_body_raises(tmp_path):
    require_coturn()
    ips = ["127.0.0.1", "127.0.0.2"]
    with pytest.raises(RuntimeError, match="boom"):
        with start_turnserver(ips, free_port_pair(ips), log_dir=tmp_path) as server:
            wait_for_binding(server, timeout=2)
            raise RuntimeError("boom")
    assert server.process.poll() is not None  # stopped by PID on the way out
    assert "Coturn" in server.log_text()  # a log dir we passed in is kept


@pytest.mark.net
def test_readiness_probe_tells_silence_from_an_answer():
    ips = ["127.0.0.1", "127.0.0.2"]
    port = free_port_pair(ips)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        assert not binding_answered(sock, ("127.0.0.1", port))  # nobody there: refused
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
            mute.bind(("127.0.0.1", port))  # there, but never answers: silence
            assert not binding_answered(sock, ("127.0.0.1", port))
        with serving_in_thread(("127.0.0.1", 0)) as server:
            assert binding_answered(sock, server.primary)


# --- our STUN server, behind each NAT, against coturn's client -------------------------------

@pytest.mark.parametrize("nat_type", NAT_TYPES)
@pytest.mark.lab
@pytest.mark.interop
def test_our_stun_server_gives_coturn_the_same_verdict(coturn_lab, nat_type, tmp_path):
    lab = coturn_lab.lab
    lab.set_nat("a", nat_type)
    primary, alternate = lab.stun_addresses
    port = 3500  # beside coturn's 3478/3479 on the same two addresses
    stderr_path = tmp_path / "stun-server.stderr"
    with open(stderr_path, "wb") as stderr:
        ours = lab.popen("internet", [sys.executable, "-m", "netsprint", "stun-server",
                                      "--listen", f"{primary}:{port}", "--alt", alternate],
                         stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_until_answering((primary, port), ours, netns=lab.netns("internet"),
                             name="netsprint stun-server", log=stderr_path.read_text)
        # Both discoveries at once (different local ports, so different NAT flows): the
        # unanswered tests' 3 s timeouts overlap instead of adding up.
        with ThreadPoolExecutor(max_workers=2) as pool:
            ours_job = pool.submit(run_natdiscovery, primary, port, netns=lab.netns("peer-a"),
                                   local_ip=lab.address("peer-a"), timeout=30)
            coturn_job = pool.submit(discover, coturn_lab)
            against_ours, (against_coturn, _) = ours_job.result(), coturn_job.result()
    finally:
        terminate(ours)
    assert (against_ours.mapping, against_ours.filtering) == \
        (against_coturn.mapping, against_coturn.filtering), against_ours.raw
    assert (against_ours.mapping, against_ours.filtering) == EXPECTED_BEHAVIOUR[nat_type]
