"""Two network namespaces joined by one veth: the smallest lab for XDP and TC programs.

```
  <prefix>-<pid>-<n>-a                     <prefix>-<pid>-<n>-b
  veth-a 198.51.100.1/24  <── veth ──>  veth-b 198.51.100.2/24
  02:00:00:00:00:0a                        02:00:00:00:00:0b
```

A frame sent out of one end arrives on the other end's receive path, where an XDP program
attached to it sees it first; a TC egress program on the sending end sees it last. Both
namespaces are made from scratch, so nothing but the test's own packets crosses the wire:
IPv6 is switched off (no router solicitations, no MLD reports) and each side knows the
other's MAC address permanently (no ARP), so packet counts are exact.

`pair.call("a", fn, *args)` runs `fn` in a thread that entered namespace a: bcc's XDP
attach (netlink), `if_nametoindex`, scapy-built frames sent through a packet socket, all
act on the namespace of the *calling thread*.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterable
from typing import TypeVar

from netsprint.lab import LabError
from netsprint.lab.topology import (SIDES, call_in_netns, check_root, ip_batch, netns_argv,
                                    netns_exists, other_side, remove_netns, run_checked,
                                    socket_in_netns)

T = TypeVar("T")
PREFIX_LEN = 24
ADDRESSES = {"a": "198.51.100.1", "b": "198.51.100.2"}  # RFC 5737 TEST-NET-2
MACS = {"a": "02:00:00:00:00:0a", "b": "02:00:00:00:00:0b"}  # locally administered (bit 1 of byte 0)
IFNAMES = {"a": "veth-a", "b": "veth-b"}
_SERIAL = itertools.count()  # several pairs in one process get different names

# Per-namespace sysctls: a fresh namespace starts from the kernel's defaults, not the host's.
# rp_filter off: test packets come from addresses (203.0.113.x, 192.0.2.x) the receiver has
# no route back to, and strict reverse-path filtering would drop them before any socket.
SYSCTLS = ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
           "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")


def other(side: str) -> str:
    return other_side(check_side(side))


def check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side must be 'a' or 'b', not {side!r}")
    return side


class VethPair:
    """Owns two network namespaces and the veth between them (its ends live in the
    namespaces, never in the root one). Deleting a namespace deletes its veth end and
    everything attached to it, so `down()` (run by `with` even on failure) leaves nothing.

    Use as `with VethPair("ns-xdp") as pair:`; `pair.netns("a")`, `pair.ifname("b")`,
    `pair.address("b")`, `pair.mac("b")`, `pair.call("a", fn, *args)`,
    `pair.socket("b")`, `pair.run("a", argv)`.
    """

    def __init__(self, name_prefix: str = "ns-veth") -> None:
        serial = next(_SERIAL)
        base = f"{name_prefix}-{os.getpid()}" + (f"-{serial}" if serial else "")
        self.namespaces = {side: f"{base}-{side}" for side in SIDES}

    # --- names and addresses ----------------------------------------------------------------

    def netns(self, side: str) -> str:
        return self.namespaces[check_side(side)]

    @staticmethod
    def ifname(side: str) -> str:
        """The veth end's name inside `side`'s namespace."""
        return IFNAMES[check_side(side)]

    @staticmethod
    def address(side: str) -> str:
        return ADDRESSES[check_side(side)]

    @staticmethod
    def mac(side: str) -> str:
        return MACS[check_side(side)]

    # --- acting inside ----------------------------------------------------------------------

    def call(self, side: str, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` run by a thread inside `side`'s namespace; its result or exception."""
        return call_in_netns(self.netns(side), function, *args)

    def socket(self, side: str, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM,
               proto: int = 0) -> socket.socket:
        """A socket living in `side`'s namespace, usable from any thread of this process."""
        return socket_in_netns(self.netns(side), family, kind, proto)

    def run(self, side: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """`subprocess.run(argv, **kwargs)` inside `side`'s namespace."""
        return subprocess.run(netns_argv(self.netns(side), argv), **kwargs)

    def send_frames(self, side: str, frames: Iterable[bytes]) -> int:
        """Send whole Ethernet frames (e.g. `bytes(Ether()/IP()/UDP())` built with scapy) out
        of `side`'s veth through a packet socket; how many were sent. The kernel adds
        nothing: no routing, no ARP, the source address is whatever the frame says."""
        sent = 0
        with self.socket(side, socket.AF_PACKET, socket.SOCK_RAW) as tap:
            tap.bind((self.ifname(side), 0))
            for frame in frames:
                if tap.send(frame) != len(frame):
                    raise LabError(f"short send of a {len(frame)}-byte frame on {self.ifname(side)}")
                sent += 1
        return sent

    def link_stats(self, side: str) -> dict[str, int]:
        """The veth end's kernel counters (`ip -s link`): rx_packets, tx_packets, rx_bytes..."""
        out = run_checked(["ip", "-n", self.netns(side), "-s", "-j", "link", "show",
                            "dev", self.ifname(side)])
        stats = json.loads(out)[0]["stats64"]
        return {f"{way}_{name}": int(value) for way in ("rx", "tx")
                for name, value in stats[way].items()}

    # --- life cycle ---------------------------------------------------------------------------

    def up(self) -> VethPair:
        """Make both namespaces and the veth; on any failure remove what was made."""
        check_root()
        taken = [ns for ns in self.namespaces.values() if netns_exists(ns)]
        if taken:
            raise LabError(f"network namespace(s) {taken} already exist")
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        a, b = self.netns("a"), self.netns("b")
        for side in SIDES:
            run_checked(["ip", "netns", "add", self.netns(side)])
            run_checked(netns_argv(self.netns(side), ["sysctl", "-qw", *SYSCTLS]))
        # Born in a with its peer end placed straight into b: never in the root namespace.
        ip_batch(a, [f"link add {IFNAMES['a']} address {MACS['a']} type veth "
                     f"peer name {IFNAMES['b']} address {MACS['b']} netns {b}"])
        for side in SIDES:
            peer = other(side)
            ip_batch(self.netns(side), [
                "link set lo up",
                f"addr add {ADDRESSES[side]}/{PREFIX_LEN} dev {IFNAMES[side]}",
                f"link set {IFNAMES[side]} up",
                f"neigh replace {ADDRESSES[peer]} lladdr {MACS[peer]} dev {IFNAMES[side]} nud permanent",
            ])

    def down(self) -> None:
        """Delete both namespaces (their veth ends, XDP programs and qdiscs go with them).
        Safe to call twice and after a half-built `up()`."""
        errors = []
        for netns in self.namespaces.values():
            try:
                remove_netns(netns)
            except (LabError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{netns}: {exc}")
        if errors:
            raise LabError("veth pair teardown incomplete: " + "; ".join(errors))

    def __enter__(self) -> VethPair:
        return self.up()

    def __exit__(self, *exc_info: object) -> None:
        self.down()
