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

from netsprint.reactor.addresses import short_addr
from netsprint.signaling.protocol import CandidateAddr
from netsprint.stun.client import BindingResult, binding_request
from netsprint.stun.nat import (ADDRESS_AND_PORT_DEPENDENT, ENDPOINT_INDEPENDENT,
                                local_ip_towards)

log = logging.getLogger(__name__)

GATHER_TIMEOUT = 1.0  # per STUN server; a lab or LAN answers in milliseconds
GATHER_RTO = 0.1      # first retransmission; RFC 8489's 0.5 s is for unknown paths


@dataclass(frozen=True)
class Gathered:
    """What gathering found: candidates in preference order, and the mapping behaviour
    (None when there was no second STUN address to compare with, or no answer)."""

    candidates: tuple[CandidateAddr, ...]
    mapping: str | None = None


def host_candidate(sock: socket.socket, towards: tuple[str, int]) -> CandidateAddr:
    """The socket's own address; for a wildcard bind, the source address of the route
    `towards` that address."""
    ip, port = sock.getsockname()[:2]
    return CandidateAddr(local_ip_towards(towards, ip), port, "host")


def _mapped(result: BindingResult | None) -> tuple[str, int] | None:
    if result is None or result.mapped_address is None:
        return None
    return result.mapped_address.ip, result.mapped_address.port


def gather(sock: socket.socket, stun: tuple[str, int] | None,
           stun_alt: tuple[str, int] | None = None, *,
           towards: tuple[str, int] | None = None,
           timeout: float = GATHER_TIMEOUT) -> Gathered:
    """Host candidate, srflx candidate from `stun`, mapping behaviour from `stun_alt`.

    The host candidate of a wildcard-bound socket is the source address of the route
    `towards` an (IP, port) (default: the STUN server), e.g. 127.0.0.1 towards a signaling
    server on loopback. Blocking (a few milliseconds on a lab or LAN, `timeout` at worst per
    server): call it before the socket joins a loop. No answer is not an error: the peer then
    offers its host candidate only and relies on the relay."""
    towards = towards or stun
    if towards is None:
        raise ValueError("gather() needs a STUN server or an address to route towards")
    host = host_candidate(sock, towards)
    if stun is None:
        return Gathered((host,))
    first = _mapped(binding_request(stun, sock=sock, timeout=timeout, rto=GATHER_RTO))
    if first is None:
        log.warning("no STUN answer from %s: offering the host candidate only",
                    short_addr(stun))
        return Gathered((host,))
    candidates = [host]
    if first != (host.ip, host.port):
        candidates.append(CandidateAddr(first[0], first[1], "srflx"))
    mapping = None
    if stun_alt is not None:
        second = _mapped(binding_request(stun_alt, sock=sock, timeout=timeout, rto=GATHER_RTO))
        if second is not None:
            mapping = ENDPOINT_INDEPENDENT if second == first else ADDRESS_AND_PORT_DEPENDENT
    return Gathered(tuple(candidates), mapping)
