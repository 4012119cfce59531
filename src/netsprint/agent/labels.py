"""Bounded labels: what a flow is called in Prometheus, and how many series a family may have.

Every distinct label set is a time series Prometheus stores for as long as it lives, so
labels must come from a small, known set: pods (namespace, name or workload), never ports,
pids or raw IPs unless asked for. `LabelPolicy` turns a `FlowKey` into label values;
`SeriesLimiter` caps the label sets one metric family may expose. Pure, no I/O.
"""

from __future__ import annotations

import hashlib
import typing
from dataclasses import dataclass
from typing import Literal

from netsprint.agent.model import EXTERNAL, HOST, UNKNOWN, FlowKey, PodRef, PodResolver

PeerLabel = Literal["pod", "workload", "none"]
PEER_LABEL_MODES: tuple[str, ...] = typing.get_args(PeerLabel)

LOCAL_LABELS = ("namespace", "pod")
PEER_LABEL = "peer"


@dataclass(frozen=True)
class LabelPolicy:
    """How flows are labelled: the peer as "ns/pod", "ns/workload" or not at all; peers
    outside every pod as "external", or by IP when `raw_ips` (unbounded: a test or lab aid)."""

    peer_label: PeerLabel = "pod"
    raw_ips: bool = False

    def __post_init__(self) -> None:
        if self.peer_label not in PEER_LABEL_MODES:
            raise ValueError(f"peer_label {self.peer_label!r}: one of "
                             f"{', '.join(PEER_LABEL_MODES)}")

    @property
    def flow_label_names(self) -> tuple[str, ...]:
        """Label names of the per-flow families (counters, active gauge)."""
        if self.peer_label == "none":
            return LOCAL_LABELS
        return (*LOCAL_LABELS, PEER_LABEL)

    def local_labels(self, resolver: PodResolver, key: FlowKey) -> tuple[str, str]:
        """(namespace, pod) of the local side: the pod, else "host" for a socket the agent
        knows something about (a cgroup or an address) outside every pod, else "unknown"."""
        pod = resolver.local_pod(key.cgroup_id, key.local)
        if pod is not None:
            return pod.namespace, pod.name
        if key.cgroup_id or key.local:
            return HOST, HOST
        return UNKNOWN, UNKNOWN

    def peer_value(self, resolver: PodResolver, key: FlowKey) -> str:
        """The `peer` label: "ns/pod" or "ns/workload", "external" (or the IP), "unknown"
        when the agent never saw the address."""
        if not key.peer:
            return UNKNOWN
        pod = resolver.peer_pod(key.peer)
        if pod is None:
            return key.peer if self.raw_ips else EXTERNAL
        return _pod_text(pod, self.peer_label)

    def flow_labels(self, resolver: PodResolver, key: FlowKey) -> tuple[str, ...]:
        """The label values of `key` in the order of `flow_label_names`."""
        local = self.local_labels(resolver, key)
        if self.peer_label == "none":
            return local
        return (*local, self.peer_value(resolver, key))


def _pod_text(pod: PodRef, mode: str) -> str:
    if mode == "workload":
        return f"{pod.namespace}/{pod.workload or pod.name}"
    return pod.qualified


# How many refused label sets a limiter remembers (as 8-byte digests) so that each one is
# counted once; about 100 bytes each in a Python set, so at most ~10 MB per family.
DEFAULT_REMEMBERED_REFUSALS = 100_000


class SeriesLimiter:
    """The label sets one metric family may expose: the first `cap` distinct sets seen are
    admitted for the agent's lifetime (series never flap in and out), later ones are refused.

    Owns the admitted sets and a bounded memory of refused ones. `dropped` counts each
    distinct refused set once, however many scrapes refuse it again. Refused sets are
    remembered by a 64-bit digest in a set of at most `remember` entries: a digest collision
    (about n^2 / 2^65 for n sets) or a full memory makes `dropped` count too few, never too
    many, so it reads as "at least this many label sets were dropped". Restarting the agent
    starts over.
    """

    def __init__(self, cap: int, remember: int = DEFAULT_REMEMBERED_REFUSALS) -> None:
        if cap < 1:
            raise ValueError(f"series cap must be >= 1, got {cap}")
        self.cap = cap
        self._remember = remember
        self._admitted: set[tuple[str, ...]] = set()
        self._refused: set[bytes] = set()
        self.dropped = 0
        self.memory_full = False  # refused sets beyond `remember` were not counted

    def admit(self, labels: tuple[str, ...]) -> bool:
        """True if `labels` may be exposed (already admitted, or room for one more)."""
        if labels in self._admitted:
            return True
        if len(self._admitted) < self.cap:
            self._admitted.add(labels)
            return True
        self._count_refusal(labels)
        return False

    def _count_refusal(self, labels: tuple[str, ...]) -> None:
        digest = _digest(labels)
        if digest in self._refused:
            return
        if len(self._refused) >= self._remember:
            self.memory_full = True
            return
        self._refused.add(digest)
        self.dropped += 1

    @property
    def admitted(self) -> int:
        return len(self._admitted)


def _digest(labels: tuple[str, ...]) -> bytes:
    # 8 bytes instead of the strings themselves; NUL separates the values because no pod
    # name, namespace or IP address text contains one.
    return hashlib.blake2b("\x00".join(labels).encode(), digest_size=8).digest()
