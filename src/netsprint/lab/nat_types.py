"""NAT types as nftables scripts, one per type, loaded into a router's own namespace.

Linux gives us two facts to build every classic NAT from:

1. conntrack NAT (`masquerade`) keeps the peer's source port whenever the translated
   5-tuple is still unique, and it picks the translation once, at a flow's first packet.
   With one peer behind the router a second destination from the same socket therefore
   gets the same external port: **endpoint-independent mapping** (RFC 4787 section 4.1).
   `masquerade random` instead starts the port search at a random offset for every new
   flow, so every new destination gets a new port: **address-and-port-dependent
   mapping** (symmetric).
2. Only packets of a flow conntrack already knows (`ct state established,related`) are
   translated back. Anything else arriving on the WAN is addressed to the router itself
   (or, with routes to the LAN, to the peer) and is dropped: that alone is
   **address-and-port-dependent filtering** (RFC 4787 section 5). Looser filtering needs
   rules that let chosen unsolicited packets in: a DNAT back to the peer, gated by a set
   the outbound path fills.

Each `*_rules(router)` returns the body of table `ip netsprint_nat`; `nft_script()` wraps
it so one `nft -f` transaction replaces whatever type the router had before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

TABLE = "netsprint_nat"
LOSS_TABLE = "netsprint_loss"
CUT_TABLE = "netsprint_cut"
MAPPING_TIMEOUT = "5m"  # how long an idle mapping stays open to inbound packets

# RFC 3489 names (the lab's vocabulary) -> what RFC 4787/5780 discovery should report.
EXPECTED_BEHAVIOUR = {
    "none": ("endpoint-independent", "endpoint-independent"),
    "full-cone": ("endpoint-independent", "endpoint-independent"),
    "restricted": ("endpoint-independent", "address-dependent"),
    "port-restricted": ("endpoint-independent", "address-and-port-dependent"),
    "symmetric": ("address-and-port-dependent", "address-and-port-dependent"),
}
NAT_TYPES = tuple(EXPECTED_BEHAVIOUR)


@dataclass(frozen=True)
class Router:
    """What a recipe needs to know about one router: its two interfaces and its one peer."""

    wan_if: str
    lan_if: str
    peer_ip: str


def _forward_chain(router: Router, *extra: str) -> str:
    """A forward filter that drops every new WAN->LAN flow unless an `extra` rule allows it.

    Without this policy, a host on the "internet" that routes the LAN prefix via the
    router could reach the peer unsolicited, and the router would be no NAT at all.
    """
    rules = [
        "type filter hook forward priority filter; policy drop;",
        "ct state established,related accept",
        *extra,
        f'iifname "{router.lan_if}" oifname "{router.wan_if}" accept',
    ]
    return "chain forward {\n    " + "\n    ".join(rules) + "\n  }"


def _input_chain(router: Router) -> str:
    """Drop unsolicited packets addressed to the router itself.

    Not for the router's sake: an accepted packet confirms its conntrack entry. When a
    peer's punch arrives before our own peer has sent anything, that entry
    (them -> WAN:P) is exactly the reply tuple our peer's first packet to them would need,
    so masquerade would have to pick another port for it: a port-restricted NAT turning
    symmetric towards the one address that matters. A dropped packet's entry is never
    confirmed, so the port stays free (the "simultaneous open" of every punching guide).
    """
    return ("chain input {\n    type filter hook input priority filter; policy accept;\n"
            f'    iifname "{router.wan_if}" ct state new drop\n  }}')


def _masquerade_chain(router: Router, flags: str = "") -> str:
    rule = f'oifname "{router.wan_if}" masquerade {flags}'.rstrip()
    return ("chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    {rule}\n  }}")


def _dnat_chain(router: Router, gate: str) -> str:
    # A nat chain sees only a flow's first packet: exactly the unsolicited inbound packet
    # conntrack does not know yet. Sending it to the peer's IP keeps the destination port,
    # which is the peer's own port because masquerade preserved it (fact 1).
    return ("chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
            f'    iifname "{router.wan_if}" {gate} dnat to {router.peer_ip}\n  }}')


def none_rules(router: Router) -> list[str]:
    """Routing only: no translation, no filter; the peer's address is its public address."""
    return ["chain forward {\n    type filter hook forward priority filter; policy accept;\n  }"]


def port_restricted_rules(router: Router) -> list[str]:
    """Plain masquerade plus the drop-new forward policy (facts 1 and 2): EI mapping,
    address-and-port-dependent filtering."""
    return [_masquerade_chain(router), _forward_chain(router), _input_chain(router)]


def symmetric_rules(router: Router) -> list[str]:
    """`masquerade random`: for every new flow the kernel skips "keep the port if unique"
    and starts its search at a random offset (measured: the same 5-tuple gets a new port
    once conntrack forgot it), so each destination (even another port of the same address)
    sees its own external port: address-and-port-dependent mapping. Two flows drawing the
    same port is a 1-in-64k chance. Filtering as port-restricted."""
    return [_masquerade_chain(router, "random"), _forward_chain(router), _input_chain(router)]


def full_cone_rules(router: Router) -> list[str]:
    """Port-restricted plus: once the peer has sent from port P, anyone may send to WAN:P.

    The outbound path records P in `@mapped_ports`; an unsolicited inbound packet to a
    recorded port is DNATed to the peer and let through the forward filter because
    conntrack marks it as DNATed (`ct status dnat`). Endpoint-independent filtering.
    """
    mapped = ("set mapped_ports {\n    type inet_service; flags dynamic, timeout;"
              f" timeout {MAPPING_TIMEOUT};\n  }}")
    record = (f'iifname "{router.lan_if}" oifname "{router.wan_if}" meta l4proto udp '
              "update @mapped_ports { udp sport }")
    return [mapped, _dnat_chain(router, "udp dport @mapped_ports"), _masquerade_chain(router),
            _forward_chain(router, record, f'iifname "{router.wan_if}" ct status dnat accept'),
            _input_chain(router)]


def restricted_rules(router: Router) -> list[str]:
    """Address-restricted cone: inbound to WAN:P only from an address the peer has sent
    to from P (any port of that address).

    The outbound path records the pair (peer's source port P, remote address) in
    `@contacted`; the inbound DNAT matches (destination port, source address) against it.
    Keying on P, not on the address alone, keeps each mapping's permissions its own, as
    RFC 4787 section 5 defines address-dependent filtering.
    """
    contacted = ("set contacted {\n    type inet_service . ipv4_addr; flags dynamic, timeout;"
                 f" timeout {MAPPING_TIMEOUT};\n  }}")
    record = (f'iifname "{router.lan_if}" oifname "{router.wan_if}" meta l4proto udp '
              "update @contacted { udp sport . ip daddr }")
    return [contacted, _dnat_chain(router, "udp dport . ip saddr @contacted"),
            _masquerade_chain(router),
            _forward_chain(router, record, f'iifname "{router.wan_if}" ct status dnat accept'),
            _input_chain(router)]


RECIPES: dict[str, Callable[[Router], list[str]]] = {
    "none": none_rules,
    "full-cone": full_cone_rules,
    "restricted": restricted_rules,
    "port-restricted": port_restricted_rules,
    "symmetric": symmetric_rules,
}


def check_nat_type(nat_type: str) -> str:
    if nat_type not in RECIPES:
        raise ValueError(f"unknown NAT type {nat_type!r}: choose one of {', '.join(NAT_TYPES)}")
    return nat_type


def _replace_table(table: str, body: list[str], family: str = "ip") -> str:
    # `table` then `delete table` makes the delete safe when the table does not exist yet,
    # and the whole file is one transaction: the router is never left half-configured.
    lines = [f"table {family} {table}", f"delete table {family} {table}"]
    if body:
        lines.append(f"table {family} {table} {{\n  " + "\n  ".join(body) + "\n}")
    return "\n".join(lines) + "\n"


def nft_script(nat_type: str, router: Router) -> str:
    """The nft script that turns `router` into a NAT of `nat_type`, replacing any old type."""
    return _replace_table(TABLE, RECIPES[check_nat_type(nat_type)](router))


def loss_script(percent: float) -> str:
    """Drop `percent` % of forwarded packets at random, both directions (0 removes the rule).

    The kernel here has no netem qdisc, so loss comes from nftables: `numgen random mod
    1000` draws 0..999 per packet, and dropping draws below percent*10 drops that share
    (0.1 % resolution). Priority -10 runs it before the NAT's forward filter.
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"loss must be 0..100 %, not {percent}")
    per_mille = round(percent * 10)
    if per_mille == 0:
        return _replace_table(LOSS_TABLE, [])
    # numgen's result is 0..999, so "< 1000" is refused as out of range: 100 % is a plain drop.
    rule = ("counter drop" if per_mille >= 1000
            else f"numgen random mod 1000 < {per_mille} counter drop")
    chain = ("chain forward {\n    type filter hook forward priority -10; policy accept;\n"
             f"    {rule}\n  }}")
    return _replace_table(LOSS_TABLE, [chain])


def cut_script(ports: tuple[str, str], cut: bool = True) -> str:
    """Drop every frame the internet's bridge would forward between `ports` (both ways);
    `cut=False` removes the rule.

    A `bridge` family table sees frames the bridge forwards from port to port (hook
    `forward`), but not frames addressed to the bridge itself (hook `input`): so the two
    routers lose each other while both still reach the addresses on the bridge, the STUN
    and relay servers. ARP between the ports dies too, as on a cut cable.
    """
    if not cut:
        return _replace_table(CUT_TABLE, [], family="bridge")
    first, second = ports
    chain = ("chain forward {\n    type filter hook forward priority filter; policy accept;\n"
             f'    iifname "{first}" oifname "{second}" counter drop\n'
             f'    iifname "{second}" oifname "{first}" counter drop\n  }}')
    return _replace_table(CUT_TABLE, [chain], family="bridge")
