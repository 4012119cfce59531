"""Log2 histograms (what the BPF side counts) as Prometheus histograms (what it scrapes).

The BPF side counts microseconds into `HISTOGRAM_SLOTS` log2 slots (model.py): slot 0 holds
[0, 2) us, slot k >= 1 holds [2^k, 2^(k+1)) us, the last slot is open-ended. A Prometheus
histogram is a set of cumulative `_bucket{le="..."}` counts plus `_sum` and `_count`, and
its `le` bounds must be the same on every scrape (histogram_quantile() and rate() compare
buckets across scrapes by their `le` label). So the bounds are fixed here, once:
slot k's upper edge 2^(k+1) us, in seconds, and the last slot's bucket is +Inf.

Edges: a slot is half-open ([low, high)) while `le` is inclusive (<= high). The two agree
on every duration except one exactly on an edge (2^k us), which is counted one bucket up:
for a continuous quantity that tie has no width, and round power-of-two bounds keep the
buckets readable (and equal to what `bcc`'s log2 histograms print).
`_sum` comes from the exact sum the BPF side keeps, not from slot midpoints.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client.utils import floatToGoString

from netsprint.agent.model import HISTOGRAM_SLOTS, Log2Histogram

MICROSECONDS_PER_SECOND = 1_000_000


def slot_upper_bound_seconds(slot: int) -> float:
    """The `le` bound of `slot`'s bucket: 2^(slot+1) us in seconds, +Inf for the last slot."""
    if not 0 <= slot < HISTOGRAM_SLOTS:
        raise IndexError(f"slot {slot} outside 0..{HISTOGRAM_SLOTS - 1}")
    if slot == HISTOGRAM_SLOTS - 1:
        return math.inf
    return 2 ** (slot + 1) / MICROSECONDS_PER_SECOND


# The bounds of every bucket, in seconds, ascending, ending with +Inf. Computed once so every
# scrape exposes exactly the same `le` values.
BUCKET_BOUNDS_SECONDS: tuple[float, ...] = tuple(
    slot_upper_bound_seconds(slot) for slot in range(HISTOGRAM_SLOTS))
# The same bounds as `le` label text (Prometheus' Go float formatting: "+Inf", "0.000128").
BUCKET_LE_TEXT: tuple[str, ...] = tuple(floatToGoString(bound) for bound in BUCKET_BOUNDS_SECONDS)


def slot_of_microseconds(microseconds: float) -> int:
    """The slot the BPF side puts a value in: floor(log2(us)), 0 for us < 2, capped at the
    last slot (the rule in model.py; used to build test data and to explain the buckets)."""
    if microseconds < 0:
        raise ValueError(f"a duration cannot be negative: {microseconds!r}")
    if microseconds < 2:
        return 0
    # floor(log2(x)) == floor(log2(floor(x))) for x >= 1, and bit_length is exact where
    # math.log2 of a large integer just under a power of two may round up.
    return min(int(microseconds).bit_length() - 1, HISTOGRAM_SLOTS - 1)


def empty_histogram() -> Log2Histogram:
    return Log2Histogram(slots=(0,) * HISTOGRAM_SLOTS, sum_us=0)


def _checked_slots(histogram: Log2Histogram) -> tuple[int, ...]:
    if len(histogram.slots) != HISTOGRAM_SLOTS:
        raise ValueError(f"a log2 histogram has {HISTOGRAM_SLOTS} slots, got "
                         f"{len(histogram.slots)}")
    return histogram.slots


def merge(first: Log2Histogram, second: Log2Histogram) -> Log2Histogram:
    """One histogram holding the observations of both (slot-wise sum, summed sums)."""
    slots = tuple(a + b for a, b in zip(_checked_slots(first), _checked_slots(second)))
    return Log2Histogram(slots=slots, sum_us=first.sum_us + second.sum_us)


def merge_all(histograms: Iterable[Log2Histogram]) -> Log2Histogram:
    merged = empty_histogram()
    for histogram in histograms:
        merged = merge(merged, histogram)
    return merged


def cumulative_buckets(histogram: Log2Histogram) -> list[tuple[str, int]]:
    """[(le text, observations <= le)] for every bound, the +Inf one equal to the count."""
    buckets, running = [], 0
    for le_text, in_slot in zip(BUCKET_LE_TEXT, _checked_slots(histogram)):
        running += in_slot
        buckets.append((le_text, running))
    return buckets


def sum_seconds(histogram: Log2Histogram) -> float:
    return histogram.sum_us / MICROSECONDS_PER_SECOND
