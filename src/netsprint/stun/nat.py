"""NAT behaviour discovery (RFC 5780 §4.3, §4.4) and the RFC 3489 class it implies.

Mapping (§4.3), all from ONE local socket, comparing the mapped addresses:
    I    to the primary address                      -> M1 (and OTHER-ADDRESS)
    II   to (alternate IP, primary port)             -> M2; M2 == M1: endpoint-independent
    III  to (alternate IP, alternate port)           -> M3; M3 == M2: address-dependent,
                                                        else address-and-port-dependent
Filtering (§4.4), from a FRESH socket that has only talked to the primary address (the
mapping tests sent to the alternate IP, which would open an address-restricted filter for
it and make a restricted NAT look like a full cone):
    I    to the primary address (makes the mapping)
    II   CHANGE-REQUEST change IP and port -> an answer from OTHER-ADDRESS: endpoint-independent
    III  CHANGE-REQUEST change port only   -> an answer from (primary IP, alt port):
                                              address-dependent; none: address-and-port-dependent
An answer counts only if it really came from the address asked for (the socket's view of
the source, with RESPONSE-ORIGIN recorded beside it): an answer from the primary address
means the server ignored CHANGE-REQUEST, which would otherwise read as "endpoint-
independent" through any NAT.

Per-test timeout: 3 s by default, not RFC 8489's 39.5 s. In the filtering tests silence is
an expected answer (the NAT dropped it), so each silent test would cost 39.5 s; 3 s still
covers three transmissions (0, 0.5, 1.5 s) at RTO 0.5 s. A reply slower than that is
taken as filtered: on a lossy or slow path, raise `timeout`.

Limits: one server and one run; a NAT whose behaviour varies (port preservation until a
collision, timers) can be classed wrongly; hairpinning and binding lifetime (§4.5, §4.6)
are not tested.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field

from netsprint.reactor.addresses import short_addr
from netsprint.stun.attributes import TransportAddress
from netsprint.stun.client import BindingResult, binding_request, open_udp_socket, socket_family
from netsprint.stun.transaction import DEFAULT_RTO

ENDPOINT_INDEPENDENT = "endpoint-independent"
ADDRESS_DEPENDENT = "address-dependent"
ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"
UNKNOWN = "unknown"
BEHAVIOURS = (ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT, UNKNOWN)

RFC3489_CLASSES = ("open-internet", "full-cone", "restricted-cone", "port-restricted-cone",
                   "symmetric", "udp-blocked", "unknown")

DEFAULT_TEST_TIMEOUT = 3.0

# The RFC 3489 class from (mapping, filtering). Columns: filtering behaviour, in BEHAVIOURS
# order: endpoint-independent, address-dependent, address-and-port-dependent, unknown.
_BEHIND_NAT = {
    ENDPOINT_INDEPENDENT:       ("full-cone", "restricted-cone", "port-restricted-cone", "unknown"),
    ADDRESS_DEPENDENT:          ("symmetric", "symmetric", "symmetric", "symmetric"),
    ADDRESS_AND_PORT_DEPENDENT: ("symmetric", "symmetric", "symmetric", "symmetric"),
    UNKNOWN:                    ("unknown", "unknown", "unknown", "unknown"),
}
# No NAT (the mapped address is the local one): only unfiltered is "open internet"; a
# filtering firewall is RFC 3489's "symmetric UDP firewall", which has no class here, and a
# mapping that changes without a NAT contradicts itself.
_NO_NAT = {
    ENDPOINT_INDEPENDENT:       ("open-internet", "unknown", "unknown", "unknown"),
    ADDRESS_DEPENDENT:          ("unknown", "unknown", "unknown", "unknown"),
    ADDRESS_AND_PORT_DEPENDENT: ("unknown", "unknown", "unknown", "unknown"),
    UNKNOWN:                    ("open-internet", "unknown", "unknown", "unknown"),
}


def rfc3489_class(mapping: str, filtering: str, *, mapped_equals_local: bool,
                  udp_blocked: bool = False) -> str:
    """The RFC 3489 NAT class for RFC 5780 behaviours (a pure table lookup)."""
    for name, value in (("mapping", mapping), ("filtering", filtering)):
        if value not in BEHAVIOURS:
            raise ValueError(f"{name} must be one of {BEHAVIOURS}, not {value!r}")
    if udp_blocked:
        return "udp-blocked"
    table = _NO_NAT if mapped_equals_local else _BEHIND_NAT
    return table[mapping][BEHAVIOURS.index(filtering)]


def _text(address: tuple | None) -> str | None:
    return None if address is None else short_addr(address)


@dataclass(frozen=True)
class NatTestRecord:
    """One Binding test: what was asked, and what (if anything) came back."""

    name: str
    destination: str
    change_ip: bool
    change_port: bool
    local_address: str
    answered: bool
    source_address: str | None = None
    mapped_address: str | None = None
    response_origin: str | None = None
    other_address: str | None = None
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class NatReport:
    """The outcome of `detect_nat`; addresses as (ip, port) tuples, None when unknown."""

    server: TransportAddress
    mapped_address: TransportAddress | None
    local_address: TransportAddress | None
    mapping: str
    filtering: str
    nat_type: str
    reason: str | None
    rfc5780: bool
    tests: list[NatTestRecord] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON shape `netsprint nat-type --json` prints (and the lab parses)."""
        return {"server": _text(self.server), "local_address": _text(self.local_address),
                "mapped_address": _text(self.mapped_address), "mapping": self.mapping,
                "filtering": self.filtering, "nat_type": self.nat_type,
                "rfc5780": self.rfc5780, "reason": self.reason,
                "tests": [asdict(test) for test in self.tests]}


class _Prober:
    """Runs Binding tests and keeps their records; owns the sockets it opens, all bound to
    `local_ip` (a concrete address, so it is also the local half of every mapping)."""

    def __init__(self, local_ip: str, timeout: float, rto: float) -> None:
        self.local_ip = local_ip
        self.timeout = timeout
        self.rto = rto
        self.records: list[NatTestRecord] = []
        self._sockets: list[socket.socket] = []

    def new_socket(self) -> socket.socket:
        sock = open_udp_socket((self.local_ip, 0))
        self._sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()

    def run(self, name: str, sock: socket.socket, destination: tuple[str, int], *,
            change_ip: bool = False, change_port: bool = False,
            expect_from: tuple[str, int] | None = None) -> BindingResult | None:
        """One test; an answer from anywhere but `expect_from` (default: `destination`)
        is recorded with a note and returned as None."""
        result = binding_request(destination, sock=sock, change_ip=change_ip,
                                 change_port=change_port, timeout=self.timeout, rto=self.rto)
        expected = TransportAddress(*(expect_from or destination))
        self._record(name, sock, destination, change_ip, change_port, result,
                     _mismatch(result, expected))
        return result if result is not None and result.source_address == expected else None

    def _record(self, name: str, sock: socket.socket, destination: tuple[str, int],
                change_ip: bool, change_port: bool, result: BindingResult | None,
                note: str | None) -> None:
        answered = result is not None
        self.records.append(NatTestRecord(
            name=name, destination=_text(destination), change_ip=change_ip,
            change_port=change_port, local_address=_text(sock.getsockname()),
            answered=answered,
            source_address=_text(result.source_address) if answered else None,
            mapped_address=_text(result.mapped_address) if answered else None,
            response_origin=_text(result.response_origin) if answered else None,
            other_address=_text(result.other_address) if answered else None,
            error=(f"{result.error.code} {result.error.reason}"
                   if answered and result.error else None),
            note=note))


def _mismatch(result: BindingResult | None, expected: TransportAddress) -> str | None:
    if result is None:
        return None
    if result.source_address != expected:
        return (f"answer came from {_text(result.source_address)}, not {_text(expected)}: "
                "the server ignored CHANGE-REQUEST or is misconfigured")
    if result.response_origin is not None and result.response_origin != expected:
        return (f"RESPONSE-ORIGIN {_text(result.response_origin)} differs from the real "
                f"source {_text(expected)} (the server is behind a NAT?)")
    return None


def _answered(result: BindingResult | None) -> bool:
    return result is not None and result.ok


def local_ip_towards(server: tuple[str, int], local_ip: str) -> str:
    """`local_ip`, or for a wildcard (0.0.0.0 or ::, whatever the server's family) the
    source IP the kernel picks for `server` (connect() on UDP sends nothing)."""
    if local_ip not in ("0.0.0.0", "::"):
        return local_ip
    with socket.socket(socket_family(server[0]), socket.SOCK_DGRAM) as probe:
        probe.connect(server)
        return probe.getsockname()[0]


def _mapping_tests(prober: _Prober, sock: socket.socket, server: TransportAddress,
                   other: TransportAddress, first: BindingResult) -> tuple[str, str | None]:
    second = prober.run("mapping II", sock, (other.ip, server.port))
    if not _answered(second):
        return UNKNOWN, "mapping test II (alternate IP, primary port) got no valid answer"
    if second.mapped_address == first.mapped_address:
        return ENDPOINT_INDEPENDENT, None
    third = prober.run("mapping III", sock, (other.ip, other.port))
    if not _answered(third):
        return UNKNOWN, "mapping test III (alternate IP and port) got no valid answer"
    if third.mapped_address == second.mapped_address:
        return ADDRESS_DEPENDENT, None
    return ADDRESS_AND_PORT_DEPENDENT, None


def _filtering_tests(prober: _Prober, server: TransportAddress,
                     other: TransportAddress) -> tuple[str, str | None]:
    sock = prober.new_socket()  # fresh: has talked to nobody yet
    if not _answered(prober.run("filtering I", sock, server)):
        return UNKNOWN, "filtering test I (primary address, fresh port) got no valid answer"
    # (test, CHANGE-REQUEST flags, where its answer must come from, what an answer means)
    steps = (("II", (True, True), other, ENDPOINT_INDEPENDENT),
             ("III", (False, True), (server.ip, other.port), ADDRESS_DEPENDENT))
    for test, (change_ip, change_port), expect_from, behaviour in steps:
        result = prober.run(f"filtering {test}", sock, server, change_ip=change_ip,
                            change_port=change_port, expect_from=expect_from)
        if _answered(result):
            return behaviour, None
        record = prober.records[-1]
        if record.answered:  # an answer, but from the wrong place or an error: no verdict
            return UNKNOWN, f"filtering test {test}: {record.note or record.error or 'bad answer'}"
    return ADDRESS_AND_PORT_DEPENDENT, None


def detect_nat(server: tuple[str, int], *, local_ip: str = "0.0.0.0",
               timeout: float = DEFAULT_TEST_TIMEOUT, rto: float = DEFAULT_RTO) -> NatReport:
    """Run RFC 5780's mapping and filtering tests against `server` (see the module doc)."""
    server = TransportAddress(server[0], int(server[1]))
    prober = _Prober(local_ip_towards(server, local_ip), timeout, rto)
    try:
        return _detect(prober, server)
    finally:
        prober.close()


def _detect(prober: _Prober, server: TransportAddress) -> NatReport:
    sock = prober.new_socket()
    local = TransportAddress(prober.local_ip, sock.getsockname()[1])
    first = prober.run("mapping I", sock, server)

    def report(mapping: str, filtering: str, reason: str | None, *, rfc5780: bool,
               blocked: bool = False) -> NatReport:
        mapped = first.mapped_address if first is not None else None
        nat_type = rfc3489_class(mapping, filtering, mapped_equals_local=mapped == local,
                                 udp_blocked=blocked)
        if nat_type == "unknown" and reason is None:
            reason = (f"no NAT, but {filtering} filtering: RFC 3489's symmetric UDP firewall"
                      if mapped == local else f"{mapping} mapping, {filtering} filtering")
        return NatReport(server, mapped, local, mapping, filtering, nat_type, reason,
                         rfc5780, list(prober.records))

    record = prober.records[0]
    if first is None and not record.answered:
        return report(UNKNOWN, UNKNOWN, "no answer to test I: UDP blocked or server down",
                      rfc5780=False, blocked=True)
    if first is None:  # an answer came, but not from the server: UDP is not blocked
        return report(UNKNOWN, UNKNOWN, f"test I: {record.note}", rfc5780=False)
    if not first.ok:
        why = record.error or "the response had no (XOR-)MAPPED-ADDRESS"
        return report(UNKNOWN, UNKNOWN, f"test I failed: {why}", rfc5780=False)
    other = first.other_address
    if other is None:
        return report(UNKNOWN, UNKNOWN, "the server lacks RFC 5780 (no OTHER-ADDRESS)",
                      rfc5780=False)
    if other.ip == server.ip or other.port == server.port:
        return report(UNKNOWN, UNKNOWN, f"OTHER-ADDRESS {_text(other)} must differ from the "
                      "server in both IP and port (RFC 5780 §7.4)", rfc5780=False)
    mapping, mapping_reason = _mapping_tests(prober, sock, server, other, first)
    filtering, filtering_reason = _filtering_tests(prober, server, other)
    reason = "; ".join(r for r in (mapping_reason, filtering_reason) if r) or None
    return report(mapping, filtering, reason, rfc5780=True)
