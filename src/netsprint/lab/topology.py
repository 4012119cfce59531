"""The NAT lab's topology: five network namespaces, veths, a bridge, routes, nft tables.

`NatLab` builds (`up`), reconfigures (`set_nat`, `set_loss`, `cut_direct`,
`flush_conntrack`) and removes (`down`) one lab; `netns_argv`, `call_in_netns`
(`socket_in_netns`) and `thread_in_netns` are the ways to act inside a namespace (a child
process through `ip netns exec`, one call made by a thread that entered it, e.g. creating a
socket, or a whole thread living there).
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from netsprint.errors import CapabilityError
from netsprint.lab import LabError
from netsprint.lab.nat_types import (Router, check_nat_type, cut_script, loss_script,
                                     nft_script)

# linux/sched.h: the flag that makes setns(2) switch only the network namespace.
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"  # where `ip netns add` bind-mounts each named namespace

T = TypeVar("T")


def netns_argv(netns: str | None, argv: list[str]) -> list[str]:
    """`argv`, run inside `netns` through `ip netns exec` (unchanged when netns is None)."""
    return list(argv) if netns is None else ["ip", "netns", "exec", netns, *argv]


def socket_in_netns(netns: str | None, family: int = socket.AF_INET,
                    kind: int = socket.SOCK_DGRAM, proto: int = 0) -> socket.socket:
    """A socket that lives in `netns` although this process does not.

    A socket belongs to the namespace its creator was in when it was made: so it is made
    by a short-lived thread that entered the namespace (`call_in_netns`).
    """
    if netns is None:
        return socket.socket(family, kind, proto)
    return call_in_netns(netns, socket.socket, family, kind, proto)


def call_in_netns(netns: str, function: Callable[..., T], *args: object) -> T:
    """`function(*args)` run by a short-lived thread that entered `netns`: its result, or
    the exception it (or entering the namespace) raised, re-raised here."""
    path = _netns_path(netns)
    outcome: dict[str, object] = {}

    def enter_and_call() -> None:
        try:
            outcome["value"] = _enter_and_run(path, function, args)
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=enter_and_call, name=f"setns-{netns}")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def thread_in_netns(netns: str, target: Callable[..., object], *args: object,
                    name: str | None = None) -> threading.Thread:
    """A thread (not started) that enters `netns` first and then runs `target(*args)`.

    Everything the thread creates (sockets, a whole event loop) lives in `netns` while the
    rest of the process stays where it is. The namespace path is checked here, before the
    thread starts.
    """
    return threading.Thread(target=_enter_and_run, args=(_netns_path(netns), target, args),
                            name=name or f"netns-{netns}")


def _netns_path(netns: str) -> str:
    """The bind mount `ip netns add` made for `netns`; a LabError when there is none."""
    if not netns_exists(netns):
        raise LabError(f"no network namespace {netns!r} ({NETNS_DIR}/{netns} is missing)")
    return os.path.join(NETNS_DIR, netns)


def _enter_and_run(path: str, target: Callable[..., T], args: tuple) -> T:
    """setns(2) with CLONE_NEWNET moves only the calling thread: so this is always called
    by a thread of its own, and the rest of the process never moves."""
    _setns(path)
    return target(*args)


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


# --- conntrack, through netlink ----------------------------------------------------------------
# The `conntrack` tool (conntrack-tools) is not installed and pyroute2 neither, so the one
# request we need is built by hand: the message `conntrack -F` sends. ctnetlink's delete
# request without a tuple attribute flushes the whole table of the namespace the netlink
# socket lives in (net/netfilter/nf_conntrack_netlink.c, ctnetlink_del_conntrack ->
# ctnetlink_flush_conntrack; with nfgenmsg version 0 the family is not used as a filter,
# which is fine here: the lab is IPv4 only). Measured by tests/test_natlab_cut.py.
NETLINK_NETFILTER = 12                  # linux/netlink.h
NFNL_SUBSYS_CTNETLINK = 1               # linux/netfilter/nfnetlink.h
IPCTNL_MSG_CT_DELETE = 2                # linux/netfilter/nfnetlink_conntrack.h
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4     # linux/netlink.h
NLMSG_ERROR = 2
NLMSG_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
NFGENMSG = struct.Struct("=BBH")        # struct nfgenmsg: family, version, res_id


def conntrack_flush(netns: str) -> None:
    """Forget every connection (and so every NAT mapping) conntrack tracks in `netns`."""
    body = NFGENMSG.pack(socket.AF_INET, 0, 0)
    kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
    request = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), kind,
                                NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body
    with socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(COMMAND_TIMEOUT)
        sock.bind((0, 0))  # the kernel picks our netlink port id
        sock.send(request)
        reply = sock.recv(65536)
    check_netlink_ack(reply, f"conntrack flush in {netns}")


def check_netlink_ack(reply: bytes, what: str) -> None:
    """An NLMSG_ERROR carrying 0 is the ack; a negative errno is the kernel's refusal."""
    if len(reply) < NLMSG_HEADER.size + 4:
        raise LabError(f"{what}: short netlink reply ({len(reply)} bytes)")
    _, kind, _, _, _ = NLMSG_HEADER.unpack_from(reply)
    if kind != NLMSG_ERROR:
        raise LabError(f"{what}: unexpected netlink message type {kind}")
    (error,) = struct.unpack_from("=i", reply, NLMSG_HEADER.size)
    if error != 0:
        raise OSError(-error, f"{what}: {os.strerror(-error)}")


def conntrack_entries(netns: str) -> list[str]:
    """The connections conntrack tracks in `netns`, one text line each (as
    /proc/net/nf_conntrack shows them inside the namespace: CONFIG_NF_CONNTRACK_PROCFS)."""
    text = run_checked(netns_argv(netns, ["cat", "/proc/net/nf_conntrack"]))
    return [line for line in text.splitlines() if line.strip()]


# --- the lab ---------------------------------------------------------------------------------

NODES = ("internet", "nat-a", "nat-b", "peer-a", "peer-b")
NODE_ALIASES = {"server": "internet"}
SIDES = ("a", "b")
STATE_DIR = Path("/run/netsprint/labs")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,11}$")
COMMAND_TIMEOUT = 20.0  # seconds for one `ip` or `nft` call
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for processes left in a namespace

# The "internet" is one bridge in 203.0.113.0/24 (RFC 5737 TEST-NET-3) holding both STUN
# addresses; each LAN is half of 198.51.100.0/24 (TEST-NET-2). Interface names live inside
# the namespaces, so every lab can use the same short names.
WAN_PREFIX_LEN = 24
STUN_ADDRESSES = ("203.0.113.1", "203.0.113.2")
STUN_PORT = 3478  # where the lab's STUN servers (ours or coturn) listen on those addresses
BRIDGE = "br0"
WAN_IF, LAN_IF, PEER_IF = "wan", "lan", "eth0"


@dataclass(frozen=True)
class SidePlan:
    """The addresses of one side: its router's WAN and LAN ends and the peer behind it."""

    wan_ip: str
    lan_prefix: str
    gateway_ip: str
    peer_ip: str

    @property
    def lan_prefix_len(self) -> int:
        return ipaddress.ip_network(self.lan_prefix).prefixlen


PLAN = {
    "a": SidePlan("203.0.113.10", "198.51.100.0/25", "198.51.100.1", "198.51.100.2"),
    "b": SidePlan("203.0.113.20", "198.51.100.128/25", "198.51.100.129", "198.51.100.130"),
}


def bridge_port(side: str) -> str:
    """The name of router `side`'s veth end on the internet's bridge."""
    return f"port-{side}"


def other_side(side: str) -> str:
    return "b" if side == "a" else "a"


def random_lab_name() -> str:
    """`nsp` + 5 hex digits: unique enough for labs side by side, short for `ip netns`."""
    return "nsp" + secrets.token_hex(3)[:5]


def check_root() -> None:
    if os.geteuid() != 0:
        raise CapabilityError("the NAT lab needs root (namespaces, nftables)",
                              "run it as root, e.g. `sudo netsprint lab ...`")


def run_checked(argv: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)
    except FileNotFoundError as exc:
        raise CapabilityError(f"`{argv[0]}` not found",
                              "install iproute2 and nftables (scripts/provision.sh does)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` ran longer than {COMMAND_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def ip_batch(netns: str, commands: list[str]) -> None:
    """Run `ip` commands inside `netns` in one process (`ip -n NS -batch -`)."""
    run_checked(["ip", "-n", netns, "-batch", "-"], "\n".join(commands) + "\n")


def nft_load(netns: str, script: str) -> None:
    """Load an nft script inside `netns`; it is one transaction, applied whole or not at all."""
    run_checked(netns_argv(netns, ["nft", "-f", "-"]), script)


def netns_exists(netns: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, netns))


def netns_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                         timeout=COMMAND_TIMEOUT).stdout
    return [int(word) for word in out.split()]


def stop_pids(pids: list[int]) -> None:
    """SIGTERM, wait up to STOP_GRACE, then SIGKILL: each PID is one we found in our lab."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # already gone: that is what we wanted


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0) until its parent reaps it; it holds no namespace.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def lab_names() -> list[str]:
    """Every lab this machine remembers (one state file each)."""
    if not STATE_DIR.is_dir():
        return []
    return sorted(path.stem for path in STATE_DIR.glob("*.json"))


class NatLab:
    """Owns one lab: five namespaces, the veths between them, the routers' nft tables and
    the state file that lets `netsprint lab ...` find it again.

    ```
     peer-a ── nat-a ──┐                       ┌── nat-b ── peer-b
     198.51.100.2      │  internet (bridge br0) │      198.51.100.130
          .1/25 lan  wan 203.0.113.10   .1 .2   203.0.113.20 wan  lan .129/25
    ```

    Nothing is created in the root namespace: each veth is created inside one namespace
    with its peer end placed straight into the other. `down()` deletes the namespaces (which
    takes their veths, nft tables and sysctls with them) even after a half-built `up()`.
    A context manager: `with NatLab() as lab:` builds it and always tears it down.
    """

    def __init__(self, name: str | None = None, nat_a: str = "port-restricted",
                 nat_b: str = "port-restricted") -> None:
        self.name = name or random_lab_name()
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"lab name {self.name!r}: 1-12 lower-case letters/digits, "
                             "starting with a letter")
        self.nat = {"a": check_nat_type(nat_a), "b": check_nat_type(nat_b)}
        self.loss = {"a": 0.0, "b": 0.0}
        self.cut = False  # cut_direct(): the two routers cannot reach each other

    # --- naming ---------------------------------------------------------------------------

    @staticmethod
    def node_name(node: str) -> str:
        """The canonical node name ("server" is another name for "internet")."""
        node = NODE_ALIASES.get(node, node)
        if node not in NODES:
            raise ValueError(f"unknown node {node!r}: one of {', '.join(NODES)}")
        return node

    def netns(self, node: str) -> str:
        """The namespace name of `node`, e.g. `nsp1a2b3-peer-a`."""
        return f"{self.name}-{self.node_name(node)}"

    @property
    def namespaces(self) -> list[str]:
        return [self.netns(node) for node in NODES]

    @property
    def state_path(self) -> Path:
        return STATE_DIR / f"{self.name}.json"

    # --- addresses ------------------------------------------------------------------------

    @property
    def stun_addresses(self) -> tuple[str, str]:
        """The two internet-side server addresses (RFC 5780 needs two)."""
        return STUN_ADDRESSES

    @property
    def addresses(self) -> dict[str, str]:
        """Each node's main IPv4 address (routers: their WAN address)."""
        return {"internet": STUN_ADDRESSES[0],
                "nat-a": PLAN["a"].wan_ip, "nat-b": PLAN["b"].wan_ip,
                "peer-a": PLAN["a"].peer_ip, "peer-b": PLAN["b"].peer_ip}

    def address(self, node: str) -> str:
        return self.addresses[self.node_name(node)]

    def router(self, side: str) -> Router:
        return Router(wan_if=WAN_IF, lan_if=LAN_IF, peer_ip=PLAN[_check_side(side)].peer_ip)

    # --- running things inside --------------------------------------------------------------

    def run(self, node: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """`subprocess.run(argv, **kwargs)` inside `node`'s namespace."""
        return subprocess.run(netns_argv(self.netns(node), argv), **kwargs)

    def popen(self, node: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """`subprocess.Popen(argv, **kwargs)` inside `node`'s namespace; the caller stops it."""
        return subprocess.Popen(netns_argv(self.netns(node), argv), **kwargs)

    def socket(self, node: str, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """An IPv4 socket living in `node`'s namespace, usable from this process."""
        return socket_in_netns(self.netns(node), socket.AF_INET, kind)

    def thread(self, node: str, target: Callable[..., object], *args: object,
               name: str | None = None) -> threading.Thread:
        """A thread (not started) that runs `target(*args)` inside `node`'s namespace:
        every socket it creates lives there (e.g. a whole peer with its event loop)."""
        return thread_in_netns(self.netns(node), target, *args,
                               name=name or f"{self.name}-{self.node_name(node)}")

    # --- life cycle ---------------------------------------------------------------------------

    def up(self) -> NatLab:
        """Build the lab. On any failure everything built so far is removed again."""
        check_root()
        if self.state_path.exists() or any(netns_exists(ns) for ns in self.namespaces):
            raise LabError(f"lab {self.name!r} already exists: "
                           f"`netsprint lab down --name {self.name}` removes it")
        # The state file comes first, so even a lab that dies half-built can be found and
        # removed by `netsprint lab down --all`.
        self._save_state("building")
        try:
            self._build()
            for side in SIDES:
                self.set_nat(side, self.nat[side])
            self._save_state("up")
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Remove every namespace of this lab (and with them every veth and nft table),
        then the state file. Safe to call twice and after a half-built `up()`."""
        errors = []
        for netns in self.namespaces:
            try:
                remove_netns(netns)
            except (LabError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{netns}: {exc}")
        if errors:
            raise LabError("lab teardown incomplete: " + "; ".join(errors))
        self.state_path.unlink(missing_ok=True)

    def __enter__(self) -> NatLab:
        return self.up()

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # --- NAT and loss -------------------------------------------------------------------------

    def set_nat(self, side: str, nat_type: str) -> None:
        """Make router `side` ("a" or "b") a NAT of `nat_type` (one nft transaction).

        Flows the router already tracks keep their old translation until conntrack forgets
        them (30 s idle for UDP), as on a real router reconfigured live; new flows follow
        the new rules.
        """
        side = _check_side(side)
        nft_load(self.netns(f"nat-{side}"), nft_script(nat_type, self.router(side)))
        self.nat[side] = nat_type
        self._remember()

    def set_loss(self, side: str, percent: float) -> None:
        """Drop `percent` % of the packets router `side` forwards, both ways (0: no loss)."""
        side = _check_side(side)
        nft_load(self.netns(f"nat-{side}"), loss_script(percent))
        self.loss[side] = float(percent)
        self._remember()

    def cut_direct(self, cut: bool = True) -> None:
        """Cut (or, with False, restore) the path between the two routers, nothing else.

        A `bridge` table in the internet namespace drops frames the bridge forwards between
        the routers' ports, so peer<->peer traffic dies (direct or not, whatever the NAT
        types) while both peers still reach the addresses on the bridge itself: the
        STUN/relay servers. That is a dead direct path with a working relay (weeks 5-6).
        Idempotent; `down()` removes it with the namespace.
        """
        ports = (bridge_port("a"), bridge_port("b"))
        nft_load(self.netns("internet"), cut_script(ports, cut))
        self.cut = bool(cut)
        self._remember()

    def flush_conntrack(self, side: str | None = None) -> None:
        """Forget router `side`'s NAT mappings (both routers when None), between experiments.

        Two kinds of state make a mapping: conntrack's entries (the translation, and the
        "established" that lets replies in) and the recipe's own nft sets (full-cone's
        `@mapped_ports`, restricted's `@contacted`). Reloading the NAT table empties the
        sets; a ctnetlink flush (`conntrack_flush`) empties conntrack.
        """
        for each in SIDES if side is None else (_check_side(side),):
            self.set_nat(each, self.nat[each])
            conntrack_flush(self.netns(f"nat-{each}"))

    def conntrack(self, node: str) -> list[str]:
        """What conntrack tracks in `node` (a router, usually): one line per connection."""
        return conntrack_entries(self.netns(node))

    # --- state file -----------------------------------------------------------------------------

    @classmethod
    def load(cls, name: str) -> NatLab:
        """The lab `netsprint lab up --name NAME` built (from its state file)."""
        path = STATE_DIR / f"{name}.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise LabError(f"no lab named {name!r}: `netsprint lab up --name {name}` builds one"
                           ) from exc
        lab = cls(state["name"], state["nat"]["a"], state["nat"]["b"])
        lab.loss = {side: float(state.get("loss", {}).get(side, 0.0)) for side in SIDES}
        lab.cut = bool(state.get("cut", False))
        return lab

    def describe(self) -> dict:
        """What the state file holds: names, namespaces, addresses, NAT types, loss, cut."""
        return {"name": self.name, "namespaces": dict(zip(NODES, self.namespaces)),
                "addresses": self.addresses, "stun_addresses": list(STUN_ADDRESSES),
                "nat": dict(self.nat), "loss": dict(self.loss), "cut": self.cut}

    def _remember(self) -> None:
        """Record a change in the state file of a lab that has one (one `up()` built)."""
        if self.state_path.exists():
            self._save_state("up")

    def _save_state(self, status: str) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {**self.describe(), "status": status}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_path)  # atomic: a reader never sees half a file

    # --- building -------------------------------------------------------------------------------

    def _build(self) -> None:
        for netns in self.namespaces:
            run_checked(["ip", "netns", "add", netns])
            ip_batch(netns, ["link set lo up"])
        self._build_internet()
        for side in SIDES:
            self._build_side(side)

    def _build_internet(self) -> None:
        commands = [f"link add {BRIDGE} type bridge", f"link set {BRIDGE} up"]
        commands += [f"addr add {ip}/{WAN_PREFIX_LEN} dev {BRIDGE}" for ip in STUN_ADDRESSES]
        ip_batch(self.netns("internet"), commands)

    def _build_side(self, side: str) -> None:
        plan, other = PLAN[side], PLAN[other_side(side)]
        router, peer, internet = (self.netns(f"nat-{side}"), self.netns(f"peer-{side}"),
                                  self.netns("internet"))
        # Each veth is born inside the router's namespace with its other end placed
        # directly into the neighbour's: it never exists in the root namespace.
        port = bridge_port(side)
        ip_batch(router, [
            f"link add {WAN_IF} type veth peer name {port} netns {internet}",
            f"link add {LAN_IF} type veth peer name {PEER_IF} netns {peer}",
            f"addr add {plan.wan_ip}/{WAN_PREFIX_LEN} dev {WAN_IF}",
            f"addr add {plan.gateway_ip}/{plan.lan_prefix_len} dev {LAN_IF}",
            f"link set {WAN_IF} up", f"link set {LAN_IF} up",
            # The other LAN is reachable through the other router: only "none" lets it in.
            f"route add {other.lan_prefix} via {other.wan_ip}",
        ])
        ip_batch(internet, [f"link set {port} master {BRIDGE}", f"link set {port} up",
                            # Routes to the LAN matter only for NAT type "none"; every
                            # other type drops new WAN->LAN flows in its forward filter.
                            f"route add {plan.lan_prefix} via {plan.wan_ip}"])
        ip_batch(peer, [f"addr add {plan.peer_ip}/{plan.lan_prefix_len} dev {PEER_IF}",
                        f"link set {PEER_IF} up",
                        f"route add default via {plan.gateway_ip}"])
        # Forwarding is a per-namespace sysctl: this changes the router, not the host.
        run_checked(netns_argv(router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))


def remove_netns(netns: str) -> None:
    """Stop the processes inside `netns` and delete it; nothing when it is gone. A process
    still inside would keep the namespace (and its veths) alive after `ip netns delete`;
    callers own every process in their namespaces (a lab started them there)."""
    if not netns_exists(netns):
        return
    pids = netns_pids(netns)
    if pids:
        stop_pids(pids)
    run_checked(["ip", "netns", "delete", netns])


def _check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side must be 'a' or 'b', not {side!r}")
    return side
