"""Pods on one machine (weeks 14-15): the Kubernetes network model as namespaces on a bridge.

A `PodNode` is what a CNI plugin (the reference `bridge` plugin with `host-local` IPAM)
builds on a Kubernetes node, made by hand:

```
  node namespace <node>-node                        (the host's root namespace: untouched)
  ┌──────────────── bridge cni0 198.51.100.1/24 ────────────────┐
  └── veth-10 ──────────── veth-11 ──────────── veth-12 ────────┘
        │ veth                │ veth               │ veth
      eth0 198.51.100.10    eth0 198.51.100.11   eth0 198.51.100.12
      <node>-default-web-0  <node>-default-web-1 <node>-default-db-0   (one netns per pod)
      cgroup netsprint/<node>/default_web-0 ...                         (one cgroup v2 dir per pod)
```

Every pod reaches every other pod at its own address, without NAT: the Kubernetes network
model's first rule. The pod map (`/run/netsprint/pods-<node>.json`) tells the agent which
address and which cgroup id belongs to which pod.

The host's own address is in 192.0.2.0/24, so the pod network is 198.51.100.0/24 (RFC 5737
TEST-NET-2) and it lives entirely inside the node namespace: no route, address or link is
ever added to the root namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from netsprint.errors import CapabilityError
from netsprint.lab import LabError
from netsprint.lab.topology import (COMMAND_TIMEOUT, NAME_PATTERN, NETNS_DIR, call_in_netns,
                                    ip_batch, netns_exists, remove_netns, run_checked)

T = TypeVar("T")

POD_NETWORK = "198.51.100.0/24"   # RFC 5737 TEST-NET-2; the host itself is in 192.0.2.0/24
FIRST_POD_OFFSET = 10             # .1 is the bridge (the pods' gateway), pods from .10 up
BRIDGE = "cni0"                   # the name the CNI bridge plugin gives its bridge
POD_IF = "eth0"                   # the pod's end of its veth, inside the pod's namespace
MAP_DIR = Path("/run/netsprint")
CGROUP_PARENT = "netsprint"       # <cgroup2>/netsprint/<node>/<namespace>_<pod>
DEFAULT_PODS = ("web-0", "web-1", "db-0")
# Kubernetes object names in namespaces and pods are DNS-1123 labels (RFC 1123, 63 chars).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ORDINAL_SUFFIX = re.compile(r"-\d+$")  # StatefulSet pods are <workload>-<ordinal>


# --- pods and their addresses ---------------------------------------------------------------

@dataclass(frozen=True)
class PodSpec:
    """What to build: a pod's name, its Kubernetes namespace and its workload (owner)."""

    name: str
    namespace: str = "default"
    workload: str = ""

    def __post_init__(self) -> None:
        for what, value in (("pod name", self.name), ("namespace", self.namespace)):
            if not DNS_LABEL.match(value):
                raise ValueError(f"{what} {value!r}: lower-case letters, digits and '-' "
                                 "(a DNS label, at most 63 characters)")
        if not self.workload:
            # web-0 and web-1 belong to workload "web", as a StatefulSet's pods do.
            object.__setattr__(self, "workload", ORDINAL_SUFFIX.sub("", self.name))

    @classmethod
    def parse(cls, text: str) -> PodSpec:
        """`[namespace/]name`, e.g. `web-0` or `shop/db-0`."""
        namespace, _, name = text.strip().rpartition("/")
        return cls(name, namespace or "default")

    @property
    def qualified(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_pod_list(text: str) -> list[PodSpec]:
    """`web-0,web-1,shop/db-0` -> PodSpecs (what `--pods` takes)."""
    specs = [PodSpec.parse(item) for item in text.split(",") if item.strip()]
    if not specs:
        raise ValueError("no pods given")
    return specs


class IpamExhausted(LabError):
    """Every address of the pod network is handed out."""


class Ipam:
    """Owns the address pool of one pod network: hands out the lowest free address from
    `.10` up, takes addresses back, and refuses when none is left (the `host-local` CNI
    IPAM plugin's job, without its files)."""

    def __init__(self, network: str = POD_NETWORK, first_offset: int = FIRST_POD_OFFSET) -> None:
        self.network = ipaddress.ip_network(network)
        self.gateway = str(self.network.network_address + 1)
        last = self.network.broadcast_address - 1  # the broadcast address is nobody's
        first = self.network.network_address + first_offset
        self._pool = [str(ipaddress.ip_address(n)) for n in range(int(first), int(last) + 1)]
        self._owners: dict[str, str] = {}  # address -> owner (a pod's qualified name)

    @property
    def prefix_len(self) -> int:
        return self.network.prefixlen

    @property
    def size(self) -> int:
        return len(self._pool)

    def allocate(self, owner: str) -> str:
        for address in self._pool:
            if address not in self._owners:
                self._owners[address] = owner
                return address
        raise IpamExhausted(f"pod network {self.network} is full ({self.size} addresses "
                            "handed out): remove a pod first")

    def reserve(self, address: str, owner: str) -> None:
        """Mark `address` as `owner`'s (restoring a node from its map file)."""
        if address not in self._pool:
            raise LabError(f"{address} is not a pod address of {self.network}")
        if self._owners.get(address, owner) != owner:
            raise LabError(f"{address} already belongs to {self._owners[address]}")
        self._owners[address] = owner

    def release(self, address: str) -> None:
        if self._owners.pop(address, None) is None:
            raise LabError(f"{address} was not handed out")


@dataclass
class Pod:
    """One built (or being built) pod: where it lives and how the kernel knows it."""

    name: str
    namespace: str
    workload: str
    ip: str
    netns: str
    host_if: str             # its veth's end on the bridge, in the node namespace
    cgroup_path: str         # the pod's cgroup v2 directory (a file system path)
    cgroup_id: int = 0       # that directory's inode number; 0 until it exists
    ready: bool = False      # wired up completely

    @property
    def qualified(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def spec(self) -> PodSpec:
        return PodSpec(self.name, self.namespace, self.workload)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Pod:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


# --- cgroup v2 --------------------------------------------------------------------------------

def cgroup2_mount(mounts: str | None = None) -> Path:
    """Where the cgroup v2 hierarchy is mounted, from /proc/mounts (or `mounts`, its text).

    The unified layout mounts it at /sys/fs/cgroup; the hybrid layout (cgroup v1
    controllers plus v2 for process tracking, as on this machine) at /sys/fs/cgroup/unified.
    """
    if mounts is None:
        mounts = Path("/proc/mounts").read_text()
    found = [_unescape_mount(line.split()[1]) for line in mounts.splitlines()
             if len(line.split()) >= 3 and line.split()[2] == "cgroup2"]
    if not found:
        raise CapabilityError("no cgroup v2 hierarchy is mounted",
                              "mount one: `mount -t cgroup2 none /sys/fs/cgroup/unified`")
    preferred = [path for path in found if path == "/sys/fs/cgroup"]
    return Path((preferred or found)[0])


def _unescape_mount(field_text: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes (\\040...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def cgroup_pids(cgroup_dir: Path) -> list[int]:
    """The processes in one cgroup (not its children); [] when the directory is gone."""
    try:
        return [int(word) for word in (cgroup_dir / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def process_cgroup(pid: int | str = "self") -> str:
    """A process's cgroup v2 path, relative to the hierarchy's root (`0::/...` line)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise LabError(f"process {pid} is in no cgroup v2 (no `0::` line in /proc/{pid}/cgroup)")


def join_cgroup_argv(cgroup_dir: Path, argv: list[str]) -> list[str]:
    """`argv`, run by a shell that first writes its own PID into `cgroup_dir` and then
    execs it (same PID): so the command is inside the cgroup from its first instruction.

    A shell and not `preexec_fn`: Python documents preexec_fn as unsafe in a process with
    threads, and the tests run servers in threads.
    """
    script = 'echo $$ > "$0" && exec "$@"'
    return ["sh", "-c", script, str(cgroup_dir / "cgroup.procs"), *argv]


CGROUP_JOIN_TIMEOUT = 5.0  # seconds for a new child to write itself into its cgroup


def wait_in_cgroup(process: subprocess.Popen, cgroup_dir: Path,
                   timeout: float = CGROUP_JOIN_TIMEOUT) -> None:
    """Block until `process` is listed in `cgroup_dir` (or has exited); LabError after
    `timeout` seconds. The child joins by itself (`join_cgroup_argv`) a moment after fork."""
    deadline = time.monotonic() + timeout
    while process.pid not in cgroup_pids(cgroup_dir):
        if process.poll() is not None:
            return  # exited (e.g. the command was not found): nothing left to attribute
        if time.monotonic() > deadline:
            raise LabError(f"process {process.pid} did not join {cgroup_dir} "
                           f"within {timeout:.0f} s")
        time.sleep(0.001)


# --- the node ---------------------------------------------------------------------------------

def random_node_name() -> str:
    return "pn" + secrets.token_hex(3)[:5]


def default_map_path(node: str) -> Path:
    return MAP_DIR / f"pods-{node}.json"


def check_root() -> None:
    if os.geteuid() != 0:
        raise CapabilityError("the pods lab needs root (network namespaces, veths, cgroups)",
                              "run it as root, e.g. `sudo netsprint lab pods up`")


class PodNode:
    """Owns one "node": a node namespace holding the bridge `cni0`, one namespace per pod,
    a veth pair per pod (`eth0` in the pod, `veth-<n>` on the bridge), a cgroup v2
    directory per pod, the address pool, and the pod map file.

    `up()` adds the node and any pod it does not have yet (idempotent); `down()` removes
    all of it, also after a half-built `up()`, and is safe to call twice. Use it as a
    context manager: `with PodNode(pods=["web-0", "db-0"]) as node:`.
    """

    def __init__(self, name: str | None = None,
                 pods: Iterable[PodSpec | str] = DEFAULT_PODS,
                 map_path: Path | str | None = None,
                 cgroup_root: Path | str | None = None) -> None:
        self.name = name or random_node_name()
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"node name {self.name!r}: 1-12 lower-case letters/digits, "
                             "starting with a letter")
        self.specs = [p if isinstance(p, PodSpec) else PodSpec.parse(p) for p in pods]
        self.map_path = Path(map_path) if map_path else default_map_path(self.name)
        self._cgroup_root = Path(cgroup_root) if cgroup_root else None
        self.ipam = Ipam()
        self._pods: dict[str, Pod] = {}   # qualified name -> pod, in creation order
        self._lock = threading.Lock()     # map writes from add_pod/remove_pod in threads

    # --- names -------------------------------------------------------------------------------

    @property
    def netns(self) -> str:
        """The node namespace (bridge and host-side veths)."""
        return f"{self.name}-node"

    @property
    def cgroup_root(self) -> Path:
        if self._cgroup_root is None:
            self._cgroup_root = cgroup2_mount()
        return self._cgroup_root

    @property
    def cgroup_dir(self) -> Path:
        """This node's cgroup directory; one sub-directory per pod."""
        return self.cgroup_root / CGROUP_PARENT / self.name

    @property
    def gateway(self) -> str:
        return self.ipam.gateway

    def pod_netns(self, spec: PodSpec) -> str:
        return f"{self.name}-{spec.namespace}-{spec.name}"

    def pod_cgroup_dir(self, spec: PodSpec) -> Path:
        # "_" is not allowed in a DNS label, so namespace_pod cannot be ambiguous.
        return self.cgroup_dir / f"{spec.namespace}_{spec.name}"

    @staticmethod
    def host_if(ip: str) -> str:
        """The bridge-side veth name: `veth-<last octet>`, unique per node, < IFNAMSIZ (15)."""
        return f"veth-{ip.rsplit('.', 1)[1]}"

    # --- looking pods up ----------------------------------------------------------------------

    @property
    def pods(self) -> list[Pod]:
        return list(self._pods.values())

    def pod(self, name: str) -> Pod:
        """A pod by `name` or `namespace/name`; LabError when unknown or ambiguous."""
        if "/" in name:
            if name in self._pods:
                return self._pods[name]
            raise LabError(f"node {self.name!r} has no pod {name!r}")
        matches = [pod for pod in self._pods.values() if pod.name == name]
        if len(matches) != 1:
            known = ", ".join(self._pods) or "none"
            why = "no pod" if not matches else "more than one pod"
            raise LabError(f"node {self.name!r} has {why} named {name!r} (pods: {known})")
        return matches[0]

    def address(self, pod: str) -> str:
        return self.pod(pod).ip

    def cgroup_id(self, pod: str) -> int:
        """The pod's cgroup id: the inode number of its cgroup v2 directory, which is what
        `bpf_get_current_cgroup_id()` returns for a task inside it (kernfs node id), read
        when the directory was made and written to the pod map."""
        return self.pod(pod).cgroup_id

    # --- running things inside a pod ------------------------------------------------------

    def pod_argv(self, pod: str, argv: list[str]) -> list[str]:
        """`argv` run inside the pod: its netns entered first, then its cgroup joined, so
        a process listed in the pod's cgroup is always in its namespace already.

        `nsenter --net` and not `ip netns exec`: the latter also remounts /sys in a new
        mount namespace, which hides /sys/fs/cgroup from the cgroup-joining shell.
        """
        found = self.pod(pod)
        return ["nsenter", f"--net={NETNS_DIR}/{found.netns}", "--",
                *join_cgroup_argv(Path(found.cgroup_path), argv)]

    def exec(self, pod: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """`subprocess.run(argv, **kwargs)` inside the pod's namespace and cgroup."""
        return subprocess.run(self.pod_argv(pod, argv), **kwargs)

    def popen(self, pod: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """`subprocess.Popen(argv, **kwargs)` inside the pod's namespace and cgroup; the
        caller stops it (`down()` stops whatever is still running in the pod).

        Returns once the child is in the pod's cgroup (or has exited), so whatever the
        caller measures next is attributed to the pod.
        """
        found = self.pod(pod)
        process = subprocess.Popen(self.pod_argv(pod, argv), **kwargs)
        wait_in_cgroup(process, Path(found.cgroup_path))
        return process

    def call(self, pod: str, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` run by a short-lived thread inside the pod's network namespace.

        The thread does NOT join the pod's cgroup: a thread can move alone only into a
        cgroup in threaded mode, inside the threaded subtree that holds its process, and
        pod cgroups are domain cgroups (as a real pod's are). So the agent attributes
        traffic from `call` by the pod's address; `exec`/`popen` are the
        cgroup-exact path.
        """
        return call_in_netns(self.pod(pod).netns, function, *args)

    # --- life cycle ---------------------------------------------------------------------------

    def up(self) -> PodNode:
        """Build the node and every pod of `specs` it lacks. A node left by an earlier `up`
        (its map file) is taken over: its pods stay, missing ones are added. On any failure
        everything of this node is removed again."""
        check_root()
        self._restore()
        try:
            self._drop_broken_pods()
            if not netns_exists(self.netns):
                self._write_map("building")  # first, so `down` finds even a half-built node
                self._build_node()
            for spec in self.specs:
                if spec.qualified not in self._pods:
                    self._add(spec)
            self._write_map("up")
        except BaseException:
            self.down()
            raise
        return self

    def add_pod(self, spec: PodSpec | str) -> Pod:
        """Add one pod to a node that is up; a pod that fails half-way is removed again."""
        spec = spec if isinstance(spec, PodSpec) else PodSpec.parse(spec)
        if spec.qualified in self._pods:
            raise LabError(f"pod {spec.qualified} already exists on node {self.name!r}")
        try:
            pod = self._add(spec)
        except BaseException:
            if spec.qualified in self._pods:
                self.remove_pod(spec.qualified)
            raise
        self._write_map("up")
        return pod

    def remove_pod(self, name: str) -> None:
        """Stop what runs in the pod, delete its namespace (and veth) and cgroup, give its
        address back."""
        self._forget(self.pod(name))
        self._write_map("up")

    def down(self) -> None:
        """Remove every pod, the node namespace, the cgroups and the map file.

        Processes inside a pod's namespace were started there (`exec`/`popen`) and are
        stopped. A process that sits in a pod's cgroup but not in its namespace was put
        there by someone else: it is left alone and the teardown fails naming it.
        """
        self._restore()
        errors = []
        for pod in self._all_known_pods():
            try:
                self._remove_pod_resources(pod)
            except (LabError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{pod.qualified}: {exc}")
        try:
            self._remove_node_resources()
        except (LabError, OSError, subprocess.SubprocessError) as exc:
            errors.append(f"node: {exc}")
        if errors:
            raise LabError(f"pods node {self.name!r} teardown incomplete: " + "; ".join(errors))
        self._pods.clear()
        self.ipam = Ipam()
        self.map_path.unlink(missing_ok=True)

    def __enter__(self) -> PodNode:
        return self.up()

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    def _drop_broken_pods(self) -> None:
        """Pods the map lists but an earlier run did not finish (or that lost their
        namespace or cgroup since, or whose node namespace, holding their veths, is gone)
        are removed, so `up` builds them afresh."""
        node_there = netns_exists(self.netns)
        for pod in list(self._pods.values()):
            intact = (node_there and pod.ready and netns_exists(pod.netns)
                      and os.path.isdir(pod.cgroup_path))
            if not intact:
                self._forget(pod)

    def _forget(self, pod: Pod) -> None:
        """Remove the pod's resources, give its address back and drop it from this node."""
        self._remove_pod_resources(pod)
        self.ipam.release(pod.ip)
        del self._pods[pod.qualified]

    # --- the map file -------------------------------------------------------------------------

    @classmethod
    def load(cls, name: str, map_path: Path | str | None = None) -> PodNode:
        """The node an earlier `up` built, from its map file."""
        node = cls(name, pods=(), map_path=map_path)
        if not node.map_path.exists():
            raise LabError(f"no pods node {name!r} (no {node.map_path}): "
                           f"`netsprint lab pods up --node {name}` builds one")
        node._restore()
        node.specs = [pod.spec for pod in node.pods]
        return node

    def describe(self, status: str = "up") -> dict:
        """The map file's content: the node and every pod with its address and cgroup."""
        return {"node": self.name, "status": status, "netns": self.netns, "bridge": BRIDGE,
                "network": str(self.ipam.network), "gateway": self.gateway,
                "cgroup_root": str(self.cgroup_root), "cgroup_dir": str(self.cgroup_dir),
                "pods": [pod.to_dict() for pod in self._pods.values()]}

    def _write_map(self, status: str) -> None:
        with self._lock:
            self.map_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.map_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.describe(status), indent=2) + "\n")
            tmp.replace(self.map_path)  # atomic: the agent never reads half a file

    def _restore(self) -> None:
        """Take over the pods an earlier `up` recorded (once, when this object has none)."""
        if self._pods or not self.map_path.exists():
            return
        try:
            state = json.loads(self.map_path.read_text())
        except json.JSONDecodeError as exc:
            raise LabError(f"{self.map_path} is not JSON ({exc}): remove it and the node by "
                           "hand (`ip netns list`)") from exc
        if state.get("cgroup_root") and self._cgroup_root is None:
            self._cgroup_root = Path(state["cgroup_root"])
        for entry in state.get("pods", []):
            pod = Pod.from_dict(entry)
            self.ipam.reserve(pod.ip, pod.qualified)
            self._pods[pod.qualified] = pod

    # --- building -----------------------------------------------------------------------------

    def _build_node(self) -> None:
        run_checked(["ip", "netns", "add", self.netns])
        ip_batch(self.netns, [
            "link set lo up",
            f"link add {BRIDGE} type bridge",
            f"addr add {self.gateway}/{self.ipam.prefix_len} dev {BRIDGE}",
            f"link set {BRIDGE} up",
        ])
        self.cgroup_dir.mkdir(parents=True, exist_ok=True)

    def _add(self, spec: PodSpec) -> Pod:
        """Plan the pod in the map first, then make its cgroup, namespace and veth."""
        ip = self.ipam.allocate(spec.qualified)
        pod = Pod(spec.name, spec.namespace, spec.workload, ip, self.pod_netns(spec),
                  self.host_if(ip), str(self.pod_cgroup_dir(spec)))
        self._pods[spec.qualified] = pod
        self._write_map("building")
        Path(pod.cgroup_path).mkdir(parents=True, exist_ok=True)
        pod.cgroup_id = os.stat(pod.cgroup_path).st_ino
        run_checked(["ip", "netns", "add", pod.netns])
        self._wire(pod)
        pod.ready = True
        return pod

    def _wire(self, pod: Pod) -> None:
        """The veth: born in the node namespace with its pod end placed straight into the
        pod's, so it never exists in the root namespace."""
        ip_batch(self.netns, [
            f"link add {pod.host_if} type veth peer name {POD_IF} netns {pod.netns}",
            f"link set {pod.host_if} master {BRIDGE}",
            f"link set {pod.host_if} up",
        ])
        ip_batch(pod.netns, [
            "link set lo up",
            f"addr add {pod.ip}/{self.ipam.prefix_len} dev {POD_IF}",
            f"link set {POD_IF} up",
            # Pods on the same bridge are one hop away; the default route is where the
            # node would route everything else (here nothing answers beyond the bridge).
            f"route add default via {self.gateway}",
        ])

    # --- removing -----------------------------------------------------------------------------

    def _all_known_pods(self) -> list[Pod]:
        """Pods from this object, plus any whose cgroup directory exists without an entry
        (the map file is gone or was another one): the directory name gives its names."""
        pods = dict(self._pods)
        if self.cgroup_dir.is_dir():
            for child in sorted(self.cgroup_dir.iterdir()):
                namespace, sep, name = child.name.partition("_")
                if child.is_dir() and sep and f"{namespace}/{name}" not in pods:
                    spec = PodSpec(name, namespace)
                    pods[spec.qualified] = Pod(name, namespace, spec.workload, "",
                                               self.pod_netns(spec), "", str(child))
        return list(pods.values())

    def _remove_pod_resources(self, pod: Pod) -> None:
        self._delete_host_link(pod)
        remove_netns(pod.netns)
        remove_cgroup(Path(pod.cgroup_path))

    def _delete_host_link(self, pod: Pod) -> None:
        """Delete the pod's veth pair now. `ip netns delete` only unmounts the namespace;
        the kernel frees it (and the veth in it) later, from a workqueue (cleanup_net),
        so a new pod given the same address, hence the same `veth-<n>`, could collide."""
        if not pod.host_if or not netns_exists(self.netns):
            return
        shown = subprocess.run(["ip", "-n", self.netns, "link", "show", "dev", pod.host_if],
                               capture_output=True, timeout=COMMAND_TIMEOUT)
        if shown.returncode == 0:
            ip_batch(self.netns, [f"link delete {pod.host_if}"])  # both ends go at once

    def _remove_node_resources(self) -> None:
        remove_netns(self.netns)
        remove_cgroup(self.cgroup_dir)
        parent = self.cgroup_dir.parent
        if parent.is_dir() and not any(p.is_dir() for p in parent.iterdir()):
            remove_cgroup(parent)  # the shared netsprint/ directory, when no node is left


def remove_cgroup(cgroup_dir: Path) -> None:
    """rmdir a cgroup that has no processes; a LabError naming any process still inside.

    cgroup v2 refuses to remove a populated cgroup (EBUSY). Processes of the pod were
    stopped with its namespace before this runs, so whatever is left came from elsewhere.
    """
    if not cgroup_dir.is_dir():
        return
    strangers = cgroup_pids(cgroup_dir)
    if strangers:
        names = ", ".join(f"{pid} ({_comm(pid)})" for pid in strangers)
        raise LabError(f"cgroup {cgroup_dir} holds processes netsprint did not start: {names}; "
                       f"move them out (`echo PID > {cgroup_dir.parent}/cgroup.procs`) or stop "
                       "them, then run down again")
    os.rmdir(cgroup_dir)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"


# --- leftover check (tests) -------------------------------------------------------------------

def node_traces(name: str, map_path: Path | str | None = None,
                cgroup_root: Path | str | None = None) -> list[str]:
    """Everything of node `name` still on this machine: namespaces named `<name>-...`, its
    cgroup directory, its map file, and pod-network links in the root namespace (where
    none may ever be). Empty means clean."""
    listing = run_checked(["ip", "netns", "list"])
    traces = [f"netns {line.split()[0]}" for line in listing.splitlines()
              if line.strip() and line.split()[0].startswith(f"{name}-")]
    root = Path(cgroup_root) if cgroup_root else cgroup2_mount()
    if (root / CGROUP_PARENT / name).exists():
        traces.append(f"cgroup {root / CGROUP_PARENT / name}")
    path = Path(map_path) if map_path else default_map_path(name)
    if path.exists():
        traces.append(f"map file {path}")
    traces += [f"root-namespace link {link}" for link in _root_links()
               if link == BRIDGE or re.fullmatch(r"veth-\d+", link)]
    return sorted(traces)


def _root_links() -> list[str]:
    out = run_checked(["ip", "-o", "link"])
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def node_names() -> list[str]:
    """Every node with a map file in the default place."""
    if not MAP_DIR.is_dir():
        return []
    return sorted(path.stem[len("pods-"):] for path in MAP_DIR.glob("pods-*.json"))


__all__ = ["BRIDGE", "DEFAULT_PODS", "POD_NETWORK", "Ipam", "IpamExhausted", "Pod", "PodNode",
           "PodSpec", "cgroup2_mount", "cgroup_pids", "default_map_path", "join_cgroup_argv",
           "node_names", "node_traces", "parse_pod_list", "process_cgroup", "remove_cgroup",
           "wait_in_cgroup"]
