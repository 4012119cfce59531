"""Load `xdp_blocklist.bpf.c` on one interface and manage its CIDR blocklist.

Pure parts (gradable without root): `lpm_key(cidr)` builds the LPM-trie key the kernel
expects, `longest_match(rules, address)` is the same longest-prefix lookup in Python.
`XdpBlocklist` owns the loaded program and its attachment; `attach_xdp(program, fn, ifname,
netns, mode)` attaches any loaded program's XDP function (a learner's too) and registers the
detach with the program's `close()`.
"""

from __future__ import annotations

import ctypes
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from netsprint.ebpf.loader import AS_ROOT, BpfProgram, guarded

SOURCE = Path(__file__).with_name("xdp_blocklist.bpf.c")
HEADER = Path(__file__).with_name("xdp_blocklist.h")
FUNCTION = "ns_xdp_blocklist"

RULE_DROP, RULE_ALLOW = 0, 1  # xdp_blocklist.h XDP_RULE_*
RULE_NAMES = {RULE_DROP: "drop", RULE_ALLOW: "allow"}
# include/uapi/linux/bpf.h enum xdp_action: the slot index in `action_counts`.
XDP_ACTIONS = ("aborted", "drop", "pass", "tx", "redirect")
# include/uapi/linux/if_link.h: XDP_FLAGS_SKB_MODE (generic: after the skb is built, works
# on any device) or XDP_FLAGS_DRV_MODE (native: in the driver; veth has it since 4.19).
MODES = {"generic": 1 << 1, "native": 1 << 2}

T = TypeVar("T")


class XdpLpmKey(ctypes.Structure):
    """struct xdp_lpm_key: prefix length in bits, then the IPv4 address in network order."""

    _fields_ = [("prefixlen", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 4)]


class XdpRule(ctypes.Structure):
    """struct xdp_rule: one trie entry's decision and how many packets it decided."""

    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("action", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class XdpCounter(ctypes.Structure):
    """struct xdp_counter: one XDP action's packets and bytes (one CPU's copy)."""

    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


def lpm_key(cidr: str) -> XdpLpmKey:
    """The trie key of an IPv4 prefix: `bytes(lpm_key("203.0.113.0/24"))` is
    `18 00 00 00 cb 00 71 00` (prefix length little-endian on x86/arm64, address as on the
    wire). Host bits set ("203.0.113.7/24") are a ValueError: a key must name a prefix."""
    network = ipaddress.IPv4Network(cidr, strict=True)
    return XdpLpmKey(network.prefixlen, (ctypes.c_uint8 * 4)(*network.network_address.packed))


def cidr_of(key: XdpLpmKey) -> str:
    """The inverse of `lpm_key`."""
    return f"{ipaddress.IPv4Address(bytes(key.addr))}/{key.prefixlen}"


def longest_match(rules: Iterable[str], address: str) -> str | None:
    """The longest prefix in `rules` containing `address` (what the LPM trie returns), or None."""
    ip = ipaddress.IPv4Address(address)
    best: ipaddress.IPv4Network | None = None
    for cidr in rules:
        network = ipaddress.IPv4Network(cidr, strict=True)
        if ip in network and (best is None or network.prefixlen > best.prefixlen):
            best = network
    return None if best is None else str(best)


@dataclass
class XdpCounters:
    """One reading of the program's counters, summed over CPUs."""

    actions: dict[str, int] = field(default_factory=dict)        # XDP action -> packets
    action_bytes: dict[str, int] = field(default_factory=dict)   # XDP action -> bytes
    rules: dict[str, tuple[str, int]] = field(default_factory=dict)  # cidr -> (drop|allow, packets)

    @property
    def passed(self) -> int:
        return self.actions.get("pass", 0)

    @property
    def dropped(self) -> int:
        return self.actions.get("drop", 0)

    def drops_by_prefix(self) -> dict[str, int]:
        return {cidr: n for cidr, (action, n) in self.rules.items() if action == "drop"}


def _in_netns(netns: str | None, function: Callable[..., T], *args: object) -> T:
    if netns is None:
        return function(*args)
    from netsprint.lab.topology import call_in_netns

    return call_in_netns(netns, function, *args)


def attach_xdp(program: BpfProgram, fn_name: str, ifname: str, netns: str | None = None,
               mode: str = "generic") -> None:
    """Load `fn_name` of `program` as an XDP program and attach it to `ifname` (inside
    `netns`: bcc attaches through netlink from the calling thread, so a thread that entered
    the namespace does it). `program.close()` detaches it again: an XDP attachment belongs
    to the interface and outlives the program's file descriptor."""
    from bcc import BPF

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    function = program.load_func(fn_name, BPF.XDP)
    flags, bpf, device = MODES[mode], program.bpf, ifname.encode()
    guarded(f"attaching {fn_name} to {ifname} ({mode} mode)",
            lambda: _in_netns(netns, bpf.attach_xdp, device, function, flags))
    program.on_close(lambda: _detach_xdp(bpf, device, netns, flags))


def _detach_xdp(bpf, device: bytes, netns: str | None, flags: int) -> None:
    from netsprint.lab.topology import netns_exists

    if netns is not None and not netns_exists(netns):
        return  # the namespace took its interfaces, and their XDP programs, with it
    _in_netns(netns, bpf.remove_xdp, device, flags)


class XdpBlocklist:
    """Owns one loaded `ns_xdp_blocklist` program, its attachment to `ifname` (inside
    `netns`, or this thread's namespace when None) and the rules in its trie.

    `XdpBlocklist("veth-b", {"203.0.113.0/24"}, netns=pair.netns("b"))`; `block(cidr)`,
    `allow(cidr)` (an exception inside a blocked prefix), `unblock(cidr)`, `counters()`,
    `close()` (or `with`): detaches from the interface, then unloads.
    """

    def __init__(self, ifname: str, prefixes: Iterable[str] = (), mode: str = "generic",
                 netns: str | None = None, run_as: str = AS_ROOT) -> None:
        if mode not in MODES:  # here too: before a compile that takes seconds
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.ifname, self.mode, self.netns = ifname, mode, netns
        self.program = BpfProgram(SOURCE, name="xdp_blocklist", run_as=run_as, tracing=False,
                                  net_admin=True)
        try:
            for cidr in prefixes:
                self.block(cidr)
            self._attach()
        except BaseException:
            self.program.close()
            raise

    def _attach(self) -> None:
        attach_xdp(self.program, FUNCTION, self.ifname, netns=self.netns, mode=self.mode)

    # --- rules ------------------------------------------------------------------------------

    def block(self, cidr: str) -> None:
        """Drop packets whose source is in `cidr` (unless a longer ALLOW prefix matches)."""
        self._set_rule(cidr, RULE_DROP)

    def allow(self, cidr: str) -> None:
        """Let `cidr` through even inside a shorter blocked prefix: the trie picks the longest."""
        self._set_rule(cidr, RULE_ALLOW)

    def unblock(self, cidr: str) -> None:
        """Remove the rule for exactly `cidr` (and its counter); KeyError if there is none."""
        table = self.program["blocklist"]
        key = lpm_key(cidr)
        try:
            del table[key]
        except KeyError:
            raise KeyError(f"no rule for {cidr}") from None

    def _set_rule(self, cidr: str, action: int) -> None:
        # Replacing a rule restarts its counters: the value is written whole.
        self.program["blocklist"][lpm_key(cidr)] = XdpRule(0, 0, action, 0)

    def rules(self) -> dict[str, str]:
        """cidr -> "drop" | "allow" for every entry in the trie."""
        return {cidr: action for cidr, (action, _) in self._read_rules().items()}

    def _read_rules(self) -> dict[str, tuple[str, int]]:
        return {cidr_of(key): (RULE_NAMES.get(rule.action, str(rule.action)), int(rule.packets))
                for key, rule in self.program["blocklist"].items()}

    # --- counters -------------------------------------------------------------------------------

    def counters(self) -> XdpCounters:
        """Per-action packets and bytes (summed over CPUs) and per-rule packets."""
        table = self.program["action_counts"]
        result = XdpCounters(rules=self._read_rules())
        for slot, name in enumerate(XDP_ACTIONS):
            per_cpu = table[ctypes.c_int(slot)]  # one XdpCounter-shaped value per possible CPU
            result.actions[name] = sum(int(c.packets) for c in per_cpu)
            result.action_bytes[name] = sum(int(c.bytes) for c in per_cpu)
        return result

    # --- life cycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self.program.close()

    def __enter__(self) -> XdpBlocklist:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

