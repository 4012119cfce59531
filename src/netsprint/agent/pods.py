"""Pod resolvers: which pod a socket belongs to, and which pod holds a peer address.

The kernel knows a socket's cgroup id and addresses; Kubernetes knows pods. Each class here
implements `model.PodResolver` from one source of that knowledge:

- `LabPods`: the pod map `netsprint lab pods up` writes (cgroup id and address per pod);
- `CgroupPods`: on a real node, the kubelet's cgroup tree (`kubepods.../pod<uid>/...`)
  turns a cgroup id into a pod UID; the UID becomes a pod through another resolver;
- `KubernetesPods`: the API server, through the official `kubernetes` client: the
  cluster's pods, by address and by UID;
- `ChainResolver`: asks several in order (cgroup first, then addresses).

`kubernetes_resolver()` is the chain the agent uses in a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from netsprint.agent.model import PodRef, PodResolver, close_if_closable
from netsprint.clock import Clock, MonotonicClock
from netsprint.errors import CapabilityError

log = logging.getLogger(__name__)


# --- the lab's pod map ----------------------------------------------------------------------

@dataclass(frozen=True)
class PodIndex:
    """Pods by cgroup id and by address: what one read of a pod source gives."""

    by_cgroup: dict[int, PodRef]
    by_ip: dict[str, PodRef]

    @classmethod
    def empty(cls) -> PodIndex:
        return cls({}, {})


def index_pod_map(data: dict) -> PodIndex:
    """The pods of a pod map (`netsprint.lab.pods.PodNode.describe()`); pods still being
    built (`ready: false`) are left out: their address may not be theirs yet."""
    by_cgroup: dict[int, PodRef] = {}
    by_ip: dict[str, PodRef] = {}
    for entry in data.get("pods", []):
        if not entry.get("ready", False):
            continue
        ref = PodRef(entry["namespace"], entry["name"], entry.get("workload") or entry["name"])
        if entry.get("cgroup_id"):
            by_cgroup[int(entry["cgroup_id"])] = ref
        if entry.get("ip"):
            by_ip[entry["ip"]] = ref
    return PodIndex(by_cgroup, by_ip)


class LabPods:
    """Owns the last good read of one pod map file; re-reads it when the file changes,
    looking at most once per `recheck_interval` seconds (a scrape asks once or twice per
    flow key: without the limit each answer cost a stat() of the file).

    "Changed" is a new (inode, mtime, size): the lab replaces the file atomically (a new
    inode each time), and file timestamps come from a coarse clock, so two writes a few
    milliseconds apart can share an mtime. A missing file means no pods (the agent may start
    before the lab); a file that does not parse keeps the previous pods and logs why.
    """

    def __init__(self, map_path: Path | str, recheck_interval: float = 1.0,
                 clock: Clock | None = None) -> None:
        self.map_path = Path(map_path)
        self.recheck_interval = recheck_interval
        self.clock = clock or MonotonicClock()
        self._checked_at: float | None = None
        self._seen: tuple[int, int, int] | None = None
        self._index = PodIndex.empty()

    @classmethod
    def for_node(cls, node: str) -> LabPods:
        """The default map of lab node `node` (/run/netsprint/pods-<node>.json)."""
        from netsprint.lab.pods import default_map_path

        return cls(default_map_path(node))

    def local_pod(self, cgroup_id: int, local_ip: str) -> PodRef | None:
        index = self._current()
        return index.by_cgroup.get(cgroup_id) or index.by_ip.get(local_ip)

    def peer_pod(self, ip: str) -> PodRef | None:
        return self._current().by_ip.get(ip)

    def _current(self) -> PodIndex:
        now = self.clock.now()
        if self._checked_at is not None and now - self._checked_at < self.recheck_interval:
            return self._index
        self._checked_at = now
        try:
            st = os.stat(self.map_path)
        except FileNotFoundError:
            self._seen, self._index = None, PodIndex.empty()
            return self._index
        version = (st.st_ino, st.st_mtime_ns, st.st_size)
        if version != self._seen:
            self._seen = version
            self._reload()
        return self._index

    def _reload(self) -> None:
        try:
            self._index = index_pod_map(json.loads(self.map_path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Keep serving the last good map: a scrape must not fail on a bad file.
            log.warning("pod map %s unreadable, keeping the previous pods: %s",
                        self.map_path, exc)


# --- the kubelet's cgroup tree ----------------------------------------------------------------

# The kubelet names a pod's cgroup after its UID: `pod<uid>` with the cgroupfs driver
# (kubepods/burstable/pod1234-...), `kubepods-<qos>-pod<uid with _ for ->.slice` with the
# systemd driver. Containers are children of that directory.
POD_CGROUP = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(\.slice)?$")


def pod_uid_of_cgroup(name: str) -> str | None:
    """The pod UID a kubelet cgroup directory name carries, or None."""
    match = POD_CGROUP.search(name)
    return match.group(1).replace("_", "-") if match else None


def pod_uids_by_cgroup_id(root: Path | str) -> dict[int, str]:
    """Every cgroup at or below a kubelet pod directory under `root` (a cgroup v2 mount,
    or any tree shaped like one): its id (directory inode) -> the pod's UID.

    Only directories below one whose name contains "kubepods" count, so a `pod<uid>`
    lookalike elsewhere is ignored. A process's cgroup id is its container's cgroup, a
    child of the pod directory, so the whole subtree maps to the pod.
    """
    found: dict[int, str] = {}
    for directory, subdirs, _ in os.walk(root, onerror=_skip_vanished):
        path = Path(directory)
        uid = pod_uid_of_cgroup(path.name)
        if uid and "kubepods" in str(path.relative_to(root)):
            for below, _, _ in os.walk(path, onerror=_skip_vanished):
                found[_inode(below)] = uid
            subdirs.clear()  # the inner walk covered it
    found.pop(0, None)
    return found


def _skip_vanished(error: OSError) -> None:
    """os.walk's error hook: cgroups of exiting containers disappear mid-walk; that
    directory simply has no pods left to find."""
    log.debug("cgroup walk: %s", error)


def _inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return 0  # removed between listing and stat: dropped by the caller


class CgroupPods:
    """Owns a cgroup id -> pod UID table from the kubelet's cgroup tree, re-walked at
    most every `rescan_interval` seconds when an unknown cgroup id shows up. The UID
    becomes a pod through `uid_lookup` (e.g. `KubernetesPods.pod_by_uid`).

    Says nothing about peers: a remote address has no cgroup on this node.
    """

    def __init__(self, uid_lookup: Callable[[str], PodRef | None],
                 root: Path | str | None = None, rescan_interval: float = 10.0,
                 clock: Clock | None = None) -> None:
        if root is None:
            from netsprint.lab.pods import cgroup2_mount

            root = cgroup2_mount()
        self.root = Path(root)
        self.uid_lookup = uid_lookup
        self.rescan_interval = rescan_interval
        self.clock = clock or MonotonicClock()
        self._uids: dict[int, str] = {}
        self._scanned_at: float | None = None

    def local_pod(self, cgroup_id: int, local_ip: str) -> PodRef | None:
        uid = self.pod_uid(cgroup_id)
        return self.uid_lookup(uid) if uid else None

    def peer_pod(self, ip: str) -> PodRef | None:
        return None

    def pod_uid(self, cgroup_id: int) -> str | None:
        if cgroup_id and cgroup_id not in self._uids and self._rescan_due():
            self.rescan()
        return self._uids.get(cgroup_id)

    def rescan(self) -> None:
        self._uids = pod_uids_by_cgroup_id(self.root)
        self._scanned_at = self.clock.now()

    def _rescan_due(self) -> bool:
        # Host processes are never in the table: without a limit each of their flows
        # would walk the whole tree again.
        return (self._scanned_at is None
                or self.clock.now() - self._scanned_at >= self.rescan_interval)


# --- the Kubernetes API -----------------------------------------------------------------------

# Deployments own pods through a ReplicaSet named <deployment>-<pod-template-hash>; the hash
# is also the pod's `pod-template-hash` label. Without the label, strip what the hash looks
# like (k8s SafeEncodeString's alphabet: no vowels, no 0/1/3 that read as letters).
TEMPLATE_HASH_LABEL = "pod-template-hash"
TEMPLATE_HASH_SUFFIX = re.compile(r"-[bcdfghjklmnpqrstvwxz2456789]{1,10}$")


def workload_of(pod_name: str, owners: Iterable, labels: dict[str, str] | None) -> str:
    """The workload a pod belongs to: its controller owner's name (a Deployment's for a
    ReplicaSet's pod), else the pod's own name."""
    owners = list(owners or [])
    controller = next((o for o in owners if getattr(o, "controller", False)), None)
    owner = controller or (owners[0] if owners else None)
    if owner is None:
        return pod_name
    if owner.kind != "ReplicaSet":
        return owner.name
    template_hash = (labels or {}).get(TEMPLATE_HASH_LABEL)
    if template_hash and owner.name.endswith(f"-{template_hash}"):
        return owner.name[: -len(template_hash) - 1]
    return TEMPLATE_HASH_SUFFIX.sub("", owner.name)


FINISHED_PHASES = ("Succeeded", "Failed")  # a pod in these never runs again


def index_pod_list(pods: Iterable) -> tuple[PodIndex, dict[str, PodRef]]:
    """Kubernetes `V1Pod`s -> (pods by address, pods by UID).

    hostNetwork pods are left out of the address index: they share the node's address,
    which therefore belongs to no one pod. So are finished pods (phase Succeeded or Failed):
    they keep showing their last address after the kubelet has given it to a new pod.
    """
    by_ip: dict[str, PodRef] = {}
    by_uid: dict[str, PodRef] = {}
    for pod in pods:
        meta = pod.metadata
        ref = PodRef(meta.namespace, meta.name,
                     workload_of(meta.name, meta.owner_references, meta.labels))
        by_uid[meta.uid] = ref
        if pod.spec is not None and pod.spec.host_network:
            continue
        status = pod.status
        if status and status.phase in FINISHED_PHASES:
            continue
        addresses = [a.ip for a in (status.pod_ips or [])] if status else []
        if status and status.pod_ip:
            addresses.append(status.pod_ip)
        for address in addresses:
            by_ip[address] = ref
    return PodIndex({}, by_ip), by_uid


def _import_kubernetes():
    try:
        import kubernetes
    except ImportError as exc:
        raise CapabilityError("the `kubernetes` Python package is not installed",
                              "pip install kubernetes") from exc
    return kubernetes


def in_cluster_client():
    """A CoreV1Api from the service account Kubernetes mounts into every pod."""
    kubernetes = _import_kubernetes()
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException as exc:
        raise CapabilityError(f"not running inside a Kubernetes pod ({exc})",
                              "run the agent as the DaemonSet in deploy/, or use "
                              "`pods.source: lab` outside a cluster") from exc
    return kubernetes.client.CoreV1Api()


class KubernetesPods:
    """Owns the list of the cluster's pods, from the API server through the official client:
    their addresses and UIDs, relisted every `refresh_interval` seconds when asked. Every
    node's pods, not this node's only: a peer is named by its address, and a pod talking
    to a pod on another node must see that pod, not `external`.

    `client` is a `kubernetes.client.CoreV1Api` (default: the in-cluster one). A relist
    that fails keeps the previous pods and logs why; `refresh()` itself raises.
    """

    def __init__(self, client=None, refresh_interval: float = 30.0, clock: Clock | None = None,
                 request_timeout: float = 10.0) -> None:
        self.client = client if client is not None else in_cluster_client()
        self.refresh_interval = refresh_interval
        self.request_timeout = request_timeout
        self.clock = clock or MonotonicClock()
        self._index = PodIndex.empty()
        self._by_uid: dict[str, PodRef] = {}
        self._tried_at: float | None = None

    def refresh(self) -> None:
        """List the cluster's pods now (GET /api/v1/pods)."""
        self._tried_at = self.clock.now()
        listing = self.client.list_pod_for_all_namespaces(_request_timeout=self.request_timeout)
        self._index, self._by_uid = index_pod_list(listing.items or [])

    def local_pod(self, cgroup_id: int, local_ip: str) -> PodRef | None:
        return self._current().by_ip.get(local_ip)

    def peer_pod(self, ip: str) -> PodRef | None:
        return self._current().by_ip.get(ip)

    def pod_by_uid(self, uid: str) -> PodRef | None:
        self._current()
        return self._by_uid.get(uid)

    def close(self) -> None:
        api_client = getattr(self.client, "api_client", None)
        if api_client is not None and hasattr(api_client, "close"):
            api_client.close()

    def _current(self) -> PodIndex:
        due = (self._tried_at is None
               or self.clock.now() - self._tried_at >= self.refresh_interval)
        if due:
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001  (ApiException, urllib3, OSError...)
                # Any failure of the relist keeps the last pods: the next try is one
                # interval away, so a dead API server costs one request per interval.
                log.warning("listing pods failed, keeping %d known pods: %s",
                            len(self._by_uid), exc)
        return self._index


# --- several sources --------------------------------------------------------------------------

class ChainResolver:
    """Asks its resolvers in order; the first that knows the answer gives it. Owns nothing
    but the order (closing it closes the resolvers that can be closed)."""

    def __init__(self, *resolvers: PodResolver) -> None:
        self.resolvers = resolvers

    def local_pod(self, cgroup_id: int, local_ip: str) -> PodRef | None:
        for resolver in self.resolvers:
            found = resolver.local_pod(cgroup_id, local_ip)
            if found is not None:
                return found
        return None

    def peer_pod(self, ip: str) -> PodRef | None:
        for resolver in self.resolvers:
            found = resolver.peer_pod(ip)
            if found is not None:
                return found
        return None

    def close(self) -> None:
        for resolver in self.resolvers:
            close_if_closable(resolver)


def kubernetes_resolver(client=None, cgroup_root: Path | str | None = None) -> ChainResolver:
    """The agent's resolver in a cluster: a local socket by its cgroup (exact, also for
    pods sharing an address), else by address; peers by address."""
    api = KubernetesPods(client)
    return ChainResolver(CgroupPods(api.pod_by_uid, cgroup_root), api)


__all__ = ["CgroupPods", "ChainResolver", "KubernetesPods", "LabPods", "PodIndex",
           "in_cluster_client", "index_pod_list", "index_pod_map", "kubernetes_resolver",
           "pod_uid_of_cgroup", "pod_uids_by_cgroup_id", "workload_of"]
