"""Load maps.bpf.c and read back what each map type really holds.

Pure parts (no bcc, no root): `decode(raw)` turns one `struct map_record` (maps.h) into a
`MapRecord`; `sum_per_cpu(values)` adds up the per-CPU slots of one key. `MapDemo` owns the
loaded program, its tracepoint, its ring and perf buffers and the records drained from them.

What the measurements on this machine (kernel 6.18, bcc 0.26) show, and the tests assert:
bcc's `map.increment(key)` creates a missing key only on BPF_MAP_TYPE_HASH. bcc rewrites the
call into "lookup; if found, add; else insert" but emits the else-branch only when the map's
type is exactly HASH (src/cc/frontends/clang/b_frontend_action.cc, `VisitCallExpr`, the
`increment` case: `if (desc->second.type == BPF_MAP_TYPE_HASH)`). On PERCPU_HASH, LRU_HASH and
LRU_PERCPU_HASH a key nobody inserted is looked up, not found, and the count is dropped
silently; once the key exists (e.g. `precreate_keys()`), increment works on all of them.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from netsprint.ebpf.loader import AS_ROOT, BpfProgram
from netsprint.ebpf.records import check_pages, read_record, ring_pages_cflag
from netsprint.errors import DecodeError

HERE = Path(__file__).parent
SOURCE = HERE / "maps.bpf.c"
HEADER = HERE / "maps.h"
TRACEPOINT = "syscalls:sys_enter_getsid"  # see maps.bpf.c: nothing else in Python calls getsid
FN_NAME = "ns_maps_getsid"

MAP_TYPES = ("hash", "percpu_hash", "lru_hash", "lru_percpu_hash")
PATTERNS = ("increment", "correct")
_MAP_PREFIX = {"increment": "inc_", "correct": "ok_"}  # map names in maps.bpf.c
PER_CPU_TYPES = frozenset({"percpu_hash", "lru_percpu_hash"})

DEFAULT_RING_PAGES = 64    # 256 KiB: far more than the tests' bursts of 32-byte records
DEFAULT_PERF_PAGES = 64    # per CPU
DEFAULT_FLOOD_ENTRIES = 64
# counters[] slots in maps.bpf.c
_SLOT_SEQ, _SLOT_RING_FULL, _SLOT_PERF_FAILED = 0, 1, 2


class MapRecordStruct(ctypes.Structure):
    """ctypes mirror of `struct map_record` (maps.h); a test checks it against gcc."""

    _fields_ = [
        ("seq", ctypes.c_uint64),
        ("ts_ns", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
    ]


RECORD_SIZE = ctypes.sizeof(MapRecordStruct)


class MapRecordDecodeError(DecodeError):
    """A buffer record too short to be a `struct map_record`."""


@dataclass(frozen=True)
class MapRecord:
    """One traced getsid(2) call as the ring or perf buffer delivered it."""

    seq: int      # order in which the BPF program saw the calls (0, 1, 2 ...)
    ts_ns: int    # CLOCK_MONOTONIC nanoseconds
    tgid: int
    cpu: int      # CPU the call ran on: a perf buffer is per CPU


def decode(raw: bytes) -> MapRecord:
    """One ring- or perf-buffer record -> `MapRecord`. Pure. Perf records may carry padding
    after the struct (the kernel rounds samples up to 8 bytes), so longer is fine."""
    rec = read_record(MapRecordStruct, raw, MapRecordDecodeError)
    return MapRecord(seq=rec.seq, ts_ns=rec.ts_ns, tgid=rec.tgid, cpu=rec.cpu)


def sum_per_cpu(values: Iterable[int]) -> int:
    """A per-CPU map returns one value per *possible* CPU for a key; the key's total is their
    sum (each CPU only ever added to its own slot, so nothing is counted twice)."""
    return sum(int(v) for v in values)


@dataclass(frozen=True)
class BufferLoss:
    """Records that never reached user space.

    `ring_reserve_failed`: ringbuf_reserve() returned NULL (ring full), counted by the program.
    `perf_output_failed`: perf_submit() failed (that CPU's buffer full), counted by the program.
    `perf_lost_reported`: what perf's lost callback reported; the kernel writes its LOST
    record only once there is room again, so it lags until a later record gets through."""

    ring_reserve_failed: int
    perf_output_failed: int
    perf_lost_reported: int


class MapDemo:
    """Owns one loaded maps.bpf.c (counting getsid(2) calls of process `tgid`), its
    tracepoint attachment, its ring buffer and perf buffer, and the records drained from them.

    Use as a context manager; `fire(n)` makes n calls, `counts()` reads the eight counters,
    `drain()` collects buffered records into `ring_records()` / `perf_records()`."""

    def __init__(self, tgid: int | None = None, *, ring_pages: int = DEFAULT_RING_PAGES,
                 perf_pages: int = DEFAULT_PERF_PAGES, flood_entries: int = DEFAULT_FLOOD_ENTRIES,
                 run_as: str = AS_ROOT) -> None:
        check_pages("perf_pages", perf_pages)
        self.tgid = os.getpid() if tgid is None else tgid
        self.flood_entries = flood_entries
        self._ring: list[MapRecord] = []
        self._perf: list[MapRecord] = []
        self._perf_lost = 0
        cflags = [f"-DNETSPRINT_TGID={self.tgid}", ring_pages_cflag(ring_pages),
                  f"-DNETSPRINT_FLOOD_ENTRIES={flood_entries}"]
        self.program = BpfProgram(SOURCE, cflags=cflags, name="maps.bpf.c", run_as=run_as)
        try:
            self.program.open_ring_buffer("ring", lambda raw: self._ring.append(decode(raw)))
            self.program["perf"].open_perf_buffer(self._on_perf, page_cnt=perf_pages,
                                                  lost_cb=self._on_perf_lost)
            self.program.attach_tracepoint(TRACEPOINT, FN_NAME)
        except BaseException:
            self.program.close()
            raise

    def _on_perf(self, _cpu, data, size) -> None:
        self._perf.append(decode(ctypes.string_at(data, size)))

    def _on_perf_lost(self, lost: int) -> None:
        self._perf_lost += lost

    # --- driving --------------------------------------------------------------------------

    def fire(self, n: int, *, spread_over_cpus: bool = False) -> None:
        """Make n getsid(2) calls from this thread (each one a traced event when `tgid` is
        this process); `spread_over_cpus` moves the thread to the next CPU before each call."""
        make_calls(n, spread_over_cpus=spread_over_cpus)

    def drain(self, timeout: float = 0.0) -> None:
        """Hand every record waiting in the ring and perf buffers to their callbacks, waiting
        up to `timeout` seconds for the first ones."""
        if timeout > 0:
            self.program.poll(timeout)
            self.program.bpf.perf_buffer_poll(max(1, int(timeout * 1000)))
        self.program.bpf.ring_buffer_consume()
        self.program.bpf.perf_buffer_consume()

    # --- reading --------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """"<pattern>/<map type>" -> the count stored under this process's key (0 when the key
        does not exist), per-CPU values summed. Patterns: "increment", "correct"."""
        return {f"{pattern}/{map_type}": self._count(_MAP_PREFIX[pattern] + map_type, map_type)
                for pattern in PATTERNS for map_type in MAP_TYPES}

    def _count(self, map_name: str, map_type: str) -> int:
        table = self.program[map_name]
        key = table.Key(self.tgid)
        if key not in table:
            return 0
        value = table[key]
        return sum_per_cpu(value) if map_type in PER_CPU_TYPES else int(value.value)

    def ring_records(self) -> list[MapRecord]:
        """Records drained from the ring buffer so far, in delivery order."""
        return list(self._ring)

    def perf_records(self) -> list[MapRecord]:
        """Records drained from the perf buffers so far, in delivery order."""
        return list(self._perf)

    @property
    def lost(self) -> BufferLoss:
        counters = self.program["counters"]
        return BufferLoss(ring_reserve_failed=int(counters[_SLOT_RING_FULL].value),
                          perf_output_failed=int(counters[_SLOT_PERF_FAILED].value),
                          perf_lost_reported=self._perf_lost)

    def flood_keys(self) -> list[int]:
        """Keys (call sequence numbers) the LRU flood map still holds, ascending."""
        return sorted(int(k.value) for k in self.program["lru_flood"].keys())

    # --- changing state -------------------------------------------------------------------

    def precreate_keys(self) -> None:
        """Insert this process's key with value 0 into the four "increment" maps from user
        space: with the key present, `increment()` works on every map type."""
        for map_type in MAP_TYPES:
            table = self.program[_MAP_PREFIX["increment"] + map_type]
            key = table.Key(self.tgid)
            if map_type in PER_CPU_TYPES:
                table[key] = _zero_per_cpu(table)
            else:
                table[key] = table.Leaf(0)

    def reset(self) -> None:
        """Empty every map and counter and forget drained records, for a fresh measurement."""
        self.drain()
        for pattern in PATTERNS:
            for map_type in MAP_TYPES:
                self.program[_MAP_PREFIX[pattern] + map_type].clear()
        self.program["lru_flood"].clear()
        counters = self.program["counters"]
        for slot in (_SLOT_SEQ, _SLOT_RING_FULL, _SLOT_PERF_FAILED):
            counters[slot] = counters.Leaf(0)
        self._ring.clear()
        self._perf.clear()
        self._perf_lost = 0

    def close(self) -> None:
        self.program.close()

    def __enter__(self) -> MapDemo:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _zero_per_cpu(table):
    """A per-CPU value for bcc: one zero per possible CPU."""
    return (table.Leaf * table.total_cpu)()


def make_calls(n: int, *, spread_over_cpus: bool = False) -> None:
    """n getsid(2) calls from this thread. With `spread_over_cpus` the thread is pinned to
    each allowed CPU in turn (restored after), so per-CPU maps and buffers all get some."""
    if not spread_over_cpus:
        for _ in range(n):
            os.getsid(0)
        return
    allowed = sorted(os.sched_getaffinity(0))
    try:
        for i in range(n):
            os.sched_setaffinity(0, {allowed[i % len(allowed)]})
            os.getsid(0)
    finally:
        os.sched_setaffinity(0, allowed)


@dataclass(frozen=True)
class CountResult:
    """What a counting program stored under one key: the total, and for a per-CPU map the
    slot of each possible CPU (None for a shared map)."""

    total: int
    per_cpu: list[int] | None
    map_class: str   # bcc's table class: "HashTable", "PerCpuHash", "LruHash", "LruPerCpuHash" ...


def count_with(source: str, n: int, *, fn_name: str, map_name: str, tgid: int | None = None,
               read_key: int | None = None, spread_over_cpus: bool = True,
               run_as: str = AS_ROOT) -> CountResult:
    """Load BPF C `source` (a learner's program) with NETSPRINT_TGID=`tgid` (default: this
    process), attach `fn_name` to syscalls:sys_enter_getsid, make n getsid(2) calls from this
    process (over every CPU by default) and read what `map_name` holds under `read_key`
    (default: `tgid`; total 0 when the key is absent). A `tgid` other than ours checks the
    program's filter: our calls must then count nowhere."""
    tgid = os.getpid() if tgid is None else tgid
    read_key = tgid if read_key is None else read_key
    with BpfProgram(text=source, cflags=[f"-DNETSPRINT_TGID={tgid}"], name=fn_name,
                    run_as=run_as) as program:
        program.attach_tracepoint(TRACEPOINT, fn_name)
        make_calls(n, spread_over_cpus=spread_over_cpus)
        table = program[map_name]
        map_class = type(table).__name__
        key = table.Key(read_key)
        if key not in table:
            return CountResult(0, None, map_class)
        value = table[key]
        if isinstance(value, ctypes.Array):
            per_cpu = [int(v) for v in value]
            return CountResult(sum_per_cpu(per_cpu), per_cpu, map_class)
        return CountResult(int(value.value), None, map_class)
