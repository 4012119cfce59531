"""prometheus_client custom collectors: a `Snapshot` of the BPF maps as metric families.

Like prometheus_client's `ProcessCollector`, each collector is handed its data source and
builds fresh families on every `collect()`; `describe()` names the families without reading
anything, so registering a collector never touches the kernel.

One scrape reads the maps once: `TcpCollector` (registered first) asks the `SnapshotReader`
for the scrape's snapshot, and `AgentCollector` (registered after it) reports on that same
read (its duration, map sizes, drops) without reading again.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from netsprint.agent import buckets, model
from netsprint.agent.labels import LOCAL_LABELS, LabelPolicy, SeriesLimiter
from netsprint.agent.model import FlowCounters, FlowKey, Log2Histogram, PodResolver, Snapshot

log = logging.getLogger(__name__)

DIRECTION_LABEL = "direction"
OUTBOUND, INBOUND = "outbound", "inbound"

# Per-flow counter families: (name, help, FlowCounters field).
FLOW_COUNTERS: tuple[tuple[str, str, str], ...] = (
    (model.CLOSED, "TCP connections that reached CLOSE after being opened.", "closed"),
    (model.CONNECT_FAILURES, "Active opens that went from SYN_SENT to CLOSE (refused, "
     "unreachable, timed out).", "connect_failures"),
    (model.SENT_BYTES, "TCP payload bytes sent and acknowledged by the peer "
     "(tcp_sock.bytes_acked).", "sent_bytes"),
    (model.RECEIVED_BYTES, "TCP payload bytes received in sequence (tcp_sock.bytes_received).",
     "received_bytes"),
    (model.RETRANSMITS, "TCP segments retransmitted (tcp:tcp_retransmit_skb).",
     "retransmitted_segments"),
)
OPENED_HELP = ("TCP connections that reached ESTABLISHED, by direction "
               "(outbound: connect, inbound: accept).")
ACTIVE_HELP = "TCP connections opened and not yet closed."
HISTOGRAMS: tuple[tuple[str, str, str], ...] = (
    (model.CONNECT_DURATION, "Time from SYN_SENT to ESTABLISHED, by local pod.",
     "connect_duration"),
    (model.SRTT, "Smoothed round-trip time samples of tcp:tcp_probe, by local pod.", "srtt"),
)
# Every family a series cap applies to, in exposition order.
CAPPED_FAMILIES: tuple[str, ...] = (
    model.OPENED, *(name for name, _, _ in FLOW_COUNTERS), model.ACTIVE,
    *(name for name, _, _ in HISTOGRAMS))


def agent_version() -> str:
    """The installed distribution's version, else the package's own `__version__`."""
    try:
        return importlib.metadata.version("netsprint")
    except importlib.metadata.PackageNotFoundError:
        from netsprint import __version__
        return __version__


@dataclass(frozen=True)
class ReadResult:
    """The outcome of one read of the source: the snapshot (None if it failed)."""

    snapshot: Snapshot | None
    seconds: float
    error: str = ""


class SnapshotReader:
    """Reads the source once per scrape (`on_scrape`) or hands out the snapshot a schedule
    last read. Owns the last read's result; does not own the source."""

    def __init__(self, source: model.SnapshotSource, on_scrape: bool = True,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._source = source
        self._on_scrape = on_scrape
        self._clock = clock
        self._lock = threading.Lock()
        self.last: ReadResult | None = None
        self.last_good: Snapshot | None = None

    def read(self) -> ReadResult:
        """Read the source now and remember the outcome (a failing source is logged, not
        raised: one bad read must not take /metrics down with it)."""
        started = self._clock()
        try:
            snapshot, error = self._source.snapshot(), ""
        except Exception as exc:  # any failure of the probes (bcc, OSError...) is reported
            log.exception("reading the BPF maps failed")
            snapshot, error = None, f"{type(exc).__name__}: {exc}"
        result = ReadResult(snapshot, self._clock() - started, error)
        with self._lock:
            self.last = result
            if snapshot is not None:
                self.last_good = snapshot
        return result

    def for_scrape(self) -> ReadResult:
        """This scrape's snapshot: a fresh read, or the scheduled one (read now if none)."""
        if self._on_scrape:
            return self.read()
        with self._lock:
            last = self.last
        return last if last is not None else self.read()


class TcpCollector(Collector):
    """The TCP families: per-flow counters and the active gauge labelled (namespace, pod,
    peer), histograms labelled by the local side only. Owns one `SeriesLimiter` per family;
    does not own the reader or the resolver."""

    def __init__(self, reader: SnapshotReader, resolver: PodResolver,
                 policy: LabelPolicy | None = None, max_series: int = 1000,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._reader = reader
        self._resolver = resolver
        self._policy = policy or LabelPolicy()
        self._clock = clock
        self.limiters = {name: SeriesLimiter(max_series) for name in CAPPED_FAMILIES}
        self.last_collect_seconds = 0.0
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return self._families(Snapshot())

    def collect(self) -> list[Metric]:
        # Scrapes are serialised: two at once would interleave the limiters' admissions.
        with self._lock:
            result = self._reader.for_scrape()
            started = self._clock()
            families = self._families(result.snapshot) if result.snapshot is not None else []
            # A collect is one map read plus turning it into families (the read may have
            # happened on the schedule, before this scrape).
            self.last_collect_seconds = result.seconds + (self._clock() - started)
            return families

    def _families(self, snapshot: Snapshot) -> list[Metric]:
        flows = self._flow_totals(snapshot.flows)
        return [self._opened(flows), *self._counters(flows), self._active(flows),
                *(self._histogram(name, text, getattr(snapshot, attribute))
                  for name, text, attribute in HISTOGRAMS)]

    # --- aggregation: many FlowKeys, one label set -------------------------------------

    def _flow_totals(self, flows: dict[FlowKey, FlowCounters]) -> dict[tuple[str, ...],
                                                                       FlowCounters]:
        """Counters summed per label set: several cgroups/addresses may be one pod."""
        totals: dict[tuple[str, ...], FlowCounters] = defaultdict(FlowCounters)
        for key, counters in flows.items():
            labels = self._policy.flow_labels(self._resolver, key)
            totals[labels] = totals[labels] + counters
        # Sorted, so the limiter admits the same sets whatever order the map returned.
        return dict(sorted(totals.items()))

    def _admitted(self, family: str, labels: Iterable[tuple[str, ...]]
                  ) -> Iterator[tuple[str, ...]]:
        limiter = self.limiters[family]
        return (values for values in labels if limiter.admit(values))

    # --- families ---------------------------------------------------------------------

    def _opened(self, flows: dict[tuple[str, ...], FlowCounters]) -> Metric:
        family = CounterMetricFamily(model.OPENED, OPENED_HELP,
                                     labels=(*self._policy.flow_label_names, DIRECTION_LABEL))
        by_direction = {}
        for values, counters in flows.items():
            by_direction[(*values, OUTBOUND)] = counters.opened_outbound
            by_direction[(*values, INBOUND)] = counters.opened_inbound
        for values in self._admitted(model.OPENED, by_direction):
            family.add_metric(values, by_direction[values])
        return family

    def _counters(self, flows: dict[tuple[str, ...], FlowCounters]) -> list[Metric]:
        families = []
        for name, text, attribute in FLOW_COUNTERS:
            family = CounterMetricFamily(name, text, labels=self._policy.flow_label_names)
            for values in self._admitted(name, flows):
                family.add_metric(values, getattr(flows[values], attribute))
            families.append(family)
        return families

    def _active(self, flows: dict[tuple[str, ...], FlowCounters]) -> Metric:
        family = GaugeMetricFamily(model.ACTIVE, ACTIVE_HELP,
                                   labels=self._policy.flow_label_names)
        for values in self._admitted(model.ACTIVE, flows):
            # Never below 0: a connection opened before the agent attached may close after.
            family.add_metric(values, max(0, flows[values].active))
        return family

    def _histogram(self, name: str, text: str,
                   histograms: dict[FlowKey, Log2Histogram]) -> Metric:
        by_local: dict[tuple[str, ...], list[Log2Histogram]] = defaultdict(list)
        for key, histogram in histograms.items():
            by_local[self._policy.local_labels(self._resolver, key)].append(histogram)
        family = HistogramMetricFamily(name, text, labels=LOCAL_LABELS)
        for values in self._admitted(name, sorted(by_local)):
            merged = buckets.merge_all(by_local[values])
            family.add_metric(values, buckets.cumulative_buckets(merged),
                              buckets.sum_seconds(merged))
        return family

    def dropped(self) -> dict[str, int]:
        """Distinct label sets refused so far, per family."""
        return {name: limiter.dropped for name, limiter in self.limiters.items()}


class AgentCollector(Collector):
    """The agent's own health: build info, probes attached, map entries, events lost, the
    last collect's duration and the series each family dropped. Reads nothing itself: it
    reports on the reader's last read and the TCP collector's limiters (register it after
    the `TcpCollector`)."""

    def __init__(self, reader: SnapshotReader, tcp: TcpCollector,
                 version: str | None = None) -> None:
        self._reader = reader
        self._tcp = tcp
        self._version = version or agent_version()

    def describe(self) -> list[Metric]:
        return self._families(Snapshot(), 0.0, {})

    def collect(self) -> list[Metric]:
        # Probe figures as of the last successful read (zeros before the first one).
        snapshot = self._reader.last_good or Snapshot()
        return self._families(snapshot, self._tcp.last_collect_seconds, self._tcp.dropped())

    def _families(self, snapshot: Snapshot, collect_seconds: float,
                  dropped: dict[str, int]) -> list[Metric]:
        build = GaugeMetricFamily(model.BUILD_INFO, "The agent's version (value always 1).",
                                  labels=("version", "python"))
        build.add_metric((self._version, platform.python_version()), 1)
        families: list[Metric] = [build, *_snapshot_families(snapshot)]
        duration = GaugeMetricFamily(model.COLLECT_DURATION,
                                     "Seconds the last collect took (map read and "
                                     "aggregation).")
        duration.add_metric((), collect_seconds)
        families.append(duration)
        series = CounterMetricFamily(model.SERIES_DROPPED, "Distinct label sets not exposed "
                                     "because their family reached max_series.",
                                     labels=("metric",))
        for name, count in sorted(dropped.items()):
            series.add_metric((name,), count)
        families.append(series)
        return families


def _snapshot_families(snapshot: Snapshot) -> list[Metric]:
    attached = GaugeMetricFamily(model.PROBES_ATTACHED, "BPF programs attached to "
                                 "tracepoints.")
    attached.add_metric((), snapshot.probes_attached)
    entries = GaugeMetricFamily(model.MAP_ENTRIES, "Entries in each BPF map.",
                                labels=("map",))
    for name, count in sorted(snapshot.map_entries.items()):
        entries.add_metric((name,), count)
    lost = CounterMetricFamily(model.EVENTS_LOST, "Map updates refused because a map was "
                               "full.")
    lost.add_metric((), snapshot.events_lost)
    return [attached, entries, lost]
