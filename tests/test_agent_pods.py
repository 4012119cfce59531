"""Pod resolvers: the lab's pod map, the kubelet's cgroup tree, the Kubernetes API, chains.

No cluster runs here, so `KubernetesPods` is tested with the official `kubernetes` client
talking to a small HTTP server on 127.0.0.1 that serves `/api/v1/pods` as the API server
would: the one place in the project a fake server stands in for the real one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from netsprint.agent.model import PodRef
from netsprint.agent.pods import (CgroupPods, ChainResolver, KubernetesPods, LabPods,
                                  in_cluster_client, index_pod_map, kubernetes_resolver,
                                  pod_uid_of_cgroup, pod_uids_by_cgroup_id, workload_of)
from netsprint.clock import FakeClock
from netsprint.errors import CapabilityError

WEB_0 = PodRef("default", "web-0", "web")
DB_0 = PodRef("shop", "db-0", "db")


# --- LabPods --------------------------------------------------------------------------------------

def map_entry(ref: PodRef, ip: str, cgroup_id: int, ready: bool = True) -> dict:
    return {"name": ref.name, "namespace": ref.namespace, "workload": ref.workload, "ip": ip,
            "cgroup_id": cgroup_id, "cgroup_path": f"/cg/{ref.namespace}_{ref.name}",
            "netns": f"n-{ref.name}", "host_if": "veth-10", "ready": ready}


def write_map(path: Path, entries: list[dict]) -> None:
    """As the lab does: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"node": "n", "pods": entries}))
    tmp.replace(path)


@pytest.mark.unit
def test_lab_pods_resolves_local_by_cgroup_then_address_and_peers_by_address(tmp_path):
    path = tmp_path / "pods-n.json"
    write_map(path, [map_entry(WEB_0, "198.51.100.10", 501),
                     map_entry(DB_0, "198.51.100.11", 502)])
    pods = LabPods(path)
    assert pods.local_pod(502, "198.51.100.10") == DB_0     # the cgroup wins
    assert pods.local_pod(999, "198.51.100.10") == WEB_0    # unknown cgroup: the address
    assert pods.local_pod(999, "192.0.2.7") is None          # the host itself
    assert pods.peer_pod("198.51.100.11") == DB_0
    assert pods.peer_pod("203.0.113.5") is None


@pytest.mark.unit
def test_lab_pods_ignores_pods_still_being_built():
    index = index_pod_map({"pods": [map_entry(WEB_0, "198.51.100.10", 501, ready=False),
                                    map_entry(DB_0, "198.51.100.11", 502)]})
    assert index.by_ip == {"198.51.100.11": DB_0}
    assert index.by_cgroup == {502: DB_0}


@pytest.mark.unit
def test_lab_pods_rereads_a_replaced_map_and_forgets_a_removed_one(tmp_path):
    path = tmp_path / "pods-n.json"
    clock = FakeClock()
    pods = LabPods(path, recheck_interval=1.0, clock=clock)
    assert pods.peer_pod("198.51.100.10") is None  # no file yet: no pods, no error
    write_map(path, [map_entry(WEB_0, "198.51.100.10", 501)])
    assert pods.peer_pod("198.51.100.10") is None  # not looked at again within the interval
    clock.advance(1.0)
    assert pods.peer_pod("198.51.100.10") == WEB_0
    # Replaced at once (same coarse mtime is likely): the new inode still shows the change.
    write_map(path, [map_entry(DB_0, "198.51.100.10", 502)])
    clock.advance(1.0)
    assert pods.peer_pod("198.51.100.10") == DB_0
    path.unlink()
    clock.advance(1.0)
    assert pods.peer_pod("198.51.100.10") is None


@pytest.mark.unit
def test_lab_pods_keeps_the_last_good_map_when_the_file_is_broken(tmp_path, caplog):
    path = tmp_path / "pods-n.json"
    write_map(path, [map_entry(WEB_0, "198.51.100.10", 501)])
    clock = FakeClock()
    pods = LabPods(path, clock=clock)
    assert pods.local_pod(501, "") == WEB_0
    tmp = path.with_suffix(".tmp")
    tmp.write_text("{not json")
    tmp.replace(path)
    clock.advance(pods.recheck_interval)
    with caplog.at_level(logging.WARNING, logger="netsprint.agent.pods"):
        assert pods.local_pod(501, "") == WEB_0
    assert "unreadable" in caplog.text


# --- the kubelet's cgroup tree ------------------------------------------------------------------

UID_A = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
UID_B = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
UID_LOOKALIKE = "0e9c2b5a-0000-4000-8000-0123456789ab"


def make_kubelet_tree(root: Path) -> dict[str, Path]:
    """Both kubelet cgroup drivers' layouts, plus a `pod<uid>` lookalike outside kubepods."""
    dirs = {
        # cgroupfs driver
        "a_pod": root / "kubepods" / "burstable" / f"pod{UID_A}",
        "a_container": root / "kubepods" / "burstable" / f"pod{UID_A}" / "c0ffee",
        # systemd driver: dashes of the UID become underscores in the slice name
        "b_pod": root / "kubepods.slice" / "kubepods-besteffort.slice"
                 / f"kubepods-besteffort-pod{UID_B.replace('-', '_')}.slice",
        "b_container": root / "kubepods.slice" / "kubepods-besteffort.slice"
                       / f"kubepods-besteffort-pod{UID_B.replace('-', '_')}.slice"
                       / "cri-containerd-abc.scope",
        "lookalike": root / "system.slice" / f"pod{UID_LOOKALIKE}",
        "qos": root / "kubepods" / "burstable",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return dirs


@pytest.mark.unit
def test_pod_uid_of_cgroup_reads_both_driver_spellings():
    assert pod_uid_of_cgroup(f"pod{UID_A}") == UID_A
    assert pod_uid_of_cgroup(f"kubepods-burstable-pod{UID_B.replace('-', '_')}.slice") == UID_B
    assert pod_uid_of_cgroup("kubepods-burstable.slice") is None
    assert pod_uid_of_cgroup("cri-containerd-abc.scope") is None


@pytest.mark.unit
def test_cgroup_ids_below_a_pod_directory_map_to_its_uid(tmp_path):
    dirs = make_kubelet_tree(tmp_path)
    found = pod_uids_by_cgroup_id(tmp_path)
    inode = {name: os.stat(path).st_ino for name, path in dirs.items()}
    assert found == {inode["a_pod"]: UID_A, inode["a_container"]: UID_A,
                     inode["b_pod"]: UID_B, inode["b_container"]: UID_B}


@pytest.mark.unit
def test_cgroup_pods_rescans_for_unknown_ids_at_most_once_per_interval(tmp_path):
    dirs = make_kubelet_tree(tmp_path)
    clock = FakeClock()
    asked: list[str] = []

    def lookup(uid: str) -> PodRef:
        asked.append(uid)
        return PodRef("default", f"pod-{uid[:4]}")

    pods = CgroupPods(lookup, root=tmp_path, rescan_interval=10.0, clock=clock)
    assert pods.local_pod(os.stat(dirs["b_container"]).st_ino, "").name == f"pod-{UID_B[:4]}"
    assert asked == [UID_B]
    assert pods.peer_pod("198.51.100.10") is None  # cgroups know nothing about peers
    # A container started after the walk is unknown until the interval has passed.
    late = dirs["a_pod"] / "late-container"
    late.mkdir()
    assert pods.pod_uid(os.stat(late).st_ino) is None
    clock.advance(9.9)
    assert pods.pod_uid(os.stat(late).st_ino) is None
    clock.advance(0.1)
    assert pods.pod_uid(os.stat(late).st_ino) == UID_A
    assert pods.local_pod(0, "198.51.100.10") is None  # id 0: softirq context, no task


# --- workloads ---------------------------------------------------------------------------------

def owner(kind: str, name: str, controller: bool = True) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, name=name, controller=controller)


@pytest.mark.unit
@pytest.mark.parametrize("owners, labels, expected", [
    ([owner("ReplicaSet", "web-7c9f8b6d5")], {"pod-template-hash": "7c9f8b6d5"}, "web"),
    ([owner("ReplicaSet", "api-server-5d4f7")], None, "api-server"),   # hash by its alphabet
    ([owner("StatefulSet", "db")], None, "db"),
    ([owner("DaemonSet", "netsprint-agent")], {}, "netsprint-agent"),
    ([owner("Node", "n1", controller=False), owner("Job", "backup-28", controller=True)], {},
     "backup-28"),                                                    # the controller wins
    ([], None, "lonely-pod"),
])
def test_workload_of_names_the_owner(owners, labels, expected):
    assert workload_of("lonely-pod", owners, labels) == expected


# --- the Kubernetes API, through the official client -------------------------------------------

def api_pod(name: str, namespace: str, ip: str | None, owners: list[dict] | None = None,
            labels: dict | None = None, host_network: bool = False,
            uid: str | None = None, node: str = "node-a", phase: str = "Running") -> dict:
    status = {"phase": phase}
    if ip:
        status |= {"podIP": ip, "podIPs": [{"ip": ip}]}
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4()),
                         "labels": labels or {}, "ownerReferences": owners or []},
            "spec": {"nodeName": node, "hostNetwork": host_network,
                     "containers": [{"name": "main", "image": "busybox"}]},
            "status": status}


def rs_owner(name: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
            "uid": str(uuid.uuid4()), "controller": True}


class FakeApiServer:
    """Serves GET /api/v1/pods from `self.pods` on 127.0.0.1 and records every query."""

    def __init__(self) -> None:
        self.pods: list[dict] = []
        self.status = 200
        self.queries: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (http.server's name)
                url = urlsplit(self.path)
                fake.queries.append(parse_qs(url.query))
                if url.path != "/api/v1/pods" or fake.status != 200:
                    self._reply(fake.status if fake.status != 200 else 404,
                                {"kind": "Status", "status": "Failure"})
                    return
                self._reply(200, {"kind": "PodList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": "1"},
                                  "items": fake.selected(parse_qs(url.query))})

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return  # keep pytest's output clean; the queries are recorded above

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def selected(self, query: dict[str, list[str]]) -> list[dict]:
        """The pods a real API server returns: a `spec.nodeName=` field selector filters."""
        (selector,) = query.get("fieldSelector", ["spec.nodeName="])
        node = selector.removeprefix("spec.nodeName=")
        return [pod for pod in self.pods if not node or pod["spec"]["nodeName"] == node]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def api_server():
    fake = FakeApiServer()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join(timeout=5)


@pytest.fixture
def core_api(api_server):
    # A dev dependency (pyproject's dev extra): missing, these tests fail rather than skip.
    from kubernetes import client

    config = client.Configuration()
    config.host = api_server.url
    api_client = client.ApiClient(config)
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


@pytest.mark.net
def test_kubernetes_pods_lists_the_clusters_pods_with_the_official_client(api_server, core_api):
    web_uid = str(uuid.uuid4())
    api_server.pods = [
        api_pod("web-7c9f8b6d5-x2k4q", "default", "198.51.100.10",
                [rs_owner("web-7c9f8b6d5")], {"pod-template-hash": "7c9f8b6d5"}, uid=web_uid),
        api_pod("db-0", "shop", "198.51.100.11",
                [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                  "uid": str(uuid.uuid4()), "controller": True}]),
        api_pod("kube-proxy-abcde", "kube-system", "192.0.2.10", host_network=True),
        api_pod("pending-0", "default", None),
        api_pod("cache-0", "shop", "198.51.100.40", node="node-b"),
        api_pod("api-0", "default", "198.51.100.12"),
        # finished, yet still showing the address the kubelet has since given to api-0
        api_pod("backup-28-x7k2p", "default", "198.51.100.12", phase="Succeeded"),
    ]
    pods = KubernetesPods(client=core_api, clock=FakeClock())
    web = PodRef("default", "web-7c9f8b6d5-x2k4q", "web")
    assert pods.peer_pod("198.51.100.10") == web
    assert pods.local_pod(12345, "198.51.100.11") == PodRef("shop", "db-0", "db")
    assert pods.peer_pod("192.0.2.10") is None  # hostNetwork: the node's address, no pod's
    assert pods.pod_by_uid(web_uid) == web
    # a peer on another node is a pod too, not `external`
    assert pods.peer_pod("198.51.100.40") == PodRef("shop", "cache-0", "cache-0")
    assert pods.peer_pod("198.51.100.12") == PodRef("default", "api-0", "api-0")
    assert "fieldSelector" not in api_server.queries[0]
    assert len(api_server.queries) == 1  # one list served all the lookups


@pytest.mark.net
def test_kubernetes_pods_relists_after_the_interval_and_survives_a_failing_api(
        api_server, core_api, caplog):
    api_server.pods = [api_pod("web-0", "default", "198.51.100.10")]
    clock = FakeClock()
    pods = KubernetesPods(client=core_api, refresh_interval=30.0, clock=clock)
    assert pods.peer_pod("198.51.100.10").name == "web-0"
    api_server.pods = [api_pod("web-1", "default", "198.51.100.10")]
    clock.advance(29.0)
    assert pods.peer_pod("198.51.100.10").name == "web-0"  # not yet relisted
    clock.advance(1.0)
    assert pods.peer_pod("198.51.100.10").name == "web-1"
    api_server.status = 500
    clock.advance(30.0)
    with caplog.at_level(logging.WARNING, logger="netsprint.agent.pods"):
        assert pods.peer_pod("198.51.100.10").name == "web-1"  # the last good list
    assert "listing pods failed" in caplog.text
    assert len(api_server.queries) == 3


@pytest.mark.net
def test_kubernetes_resolver_finds_a_local_pod_by_its_cgroup(api_server, core_api, tmp_path):
    dirs = make_kubelet_tree(tmp_path)
    api_server.pods = [api_pod("web-0", "default", "198.51.100.10", uid=UID_A)]
    resolver = kubernetes_resolver(client=core_api, cgroup_root=tmp_path)
    container_id = os.stat(dirs["a_container"]).st_ino
    # By the cgroup even with an address that is no pod's (e.g. a hostPort'd socket).
    web = PodRef("default", "web-0", "web-0")  # no owner: the pod is its own workload
    assert resolver.local_pod(container_id, "192.0.2.10") == web
    assert resolver.peer_pod("198.51.100.10") == web


@pytest.mark.unit
def test_missing_kubernetes_package_is_a_capability_error_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # `import kubernetes` now fails
    with pytest.raises(CapabilityError) as caught:
        in_cluster_client()
    assert caught.value.hint == "pip install kubernetes"


@pytest.mark.unit
def test_outside_a_cluster_the_in_cluster_client_is_refused(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(CapabilityError, match="not running inside a Kubernetes pod"):
        KubernetesPods()


# --- chains ---------------------------------------------------------------------------------------

class Fixed:
    """A resolver that knows one cgroup id and one address."""

    def __init__(self, cgroup_id: int, ip: str, ref: PodRef) -> None:
        self.cgroup_id, self.ip, self.ref = cgroup_id, ip, ref
        self.closed = False

    def local_pod(self, cgroup_id: int, local_ip: str) -> PodRef | None:
        return self.ref if cgroup_id == self.cgroup_id else None

    def peer_pod(self, ip: str) -> PodRef | None:
        return self.ref if ip == self.ip else None

    def close(self) -> None:
        self.closed = True


@pytest.mark.unit
def test_chain_asks_in_order_and_closes_what_it_holds():
    first = Fixed(1, "198.51.100.10", WEB_0)
    second = Fixed(1, "198.51.100.11", DB_0)
    chain = ChainResolver(first, second)
    assert chain.local_pod(1, "") == WEB_0            # both know cgroup 1: the first answers
    assert chain.peer_pod("198.51.100.11") == DB_0     # only the second knows this address
    assert chain.peer_pod("203.0.113.9") is None
    assert chain.local_pod(2, "") is None
    chain.close()
    assert first.closed and second.closed
