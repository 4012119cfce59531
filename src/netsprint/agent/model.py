"""What the agent's parts hand each other: a map snapshot, pod identities, metric names.

The probes (`probes.py`) read the BPF maps into a `Snapshot` of plain values keyed by
`FlowKey`; the pod resolver (`pods.py`) turns cgroup ids and addresses into `PodRef`s; the
collectors (`collectors.py`) turn both into Prometheus families with bounded labels. Nothing
here touches the kernel, so collectors are tested with hand-made snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Protocol

# Log2 histogram slots, in microseconds: slot 0 holds [0, 2) us, slot k >= 1 holds
# [2^k, 2^(k+1)) us (the BPF side computes k = floor(log2(us)), with log2(0|1) = 0).
# The last slot also takes everything larger, so it is open-ended.
HISTOGRAM_SLOTS = 27  # 2^27 us = 134 s: connects and RTTs beyond that land in the last slot

# --- metric names (Prometheus conventions: base units, _total for counters) --------------
OPENED = "netsprint_tcp_connections_opened_total"            # labels + direction
CLOSED = "netsprint_tcp_connections_closed_total"
CONNECT_FAILURES = "netsprint_tcp_connect_failures_total"
ACTIVE = "netsprint_tcp_active_connections"
SENT_BYTES = "netsprint_tcp_sent_bytes_total"
RECEIVED_BYTES = "netsprint_tcp_received_bytes_total"
RETRANSMITS = "netsprint_tcp_retransmitted_segments_total"
CONNECT_DURATION = "netsprint_tcp_connect_duration_seconds"  # histogram
SRTT = "netsprint_tcp_srtt_seconds"                          # histogram
SERIES_DROPPED = "netsprint_series_dropped_total"            # label: metric
BUILD_INFO = "netsprint_agent_build_info"
PROBES_ATTACHED = "netsprint_agent_probes_attached"
MAP_ENTRIES = "netsprint_agent_map_entries"                  # label: map
EVENTS_LOST = "netsprint_agent_events_lost_total"
COLLECT_DURATION = "netsprint_agent_collect_duration_seconds"

# Label values for a side that is not a pod.
EXTERNAL = "external"  # a peer address that no known pod holds
UNKNOWN = "unknown"    # the agent did not see the connection open, so it has no address
HOST = "host"          # a local socket outside every pod (the node's own processes)


@dataclass(frozen=True, order=True)
class FlowKey:
    """One local identity talking to one peer address (ports deliberately left out).

    `cgroup_id` is the cgroup v2 id of the process that used the socket (0 when every event
    so far ran in softirq context, e.g. a passive open before the first read); `local` and
    `peer` are IP address text ("" when the agent never saw the connection's addresses).
    """

    cgroup_id: int
    local: str
    peer: str


@dataclass
class FlowCounters:
    """Cumulative counts for one `FlowKey` since the agent attached."""

    opened_outbound: int = 0   # SYN_SENT -> ESTABLISHED
    opened_inbound: int = 0    # SYN_RECV -> ESTABLISHED (accepted)
    closed: int = 0            # an opened connection reached CLOSE
    connect_failures: int = 0  # SYN_SENT -> CLOSE (refused, unreachable, timed out)
    sent_bytes: int = 0        # payload the peer acknowledged (tcp_sock.bytes_acked)
    received_bytes: int = 0    # payload received in sequence (tcp_sock.bytes_received)
    retransmitted_segments: int = 0  # tcp:tcp_retransmit_skb

    @property
    def active(self) -> int:
        return self.opened_outbound + self.opened_inbound - self.closed

    def __add__(self, other: FlowCounters) -> FlowCounters:
        """Field-wise sum, e.g. of the flow keys that share one label set."""
        return FlowCounters(*(getattr(self, name) + getattr(other, name)
                              for name in COUNTER_FIELDS))


# FlowCounters' fields in declaration order (the order of struct agent_flow_counters).
COUNTER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(FlowCounters))


@dataclass(frozen=True)
class Log2Histogram:
    """Counts per log2 slot of microseconds (see HISTOGRAM_SLOTS) and their exact sum."""

    slots: tuple[int, ...]
    sum_us: int

    @property
    def count(self) -> int:
        return sum(self.slots)


@dataclass
class Snapshot:
    """Everything one read of the BPF maps gives (values are cumulative)."""

    flows: dict[FlowKey, FlowCounters] = field(default_factory=dict)
    connect_duration: dict[FlowKey, Log2Histogram] = field(default_factory=dict)
    srtt: dict[FlowKey, Log2Histogram] = field(default_factory=dict)
    events_lost: int = 0                  # updates refused because a map was full
    map_entries: dict[str, int] = field(default_factory=dict)   # BPF map name -> entries
    probes_attached: int = 0


class SnapshotSource(Protocol):
    """Where collectors get their data (the real probes, or a test's hand-made snapshots)."""

    def snapshot(self) -> Snapshot: ...


@dataclass(frozen=True, order=True)
class PodRef:
    """A pod, by Kubernetes namespace and name; `workload` is its owner (Deployment,
    DaemonSet...) name when known, else the pod name."""

    namespace: str
    name: str
    workload: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.namespace}/{self.name}"


class PodResolver(Protocol):
    """Turns the kernel's view (cgroup ids, addresses) into pods."""

    def local_pod(self, cgroup_id: int, local_ip: str) -> PodRef | None:
        """The pod a local socket belongs to: by cgroup first, else by its local address."""

    def peer_pod(self, ip: str) -> PodRef | None:
        """The pod that holds `ip`, or None for an address outside every known pod."""


def close_if_closable(owned: object) -> None:
    """Close what has a close(): the Protocols above do not require one."""
    close = getattr(owned, "close", None)
    if callable(close):
        close()
