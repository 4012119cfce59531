"""Buckets, labels and collectors of the agent, on hand-made snapshots (no kernel).

Exact values throughout: every expected number is computed here from the snapshot the test
built, never read back from the code under test.
"""

from __future__ import annotations

import logging
import platform
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from netsprint.agent import buckets, model
from netsprint.agent.collectors import (CAPPED_FAMILIES, AgentCollector, SnapshotReader,
                                        TcpCollector)
from netsprint.agent.labels import LabelPolicy, SeriesLimiter
from netsprint.agent.model import (HISTOGRAM_SLOTS, FlowCounters, FlowKey, Log2Histogram,
                                   PodRef, Snapshot)

pytestmark = pytest.mark.unit

WEB_0 = PodRef("shop", "web-0", "web")
WEB_1 = PodRef("shop", "web-1", "web")
DB_0 = PodRef("data", "db-0", "db")


class DictPods:
    """A resolver from two dicts: cgroup id -> pod, address -> pod."""

    def __init__(self, by_cgroup: dict[int, PodRef], by_ip: dict[str, PodRef]) -> None:
        self.by_cgroup, self.by_ip = by_cgroup, by_ip

    def local_pod(self, cgroup_id: int, local_ip: str) -> PodRef | None:
        return self.by_cgroup.get(cgroup_id) or self.by_ip.get(local_ip)

    def peer_pod(self, ip: str) -> PodRef | None:
        return self.by_ip.get(ip)


PODS = DictPods({101: WEB_0, 102: WEB_0, 201: WEB_1},
                {"198.51.100.10": WEB_0, "198.51.100.11": WEB_1, "198.51.100.12": DB_0})


class FixedSource:
    """Hands out one snapshot and counts the reads."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.value, self.reads = snapshot, 0

    def snapshot(self) -> Snapshot:
        self.reads += 1
        return self.value


class FailingSource:
    def snapshot(self) -> Snapshot:
        raise OSError(5, "map read failed")


class StepClock:
    """Each reading is `step` seconds after the previous one."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def hist(**slot_counts: int) -> Log2Histogram:
    """hist(s5=2, s10=1): 2 observations in slot 5, 1 in slot 10; sum = slot lows."""
    slots = [0] * HISTOGRAM_SLOTS
    total_us = 0
    for name, count in slot_counts.items():
        slot = int(name[1:])
        slots[slot] = count
        total_us += count * (2 ** slot)
    return Log2Histogram(tuple(slots), total_us)


def registry_for(source, resolver=PODS, policy=None, max_series=1000, clock=time.perf_counter):
    reader = SnapshotReader(source, clock=clock)
    tcp = TcpCollector(reader, resolver, policy, max_series, clock=clock)
    registry = CollectorRegistry()
    registry.register(tcp)
    registry.register(AgentCollector(reader, tcp, version="9.9.9"))
    return registry, tcp


def sample_map(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, for one scrape."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples}


# --- buckets -------------------------------------------------------------------------------

slot_lists = st.lists(st.integers(0, 10**6), min_size=HISTOGRAM_SLOTS, max_size=HISTOGRAM_SLOTS)
histograms = st.builds(lambda slots, extra: Log2Histogram(tuple(slots), sum(slots) + extra),
                       slot_lists, st.integers(0, 10**9))


def bound_us(slot: int) -> float:
    return round(buckets.BUCKET_BOUNDS_SECONDS[slot] * 1e6) if slot < HISTOGRAM_SLOTS - 1 \
        else float("inf")


def test_bounds_are_powers_of_two_microseconds_then_inf():
    assert len(buckets.BUCKET_BOUNDS_SECONDS) == HISTOGRAM_SLOTS
    assert [bound_us(k) for k in range(HISTOGRAM_SLOTS - 1)] == \
        [2 ** (k + 1) for k in range(HISTOGRAM_SLOTS - 1)]
    assert buckets.BUCKET_LE_TEXT[0] == "2e-06" and buckets.BUCKET_LE_TEXT[-1] == "+Inf"
    assert buckets.BUCKET_LE_TEXT[19] == "1.048576"  # 2^20 us


@given(histograms)
def test_cumulative_counts_are_monotone_and_end_at_the_count(histogram):
    counts = [count for _, count in buckets.cumulative_buckets(histogram)]
    assert all(a <= b for a, b in zip(counts, counts[1:]))
    assert counts[-1] == histogram.count == sum(histogram.slots)
    assert [le for le, _ in buckets.cumulative_buckets(histogram)] == \
        list(buckets.BUCKET_LE_TEXT)  # the same bounds whatever the data
    assert buckets.sum_seconds(histogram) == histogram.sum_us / 1e6


@given(st.integers(0, 2 ** 30))
def test_a_value_lands_in_the_first_bucket_whose_bound_is_above_it(value_us):
    slot = buckets.slot_of_microseconds(value_us)
    one = Log2Histogram(tuple(1 if k == slot else 0 for k in range(HISTOGRAM_SLOTS)), value_us)
    first_counting = next(k for k, (_, c) in enumerate(buckets.cumulative_buckets(one)) if c)
    assert first_counting == slot
    # Half-open slots: the bucket below ends at or under the value, this one above it.
    assert slot == 0 or bound_us(slot - 1) <= value_us
    assert value_us < bound_us(slot) or slot == HISTOGRAM_SLOTS - 1
    # Prometheus' own rule (first le >= v) agrees except exactly on an edge (see buckets.py).
    first_le_at_least = next(k for k in range(HISTOGRAM_SLOTS) if bound_us(k) >= value_us)
    on_edge = value_us >= 2 and value_us == bound_us(slot - 1)
    assert first_le_at_least == (slot - 1 if on_edge else slot)


@given(histograms, histograms)
def test_merge_adds_slots_and_sums(first, second):
    merged = buckets.merge(first, second)
    assert merged.count == first.count + second.count
    assert merged.sum_us == first.sum_us + second.sum_us
    assert [c for _, c in buckets.cumulative_buckets(merged)] == [
        a + b for (_, a), (_, b) in zip(buckets.cumulative_buckets(first),
                                        buckets.cumulative_buckets(second))]
    assert buckets.merge_all([first, second]) == merged
    assert buckets.merge_all([]) == buckets.empty_histogram()


def test_a_histogram_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="27 slots"):
        buckets.cumulative_buckets(Log2Histogram((1, 2, 3), 6))


# --- labels -------------------------------------------------------------------------------

def test_local_side_is_pod_else_host_else_unknown():
    policy = LabelPolicy()
    assert policy.local_labels(PODS, FlowKey(101, "", "")) == ("shop", "web-0")
    assert policy.local_labels(PODS, FlowKey(0, "198.51.100.11", "")) == ("shop", "web-1")
    assert policy.local_labels(PODS, FlowKey(7, "192.0.2.1", "")) == (model.HOST, model.HOST)
    assert policy.local_labels(PODS, FlowKey(0, "", "")) == (model.UNKNOWN, model.UNKNOWN)


def test_peer_modes():
    key = FlowKey(101, "198.51.100.10", "198.51.100.12")
    outside = FlowKey(101, "198.51.100.10", "203.0.113.5")
    assert LabelPolicy("pod").flow_labels(PODS, key) == ("shop", "web-0", "data/db-0")
    assert LabelPolicy("workload").flow_labels(PODS, key) == ("shop", "web-0", "data/db")
    assert LabelPolicy("none").flow_labels(PODS, key) == ("shop", "web-0")
    assert LabelPolicy("none").flow_label_names == ("namespace", "pod")
    assert LabelPolicy().peer_value(PODS, outside) == model.EXTERNAL
    assert LabelPolicy(raw_ips=True).peer_value(PODS, outside) == "203.0.113.5"
    assert LabelPolicy(raw_ips=True).peer_value(PODS, FlowKey(1, "", "")) == model.UNKNOWN
    with pytest.raises(ValueError, match="peer_label"):
        LabelPolicy("ip")


def test_series_limiter_admits_up_to_the_cap_and_counts_each_refusal_once():
    limiter = SeriesLimiter(2)
    assert [limiter.admit((name,)) for name in "abcd"] == [True, True, False, False]
    assert limiter.admit(("a",)) and not limiter.admit(("c",))  # admitted sets stay admitted
    assert (limiter.admitted, limiter.dropped) == (2, 2)


def test_series_limiter_memory_is_bounded_and_undercounts_when_full():
    limiter = SeriesLimiter(1, remember=3)
    for index in range(10):
        limiter.admit((str(index),))
    assert limiter.dropped == 3 and limiter.memory_full
    limiter.admit(("1",))  # remembered: not counted again
    assert limiter.dropped == 3


# --- collectors -------------------------------------------------------------------------

def shop_snapshot() -> Snapshot:
    """web-0 (two cgroups) -> db-0, web-1 -> the internet, host -> db-0, and a socket the
    agent never saw open."""
    flows = {
        FlowKey(101, "198.51.100.10", "198.51.100.12"): FlowCounters(
            opened_outbound=3, closed=2, sent_bytes=1000, received_bytes=50,
            retransmitted_segments=1),
        FlowKey(102, "198.51.100.10", "198.51.100.12"): FlowCounters(
            opened_outbound=2, opened_inbound=1, closed=1, connect_failures=4, sent_bytes=24),
        FlowKey(201, "198.51.100.11", "203.0.113.7"): FlowCounters(
            opened_outbound=1, sent_bytes=7, received_bytes=9),
        FlowKey(0, "192.0.2.1", "198.51.100.12"): FlowCounters(opened_inbound=2, closed=2),
        FlowKey(5, "", ""): FlowCounters(closed=3, sent_bytes=11),
    }
    connect = {
        FlowKey(101, "198.51.100.10", "198.51.100.12"): hist(s5=2, s10=1),
        FlowKey(102, "198.51.100.10", "198.51.100.12"): hist(s5=1),
        FlowKey(201, "198.51.100.11", "203.0.113.7"): hist(s20=1),
    }
    srtt = {FlowKey(101, "198.51.100.10", "198.51.100.12"): hist(s7=4, s26=1)}
    return Snapshot(flows=flows, connect_duration=connect, srtt=srtt, events_lost=6,
                    map_entries={"flows": 5, "sockets": 12}, probes_attached=6)


def flow(namespace, pod, peer):
    return (("namespace", namespace), ("peer", peer), ("pod", pod))


def test_counters_sum_every_key_of_one_label_set():
    samples = sample_map(registry_for(FixedSource(shop_snapshot()))[0])
    web0_db = flow("shop", "web-0", "data/db-0")
    assert samples[(model.SENT_BYTES, web0_db)] == 1000 + 24
    assert samples[(model.RECEIVED_BYTES, web0_db)] == 50
    assert samples[(model.CLOSED, web0_db)] == 2 + 1
    assert samples[(model.CONNECT_FAILURES, web0_db)] == 4
    assert samples[(model.RETRANSMITS, web0_db)] == 1
    assert samples[(model.ACTIVE, web0_db)] == (3 + 2 + 1) - (2 + 1)
    assert samples[(model.OPENED, (("direction", "inbound"), *web0_db))] == 1
    assert samples[(model.OPENED, (("direction", "outbound"), *web0_db))] == 5
    web1_out = flow("shop", "web-1", model.EXTERNAL)
    assert samples[(model.RECEIVED_BYTES, web1_out)] == 9
    host_db = flow(model.HOST, model.HOST, "data/db-0")
    assert samples[(model.OPENED, (("direction", "inbound"), *host_db))] == 2
    assert samples[(model.ACTIVE, host_db)] == 0
    unseen = flow(model.HOST, model.HOST, model.UNKNOWN)  # cgroup 5 known, no addresses
    assert samples[(model.SENT_BYTES, unseen)] == 11
    assert samples[(model.ACTIVE, unseen)] == 0  # closed 3, opened 0: clamped, not -3
    label_sets = {labels for name, labels in samples if name == model.SENT_BYTES}
    assert label_sets == {web0_db, web1_out, host_db, unseen}


def test_histograms_are_by_local_pod_with_fixed_bounds_and_exact_sum():
    samples = sample_map(registry_for(FixedSource(shop_snapshot()))[0])
    web0 = (("namespace", "shop"), ("pod", "web-0"))
    name = model.CONNECT_DURATION

    def bucket(le: str) -> float:
        return samples[(name + "_bucket", tuple(sorted((*web0, ("le", le)))))]

    assert bucket("3.2e-05") == 0  # slot 4's edge: 2^5 us; the observations sit in slot 5
    assert bucket("6.4e-05") == 3
    assert bucket("0.001024") == 3 and bucket("0.002048") == 4
    assert bucket("+Inf") == samples[(name + "_count", web0)] == 4
    assert samples[(name + "_sum", web0)] == (3 * 32 + 1024) / 1e6
    srtt_inf = (model.SRTT + "_bucket", tuple(sorted((*web0, ("le", "+Inf")))))
    srtt_last = (model.SRTT + "_bucket", tuple(sorted((*web0, ("le", "67.108864")))))
    assert samples[srtt_inf] == 5 and samples[srtt_last] == 4  # slot 26 is open-ended
    histogram_labels = {labels for sample, labels in samples if sample == name + "_count"}
    assert histogram_labels == {web0, (("namespace", "shop"), ("pod", "web-1"))}


def test_self_metrics_report_the_scrape_read():
    clock = StepClock(0.25)
    registry, _ = registry_for(FixedSource(shop_snapshot()), clock=clock)
    samples = sample_map(registry)
    build = (("python", platform.python_version()), ("version", "9.9.9"))
    assert samples[(model.BUILD_INFO, build)] == 1
    assert samples[(model.PROBES_ATTACHED, ())] == 6
    assert samples[(model.MAP_ENTRIES, (("map", "flows"),))] == 5
    assert samples[(model.MAP_ENTRIES, (("map", "sockets"),))] == 12
    assert samples[(model.EVENTS_LOST, ())] == 6
    # One clock step for the read, one for building the families.
    assert samples[(model.COLLECT_DURATION, ())] == 0.5
    assert {labels for name, labels in samples if name == model.SERIES_DROPPED} == {
        (("metric", family),) for family in CAPPED_FAMILIES}


def test_one_map_read_per_scrape_and_none_to_describe():
    source = FixedSource(shop_snapshot())
    registry, _ = registry_for(source)
    assert source.reads == 0  # registering calls describe(), which reads nothing
    generate_latest(registry)
    assert source.reads == 1
    generate_latest(registry)
    assert source.reads == 2


def test_scheduled_mode_scrapes_the_last_read():
    source = FixedSource(shop_snapshot())
    reader = SnapshotReader(source, on_scrape=False)
    registry = CollectorRegistry()
    registry.register(TcpCollector(reader, PODS))
    generate_latest(registry)  # nothing read yet: the scrape reads once
    generate_latest(registry)
    assert source.reads == 1
    reader.read()  # what the schedule does
    assert source.reads == 2


def test_a_failing_read_keeps_self_metrics_and_logs_the_error(caplog):
    registry, _ = registry_for(FailingSource())
    with caplog.at_level(logging.ERROR, logger="netsprint.agent.collectors"):
        names = {family.name for family in registry.collect()}
    assert model.BUILD_INFO in names and model.COLLECT_DURATION in names
    assert not any(name.startswith("netsprint_tcp_") for name in names)
    assert "map read failed" in caplog.text, caplog.text


def test_the_exposition_passes_the_strict_openmetrics_parser():
    registry, _ = registry_for(FixedSource(shop_snapshot()))
    text = generate_openmetrics(registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    # OpenMetrics names counters without _total; the samples keep it.
    assert families["netsprint_tcp_sent_bytes"].type == "counter"
    assert families[model.CONNECT_DURATION].type == "histogram"
    sent = {tuple(sorted(s.labels.items())): s.value for s in
            families["netsprint_tcp_sent_bytes"].samples if s.name == model.SENT_BYTES}
    assert sent[flow("shop", "web-0", "data/db-0")] == 1024


# --- the label flood -------------------------------------------------------------------

FLOOD_PEERS = 10_000
CAP = 1000


def flood_snapshot(peers: int) -> Snapshot:
    """web-0 talking to `peers` distinct addresses outside every pod."""
    flows = {FlowKey(101, "198.51.100.10", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"):
             FlowCounters(opened_outbound=1, sent_bytes=10) for i in range(peers)}
    return Snapshot(flows=flows, probes_attached=6)


def exposed_label_sets(registry: CollectorRegistry) -> dict[str, set]:
    sets: dict[str, set] = {}
    for family in registry.collect():
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            sets.setdefault(family.name, set()).add(tuple(sorted(labels.items())))
    return sets


def dropped(registry: CollectorRegistry) -> dict[str, float]:
    return {s.labels["metric"]: s.value for family in registry.collect()
            if family.name == "netsprint_series_dropped" for s in family.samples}


def test_a_label_flood_stays_under_the_cap_and_counts_each_drop_once():
    source = FixedSource(flood_snapshot(FLOOD_PEERS))
    registry, _ = registry_for(source, policy=LabelPolicy(raw_ips=True), max_series=CAP)
    first = exposed_label_sets(registry)
    for name in ("netsprint_tcp_sent_bytes", "netsprint_tcp_connections_opened",
                 model.ACTIVE):
        assert len(first[name]) == CAP
    drops = dropped(registry)
    assert drops[model.SENT_BYTES] == FLOOD_PEERS - CAP
    assert drops[model.OPENED] == 2 * FLOOD_PEERS - CAP  # two directions per peer
    assert drops[model.CONNECT_DURATION] == 0
    assert dropped(registry) == drops  # a second scrape: same sets, no double count
    assert exposed_label_sets(registry) == first  # and the same series exposed
    source.value = flood_snapshot(FLOOD_PEERS + 25)
    assert dropped(registry)[model.SENT_BYTES] == FLOOD_PEERS - CAP + 25


def test_without_raw_ips_the_flood_is_one_series():
    registry, _ = registry_for(FixedSource(flood_snapshot(FLOOD_PEERS)), max_series=CAP)
    samples = sample_map(registry)
    assert samples[(model.SENT_BYTES, flow("shop", "web-0", model.EXTERNAL))] == \
        10 * FLOOD_PEERS
    assert set(dropped(registry).values()) == {0}
