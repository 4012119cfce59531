"""NAT detection: the RFC 3489 decision table (pure), and detect_nat on loopback against our
server, honest or made to behave like a NAT/filter in one specific way."""

from __future__ import annotations

import itertools
import json
import socket

import pytest
from test_stun_server import ipv6_server  # noqa: F401  (a fixture: skips without IPv6 loopback)

from netsprint import cli
from netsprint.stun import attributes as attrs
from netsprint.stun.message import Attribute, Message, decode, encode
from netsprint.stun.nat import (ADDRESS_AND_PORT_DEPENDENT, ADDRESS_DEPENDENT, BEHAVIOURS,
                                ENDPOINT_INDEPENDENT, RFC3489_CLASSES, UNKNOWN, detect_nat,
                                rfc3489_class)
from netsprint.stun.server import StunServerCore, serving_in_thread

EI, AD, APD = ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT


# -- the decision table ----------------------------------------------------------------------

def rfc3489_in_words(mapping: str, filtering: str, no_nat: bool, blocked: bool) -> str:
    """RFC 3489 §10.1's flow chart restated: blocked first; without a NAT only an
    unfiltered path is open internet; behind a NAT any mapping that depends on the
    destination is symmetric, and an endpoint-independent one is a cone named by its
    filtering."""
    if blocked:
        return "udp-blocked"
    if no_nat:
        unfiltered = filtering == EI and mapping in (EI, UNKNOWN)
        return "open-internet" if unfiltered else "unknown"
    if mapping in (AD, APD):
        return "symmetric"
    cones = {EI: "full-cone", AD: "restricted-cone", APD: "port-restricted-cone"}
    return cones.get(filtering, "unknown") if mapping == EI else "unknown"


@pytest.mark.unit
@pytest.mark.parametrize("mapping, filtering, no_nat, blocked",
                         list(itertools.product(BEHAVIOURS, BEHAVIOURS, [False, True],
                                                [False, True])))
def test_decision_table_exhaustively(mapping, filtering, no_nat, blocked):
    got = rfc3489_class(mapping, filtering, mapped_equals_local=no_nat, udp_blocked=blocked)
    assert got in RFC3489_CLASSES
    assert got == rfc3489_in_words(mapping, filtering, no_nat, blocked)


@pytest.mark.unit
@pytest.mark.parametrize("mapping, filtering, no_nat, expected", [
    (EI, EI, True, "open-internet"), (EI, EI, False, "full-cone"),
    (EI, AD, False, "restricted-cone"), (EI, APD, False, "port-restricted-cone"),
    (APD, APD, False, "symmetric"), (AD, EI, False, "symmetric"),
    (EI, APD, True, "unknown"), (UNKNOWN, UNKNOWN, False, "unknown")])
def test_textbook_rows(mapping, filtering, no_nat, expected):
    assert rfc3489_class(mapping, filtering, mapped_equals_local=no_nat) == expected


@pytest.mark.unit
def test_table_rejects_unknown_words():
    with pytest.raises(ValueError):
        rfc3489_class("full-cone", EI, mapped_equals_local=False)


# -- detect_nat against our server on loopback -----------------------------------------------

@pytest.mark.net
def test_loopback_is_open_internet():
    with serving_in_thread(("127.0.0.1", 0), "127.0.0.2") as server:
        report = detect_nat(server.primary, local_ip="127.0.0.1")
    assert (report.mapping, report.filtering, report.nat_type) == (EI, EI, "open-internet")
    assert report.rfc5780 and report.reason is None
    assert report.mapped_address == report.local_address
    names = [test.name for test in report.tests]
    assert names == ["mapping I", "mapping II", "filtering I", "filtering II"]
    mapping_port = report.tests[0].local_address
    assert all(t.local_address != mapping_port for t in report.tests[2:])  # fresh socket
    assert report.tests[3].source_address == f"127.0.0.2:{server.primary[1] + 1}"


@pytest.mark.net
def test_server_without_alternate_address_gives_unknown_with_reason():
    with serving_in_thread(("127.0.0.1", 0)) as server:
        report = detect_nat(server.primary, local_ip="127.0.0.1")
    assert report.nat_type == "unknown" and not report.rfc5780
    assert "RFC 5780" in report.reason and "OTHER-ADDRESS" in report.reason
    assert report.mapped_address == report.local_address  # test I still answered


@pytest.mark.net
def test_an_ipv6_server_is_probed_from_an_ipv6_address(ipv6_server):
    # With the default local_ip (a wildcard) the probes bind to the address the kernel
    # picks towards the server, of the server's family: an IPv4 socket cannot reach ::1.
    report = detect_nat(ipv6_server.primary, timeout=1.0)
    assert report.tests[0].answered, report.reason
    assert report.local_address.ip == "::1"
    assert report.mapped_address == report.local_address
    assert not report.rfc5780 and "OTHER-ADDRESS" in report.reason  # one address only


@pytest.mark.net
def test_silence_is_udp_blocked():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: no answer, no ICMP error
        report = detect_nat(silent.getsockname(), local_ip="127.0.0.1", timeout=0.6, rto=0.2)
    assert report.nat_type == "udp-blocked" and report.mapped_address is None
    assert report.tests[0].answered is False


class AnswersFromTheAlternateIp(StunServerCore):
    """A misconfigured server: every answer leaves from (alternate IP, same port)."""

    def _fast_binding(self, tid, source, local):
        return None

    def _success(self, request, request_bytes, source, local, fingerprint):
        data, sender, destination = super()._success(request, request_bytes, source, local,
                                                     fingerprint)
        return data, self._flip(sender, True, False), destination


@pytest.mark.net
def test_an_answer_to_test_i_from_elsewhere_is_unknown_not_udp_blocked():
    with serving_in_thread(("127.0.0.1", 0), "127.0.0.2",
                           core_class=AnswersFromTheAlternateIp) as server:
        report = detect_nat(server.primary, local_ip="127.0.0.1", timeout=0.6, rto=0.2)
    assert report.tests[0].answered and report.tests[0].note
    assert report.nat_type == "unknown"  # UDP got through: not "udp-blocked"
    assert "came from" in report.reason


class IgnoresChangeRequest(StunServerCore):
    """A server that parses CHANGE-REQUEST but always answers from where it was asked."""

    def _success(self, request, request_bytes, source, local, fingerprint):
        stripped = Message(request.method, request.msg_class, request.transaction_id,
                           tuple(a for a in request.attributes
                                 if a.type != attrs.CHANGE_REQUEST))
        return super()._success(stripped, request_bytes, source, local, fingerprint)


class DropsChangedIp(StunServerCore):
    """Answers to change-IP requests get lost, as behind an address-dependent filter."""

    drop = staticmethod(lambda change: change.change_ip)

    def handle(self, data, source, local):
        reply = super().handle(data, source, local)
        change = decode(data).get(attrs.CHANGE_REQUEST) if reply is not None else None
        return None if change is not None and self.drop(change) else reply


class DropsAnyChange(DropsChangedIp):
    """... and change-port answers too: an address-and-port-dependent filter."""

    drop = staticmethod(lambda change: change.change_ip or change.change_port)


def _mapping_core(offset_of):
    """A core reporting mapped port = real port + offset_of(receiving socket's position),
    i.e. a NAT whose mapping depends on the destination in the way offset_of says."""

    class Core(StunServerCore):
        def _fast_binding(self, tid, source, local):
            return None

        def _success(self, request, request_bytes, source, local, fingerprint):
            data, sender, destination = super()._success(request, request_bytes, source,
                                                         local, fingerprint)
            message = decode(data)
            ip_changed, port_changed = local[0] != self.primary[0], local[1] != self.primary[1]
            mapped = (source[0], source[1] + 1000 + offset_of(ip_changed, port_changed))
            rewritten = tuple(Attribute(a.type, mapped) if a.type == attrs.XOR_MAPPED_ADDRESS
                              else a for a in message.attributes)
            return encode(Message(message.method, message.msg_class, message.transaction_id,
                                  rewritten)), sender, destination
    return Core


@pytest.mark.net
@pytest.mark.parametrize("core_class, filtering, nat_type", [
    (IgnoresChangeRequest, UNKNOWN, "unknown"),
    (DropsChangedIp, AD, "unknown"),
    (DropsAnyChange, APD, "unknown"),
])
def test_filtering_verdicts(core_class, filtering, nat_type):
    with serving_in_thread(("127.0.0.1", 0), "127.0.0.2", core_class=core_class) as server:
        report = detect_nat(server.primary, local_ip="127.0.0.1", timeout=0.6, rto=0.2)
    assert report.mapping == EI and report.filtering == filtering
    assert report.nat_type == nat_type
    if core_class is IgnoresChangeRequest:
        assert "CHANGE-REQUEST" in report.reason
    else:  # no NAT but a filter: RFC 3489's symmetric UDP firewall, named in the reason
        assert "firewall" in report.reason


@pytest.mark.net
@pytest.mark.parametrize("offset_of, mapping, nat_type", [
    (lambda ip, port: 0, EI, "full-cone"),
    (lambda ip, port: 1 if ip else 0, AD, "symmetric"),
    (lambda ip, port: (1 if ip else 0) + (2 if port else 0), APD, "symmetric"),
])
def test_mapping_verdicts(offset_of, mapping, nat_type):
    with serving_in_thread(("127.0.0.1", 0), "127.0.0.2",
                           core_class=_mapping_core(offset_of)) as server:
        report = detect_nat(server.primary, local_ip="127.0.0.1")
    assert report.mapping == mapping and report.filtering == EI
    assert report.nat_type == nat_type
    assert report.mapped_address != report.local_address


# -- the command -----------------------------------------------------------------------------

@pytest.mark.net
def test_nat_type_json_shape(capsys):
    with serving_in_thread(("127.0.0.1", 0), "127.0.0.2") as server:
        ip, port = server.primary
        assert cli.main(["nat-type", "--server", f"{ip}:{port}", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"server", "local_address", "mapped_address", "mapping", "filtering", "nat_type",
            "rfc5780", "reason"} <= set(printed)
    assert printed["server"] == f"{ip}:{port}"
    assert printed["nat_type"] == "open-internet" and printed["rfc5780"] is True
    assert printed["mapped_address"] == printed["local_address"]


@pytest.mark.net
def test_nat_type_table(capsys):
    with serving_in_thread(("127.0.0.1", 0)) as server:
        ip, port = server.primary
        assert cli.main(["nat-type", "--server", f"{ip}:{port}", "--timeout", "1"]) == 0
    out = capsys.readouterr().out
    assert "unknown" in out and "OTHER-ADDRESS" in out


@pytest.mark.unit
@pytest.mark.parametrize("bad", ["127.0.0.1", "localhost:3478", "127.0.0.1:0",
                                 "127.0.0.1:70000", ":3478", "1.2.3.4:x"])
def test_nat_type_rejects_bad_addresses(bad, capsys):
    assert cli.main(["nat-type", "--server", bad]) == 2
    err = capsys.readouterr().err
    assert "is not IP:PORT" in err and repr(bad) in err
