"""Candidate gathering: the addresses a peer may be reached at, learned from its own socket.

A host candidate is the socket's local address; a server-reflexive (srflx) one is what a
STUN server saw (RFC 8445 section 5.1.1). Both come from the *one* socket the peer will punch
with, because the NAT mapping the other side is told about belongs to that socket.
Asking a second STUN address from the same socket tells the mapping behaviour (RFC 5780
section 4.3): the same mapped address for both means endpoint-independent mapping; two
different ones mean the NAT picks a port per destination (symmetric), which only the
birthday mode can punch through.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from netsprint.signaling.protocol import CandidateAddr
from netsprint.stun.client import BindingResult, binding_request

log = logging.getLogger(__name__)

EIM = "endpoint-independent"
EDM = "address-and-port-dependent"
GATHER_TIMEOUT = 1.0  # per STUN server; a lab or LAN answers in milliseconds
GATHER_RTO = 0.1      # first retransmission; RFC 8489's 0.5 s is for unknown paths


@dataclass(frozen=True)
class Gathered:
    """What gathering found: candidates in preference order, and the mapping behaviour
    (None when there was no second STUN address to compare with, or no answer)."""

    candidates: tuple[CandidateAddr, ...]
    mapping: str | None = None


def source_ip_towards(ip: str) -> str:
    """The local address the kernel would send from towards `ip`: connect(2) on a UDP
    socket picks the route and source address without sending anything."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((ip, 9))
        return probe.getsockname()[0]


def host_candidate(sock: socket.socket, towards: str) -> CandidateAddr:
    ip, port = sock.getsockname()[:2]
    if ip in ("0.0.0.0", "::"):
        ip = source_ip_towards(towards)
    return CandidateAddr(ip, port, "host")


def _mapped(result: BindingResult | None) -> tuple[str, int] | None:
    if result is None or result.mapped_address is None:
        return None
    return result.mapped_address.ip, result.mapped_address.port


def gather(sock: socket.socket, stun: tuple[str, int] | None,
           stun_alt: tuple[str, int] | None = None, *, towards: str | None = None,
           timeout: float = GATHER_TIMEOUT) -> Gathered:
    """Host candidate, srflx candidate from `stun`, mapping behaviour from `stun_alt`.

    The host candidate of a wildcard-bound socket is the source address of the route
    `towards` the other servers (default: the STUN server), e.g. 127.0.0.1 for a signaling
    server on loopback. Blocking (a few milliseconds on a lab or LAN, `timeout` at worst per
    server): call it before the socket joins a loop. No answer is not an error: the peer then
    offers its host candidate only and relies on the relay."""
    towards = towards or (stun[0] if stun else None)
    if towards is None:
        raise ValueError("gather() needs a STUN server or an address to route towards")
    host = host_candidate(sock, towards)
    if stun is None:
        return Gathered((host,))
    first = _mapped(binding_request(stun, sock=sock, timeout=timeout, rto=GATHER_RTO))
    if first is None:
        log.warning("no STUN answer from %s:%d: offering the host candidate only", *stun)
        return Gathered((host,))
    candidates = [host]
    if first != (host.ip, host.port):
        candidates.append(CandidateAddr(first[0], first[1], "srflx"))
    mapping = None
    if stun_alt is not None:
        second = _mapped(binding_request(stun_alt, sock=sock, timeout=timeout, rto=GATHER_RTO))
        if second is not None:
            mapping = EIM if second == first else EDM
    return Gathered(tuple(candidates), mapping)
