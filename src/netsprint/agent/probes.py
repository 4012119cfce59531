"""The agent's BPF probes: load probes.bpf.c, attach its three tracepoints (tcp_probe, which
runs per segment, as a BTF-typed raw tracepoint) and its iterator over the `sockets` map,
with field offsets from the kernel's BTF; read its maps into a `model.Snapshot`.

What the kernel side counts (probes.bpf.c says why each hook):
- per `FlowKey` (cgroup id, local address, peer address; no ports): connections opened
  outbound (SYN_SENT -> ESTABLISHED) and inbound (SYN_RECV -> ESTABLISHED), closed (an
  opened socket reaching CLOSE), connect failures (SYN_SENT -> CLOSE), payload bytes sent
  (acknowledged by the peer) and received (arrived in sequence), from the kernel's own
  per-socket counters (tcp_sock.bytes_acked / bytes_received, RFC 4898), retransmitted
  segments (tcp:tcp_retransmit_skb);
- per `FlowKey`, log2 histograms of microseconds: connect duration (ESTABLISHED time -
  SYN_SENT time) and the smoothed RTT on every received segment (tcp:tcp_probe; the program
  reads `tp->srtt_us >> 3`, microseconds, as the classic event's `srtt` and TCP_INFO report).

Where bytes are, when: a live socket's bytes are in its tcp_sock; at CLOSE (where they stop
moving) the state hook adds them to the socket's flow and forgets the socket. `snapshot()`
reads `flows` first, then runs the `sockets` iterator, which writes each live socket's bytes
so far, and adds those to their flows. A socket that closes between the two reads is in
neither, so a snapshot can be short by its bytes until the next one; `snapshot()` therefore
never reports a byte counter below what it reported before (a Prometheus counter that goes
down reads as a restart). Once `flows` is full (it never frees an entry), a live socket
whose key has no flow is left out: its bytes will be refused at CLOSE (counted in `lost`),
and a key reported once is reported for good, so showing them while the socket lives would
grow the snapshot with every new peer.

Whose key: the socket's own cgroup (set when it was created; an accepted socket inherits
its listening socket's), so an inbound socket, which opens in softirq, is counted under
the cgroup that created the listener. A socket established before the agent attached is
adopted at its next received segment: counted from then on under its own addresses (it has
no open or connect time).

Events the agent can miss, all counted in `Snapshot.events_lost`:
- an insert a full map refused (maps are bounded: `max_flows`, `max_sockets`), per map and
  CPU in `lost`;
- a run of its programs the kernel skipped (`recursion_misses`): a classic tracepoint
  program does not run while another BPF program runs on its CPU, the agent's own batched
  map reads included. A missed ESTABLISHED is repaired at the next segment (adoption); a
  missed CLOSE leaves a stale entry, which the iterator flags (its socket is closed or
  another connection now) and `snapshot()` deletes once it has been stale on two reads.
Apart from deleting those, `snapshot()` only reads (batched lookups and the iterator).
"""

from __future__ import annotations

import ctypes
import errno
import operator
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from netsprint.agent import buckets
from netsprint.agent.model import (COUNTER_FIELDS, HISTOGRAM_SLOTS, FlowCounters, FlowKey,
                                   Log2Histogram, Snapshot)
from netsprint.ebpf.btf import BtfError, KernelTypes, kernel_types
from netsprint.ebpf.loader import (AS_ROOT, BpfLoadError, BpfProgram, program_fdinfo, require_bpf,
                                   require_tracepoint)

SOURCE = Path(__file__).with_name("probes.bpf.c")
HEADER = Path(__file__).with_name("probes.h")

# tracepoint -> BPF function (names ns_agent_*: tests check none is left loaded)
TRACEPOINTS = {
    "sock:inet_sock_set_state": "ns_agent_state",
    "tcp:tcp_retransmit_skb": "ns_agent_retrans",
    "tcp:tcp_probe": "ns_agent_srtt",
}
# The kernel's name for the `sockets` iterator (bcc names bpf_iter__<target> after its target)
ITERATOR_PROGRAM = "bpf_map_elem"
# The one that runs on every segment attaches as a BTF-typed raw tracepoint (docs/performance.md,
# "Agent overhead"): no event record is filled, and the program gets the tracepoint's C
# arguments, which must be these (include/trace/events/tcp.h; checked against the kernel's BTF).
RAW_ARGS = {
    "tcp:tcp_probe": ("struct sock *", "struct sk_buff *"),  # sk, skb
}
# The struct fields the programs read -> (path in the kernel's BTF, bytes the C reads).
# Offsets from a `struct sock *`: struct sock begins with its sock_common, and a tcp_sock
# begins with its struct sock (tcp_sk() is a cast). The last two are from the pointers
# before them (sk_cgrp_data.cgroup -> struct cgroup -> struct kernfs_node).
FIELDS = {
    "AGENT_OFF_SKC_FAMILY": ("sock.__sk_common.skc_family", 2),
    "AGENT_OFF_SKC_DADDR": ("sock.__sk_common.skc_daddr", 4),
    "AGENT_OFF_SKC_RCV_SADDR": ("sock.__sk_common.skc_rcv_saddr", 4),
    "AGENT_OFF_SKC_V6_DADDR": ("sock.__sk_common.skc_v6_daddr", 16),
    "AGENT_OFF_SKC_V6_RCV_SADDR": ("sock.__sk_common.skc_v6_rcv_saddr", 16),
    "AGENT_OFF_SKC_FLAGS": ("sock.__sk_common.skc_flags", 8),
    "AGENT_OFF_SKC_STATE": ("sock.__sk_common.skc_state", 1),
    "AGENT_OFF_SKC_PORTPAIR": ("sock.__sk_common.skc_portpair", 4),
    "AGENT_OFF_TCP_SRTT_US": ("tcp_sock.srtt_us", 4),
    "AGENT_OFF_TCP_BYTES_ACKED": ("tcp_sock.bytes_acked", 8),
    "AGENT_OFF_TCP_BYTES_RECEIVED": ("tcp_sock.bytes_received", 8),
    "AGENT_OFF_TCP_SND_UNA": ("tcp_sock.snd_una", 4),
    "AGENT_OFF_TCP_WRITE_SEQ": ("tcp_sock.write_seq", 4),
    "AGENT_OFF_SK_CGROUP": ("sock.sk_cgrp_data.cgroup", 8),
    "AGENT_OFF_CGROUP_KN": ("cgroup.kn", 8),
    "AGENT_OFF_KERNFS_NODE_ID": ("kernfs_node.id", 8),
}

ENOTSUPP = 524  # the kernel's own "not supported" (include/linux/errno.h), not in Python's errno
READ_ATTEMPTS = 3  # walks of one map per read before giving up (BatchReader, ENOSPC)
LOST_MAPS = ("sockets", "flows", "connect_hist", "srtt_hist")  # probes.h AGENT_LOST_* order


# --- ctypes mirrors of probes.h ------------------------------------------------------------------

class FlowKeyRecord(ctypes.Structure):
    """Mirror of `struct agent_flow_key`."""

    _fields_ = [
        ("cgroup_id", ctypes.c_uint64),
        ("local", ctypes.c_uint8 * 16),
        ("peer", ctypes.c_uint8 * 16),
        ("family", ctypes.c_uint16),
        ("pad", ctypes.c_uint16 * 3),
    ]


class HistogramRecord(ctypes.Structure):
    """Mirror of `struct agent_histogram`."""

    _fields_ = [
        ("slots", ctypes.c_uint64 * HISTOGRAM_SLOTS),
        ("sum_us", ctypes.c_uint64),
    ]


class SocketRecord(ctypes.Structure):
    """Mirror of `struct agent_socket`."""

    _fields_ = [
        ("key", FlowKeyRecord),
        ("connect_start_ns", ctypes.c_uint64),
        ("acked_base", ctypes.c_uint64),
        ("received_base", ctypes.c_uint64),
        ("fin_seq", ctypes.c_uint32),
        ("portpair", ctypes.c_uint32),
        ("direction", ctypes.c_uint8),
        ("opened", ctypes.c_uint8),
        ("fin_queued", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 5),
        ("srtt", HistogramRecord),
    ]


class ReadingRecord(ctypes.Structure):
    """Mirror of `struct agent_reading`."""

    _fields_ = [(name, ctypes.c_uint64) for name in ("sk", "sent_bytes", "received_bytes", "stale")]


class LiveSocketRecord(ctypes.Structure):
    """Mirror of `struct agent_live_socket`: one `sockets` entry, as the iterator writes it."""

    _fields_ = [("key", FlowKeyRecord), ("reading", ReadingRecord), ("srtt", HistogramRecord)]


class FlowCountersRecord(ctypes.Structure):
    """Mirror of `struct agent_flow_counters` (field names are FlowCounters' names)."""

    _fields_ = [(name, ctypes.c_uint64) for name in COUNTER_FIELDS]


# --- pure decoding ---------------------------------------------------------------------------------

def address_text(family: int, raw) -> str:
    """A 16-byte address field as text; "" for family 0 (addresses unknown)."""
    data = bytes(raw)
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, data[:4])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, data[:16])
    return ""


def flow_key(record: FlowKeyRecord) -> FlowKey:
    return FlowKey(record.cgroup_id, address_text(record.family, record.local),
                   address_text(record.family, record.peer))


def sum_counters(per_cpu) -> FlowCounters:
    """One FlowCounters from the per-CPU copies of a `struct agent_flow_counters`, each
    given as its words (fields in model.COUNTER_FIELDS order)."""
    return FlowCounters(*map(sum, zip(*per_cpu)))


def sum_histogram(per_cpu) -> Log2Histogram:
    """One Log2Histogram from the per-CPU copies of a `struct agent_histogram`, each given
    as its words (HISTOGRAM_SLOTS slots, then sum_us)."""
    totals = tuple(map(sum, zip(*per_cpu)))
    return Log2Histogram(totals[:HISTOGRAM_SLOTS], totals[HISTOGRAM_SLOTS])


def keep_bytes_monotonic(flows: dict[FlowKey, FlowCounters],
                         reported: dict[FlowKey, tuple[int, int]]) -> None:
    """Raise each flow's byte counts to at least what `reported` says was reported before,
    then remember the new ones (the read race in the module docstring). A flow whose only
    bytes were a socket that closed between the reads is put back, so its series does not
    vanish for a scrape."""
    for key, (sent, received) in reported.items():
        if key not in flows:
            flows[key] = FlowCounters(sent_bytes=sent, received_bytes=received)
    for key, counters in flows.items():
        sent, received = reported.get(key, (0, 0))
        counters.sent_bytes = max(counters.sent_bytes, sent)
        counters.received_bytes = max(counters.received_bytes, received)
        reported[key] = (counters.sent_bytes, counters.received_bytes)


def keep_histograms_monotonic(histograms: dict[FlowKey, Log2Histogram],
                              reported: dict[FlowKey, Log2Histogram]) -> None:
    """The same for histograms (each bucket is a Prometheus counter): slot by slot and the
    sum, at least what was reported before."""
    for key, before in reported.items():
        now = histograms.get(key, before)
        histograms[key] = Log2Histogram(tuple(map(max, now.slots, before.slots)),
                                        max(now.sum_us, before.sum_us))
    reported.update(histograms)


def merge(into: dict, key: FlowKey, value, add) -> None:
    """Add `value` under `key` instead of overwriting: `address_text` reads only the first 4
    bytes of an IPv4 address, so two kernel keys that differed in the other 12 would give
    one FlowKey. The probes zero those bytes, so this should never add; it costs nothing."""
    into[key] = add(into[key], value) if key in into else value


# struct agent_live_socket as the iterator writes it: the raw flow key, sk, sent, received,
# stale, then the RTT histogram's words (HISTOGRAM_SLOTS slots, sum_us)
LIVE_SOCKET = struct.Struct(f"={ctypes.sizeof(FlowKeyRecord)}sQQQQ{HISTOGRAM_SLOTS + 1}Q")
assert LIVE_SOCKET.size == ctypes.sizeof(LiveSocketRecord)


# --- reading maps without disturbing them ------------------------------------------------------

class BatchReader:
    """Owns the key/value buffers for reading one hash map in BPF_MAP_LOOKUP_BATCH calls
    (a few syscalls for the whole map instead of two per entry). Reads only: entries the BPF
    side inserts or deletes meanwhile may or may not be in the answer, nothing is changed.

    `per_cpu`: the value is one copy per possible CPU, each rounded up to 8 bytes (the
    kernel's layout for per-CPU map values)."""

    def __init__(self, table, key_type, value_type, max_entries: int, cpus: int = 1, *,
                 lib=None) -> None:
        if lib is None:  # libbcc's bpf_lookup_batch; a test passes its own
            from bcc.libbcc import lib

        self._lib, self._fd = lib, table.map_fd
        self.key_type, self.value_type, self.cpus = key_type, value_type, cpus
        self._value_size = (ctypes.sizeof(value_type) + 7) // 8 * 8 * cpus
        self._capacity = max_entries
        self.entries = 0  # how many the last read found
        self._keys = ctypes.create_string_buffer(ctypes.sizeof(key_type) * max_entries)
        self._values = ctypes.create_string_buffer(self._value_size * max_entries)

    def _batch(self, in_token, out_token, offset: int, count: ctypes.c_uint32) -> int:
        keys = ctypes.byref(self._keys, ctypes.sizeof(self.key_type) * offset)
        values = ctypes.byref(self._values, self._value_size * offset)
        start = ctypes.byref(in_token) if in_token is not None else None  # None: from the start
        res = self._lib.bpf_lookup_batch(self._fd, start, ctypes.byref(out_token), keys, values,
                                         ctypes.byref(count))
        return 0 if res == 0 else ctypes.get_errno()

    def read_raw(self) -> int:
        """Fill the buffers; how many entries they hold."""
        for _attempt in range(READ_ATTEMPTS):
            total = self._walk()
            if total is not None:
                self.entries = total
                return total
        raise BpfLoadError(f"reading a BPF map failed {READ_ATTEMPTS} times in a row: entries were "
                           "deleted and inserted faster than it could be read (ENOSPC)",
                           "raise max_flows / max_sockets in the agent's config, so the maps "
                           "are not kept near full while sockets come and go")

    def _walk(self) -> int | None:
        """One walk of the map from its first bucket: how many entries the buffers got, or
        None if the walk must start over."""
        # The token is the kernel's bucket index for hash maps: a __u32 (libbcc's argtypes).
        total, in_token, out_token = 0, None, ctypes.c_uint32(0)
        while total < self._capacity:
            count = ctypes.c_uint32(self._capacity - total)
            error = self._batch(in_token, out_token, total, count)
            total += count.value
            if error == errno.ENOENT:  # the whole map was walked (also: it is empty)
                break
            if error == errno.ENOSPC:
                # The next bucket holds more entries than the buffers have room left: only
                # possible when entries read earlier in this walk were deleted and others
                # inserted meanwhile (a map never holds more than its size). Start over.
                return None
            if error:
                raise BpfLoadError(f"reading a BPF map failed: {os.strerror(error)}",
                                   "kernels before 5.6 lack BPF_MAP_LOOKUP_BATCH" if error in
                                   (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP) else "")
            in_token = ctypes.c_uint32(out_token.value)
        return total

    def items(self) -> Iterator[tuple[object, list[memoryview]]]:
        """(key record, [value words per CPU]) for each entry. Values come as 64-bit words
        (every value type here is a whole number of them): summing words is several times
        faster in Python than building a ctypes record per CPU."""
        key_size, stride = ctypes.sizeof(self.key_type), self._value_size // self.cpus // 8
        width = ctypes.sizeof(self.value_type) // 8
        words = memoryview(self._values).cast("B").cast("Q")
        for i in range(self.read_raw()):
            key = self.key_type.from_buffer_copy(self._keys, i * key_size)
            base = i * stride * self.cpus
            yield key, [words[base + cpu * stride: base + cpu * stride + width] for cpu in range(self.cpus)]


# --- the loaded program ------------------------------------------------------------------------

def require_probes(run_as: str = AS_ROOT) -> KernelFacts:
    """Raise BpfLoadError naming what is missing (bcc, privileges, tracefs, headers, a
    tracepoint, the kernel's BTF) before anything is compiled; return what the programs need
    from this kernel's BTF."""
    require_bpf(run_as=run_as, tracing=True)
    for tracepoint in TRACEPOINTS:
        category, _, event = tracepoint.partition(":")
        require_tracepoint(category, event)
    try:
        types = kernel_types()
        return KernelFacts(kernel_field_flags(types),
                           {tp: types.tracepoint_type_id(tp.partition(":")[2]) for tp in RAW_ARGS})
    except BtfError as exc:
        raise BpfLoadError(f"the agent's probes cannot run on this kernel: {exc}",
                           "the agent needs a kernel built with CONFIG_DEBUG_INFO_BTF=y "
                           "(/sys/kernel/btf/vmlinux) whose tracepoints take the arguments "
                           "probes.py RAW_ARGS lists") from exc


class KernelFacts(NamedTuple):
    """What probes.bpf.c needs from the running kernel's BTF."""

    cflags: list[str]                  # -DAGENT_OFF_*=<offset>, one per FIELDS entry
    tracepoint_ids: dict[str, int]     # RAW_ARGS tracepoint -> its btf_trace_<event> type id


def kernel_field_flags(types: KernelTypes) -> list[str]:
    """-D flags with each FIELDS offset, after checking that every raw tracepoint takes the
    arguments the programs expect and every field has the size they read."""
    for tracepoint, expected in RAW_ARGS.items():
        event = tracepoint.partition(":")[2]
        found = types.tracepoint_args(event)
        if found != expected:
            raise BtfError(f"tracepoint {event} takes ({', '.join(found)}); the agent's "
                           f"program expects ({', '.join(expected)})")
    flags = []
    for macro, (path, size) in FIELDS.items():
        field = types.field(path)
        if field.size != size:
            raise BtfError(f"{path} is {field.size} bytes on this kernel; the agent reads {size}")
        flags.append(f"-D{macro}={field.offset}")
    return flags


class AgentProbes:
    """Owns the loaded probes.bpf.c program, its tracepoint attachments and the readers of
    its maps. Implements `model.SnapshotSource`. Does not own the counts' meaning (model.py)
    or pod attribution (pods.py).

    `AgentProbes(max_flows=..., max_sockets=...)` sizes the maps at compile time; `close()`
    (or `with`) detaches everything and is idempotent."""

    def __init__(self, *, run_as: str = AS_ROOT, max_flows: int = 10240, max_sockets: int = 65536) -> None:
        if max_flows < 1 or max_sockets < 1:
            raise ValueError("max_flows and max_sockets must be at least 1")
        kernel = require_probes(run_as)
        from bcc.utils import get_possible_cpus

        self.max_flows, self.max_sockets = max_flows, max_sockets
        self.probes_attached = 0
        self._reported_bytes: dict[FlowKey, tuple[int, int]] = {}
        self._reported_srtt: dict[FlowKey, Log2Histogram] = {}
        self._sockets_reader: BatchReader | None = None
        self._stale_before: set[int] = set()
        self.stale_removed = 0  # stale `sockets` entries deleted (counted as lost events)
        self._socket_keys: dict[bytes, FlowKey] = {}  # raw key -> FlowKey (inet_ntop is slow)
        self.program = BpfProgram(SOURCE, name="agent probes", run_as=run_as,
                                  cflags=[f"-DAGENT_MAX_FLOWS={max_flows}",
                                          f"-DAGENT_MAX_SOCKETS={max_sockets}", *kernel.cflags])
        try:
            self._cpus = len(get_possible_cpus())
            self._readers = self._make_readers()
            self._live_sockets = self.program.map_iterator("sockets")
            for tracepoint, function in TRACEPOINTS.items():
                if tracepoint in RAW_ARGS:
                    self.program.attach_btf_tracepoint(tracepoint, function,
                                                       kernel.tracepoint_ids[tracepoint])
                else:
                    self.program.attach_tracepoint(tracepoint, function)
                self.probes_attached += 1
        except BaseException:
            self.close()
            raise

    def _make_readers(self) -> dict[str, BatchReader]:
        def reader(name, key, value, size, cpus):
            return BatchReader(self.program[name], key, value, size, cpus)

        flows, cpus = self.max_flows, self._cpus
        return {"flows": reader("flows", FlowKeyRecord, FlowCountersRecord, flows, cpus),
                "connect_hist": reader("connect_hist", FlowKeyRecord, HistogramRecord, flows, cpus),
                "srtt_hist": reader("srtt_hist", FlowKeyRecord, HistogramRecord, flows, cpus)}

    # --- reading ---

    def lost_by_map(self) -> dict[str, int]:
        """Inserts refused because the named map was full, summed over CPUs."""
        table = self.program["lost"]
        return {name: sum(int(v) for v in table[ctypes.c_int(i)]) for i, name in enumerate(LOST_MAPS)}

    def sockets(self) -> dict[int, SocketRecord]:
        """The per-socket map (socket address -> record): what the probes know right now.
        For tests and debugging: its reader's buffers (max_sockets x 312 bytes) are only
        allocated on the first call."""
        if self._sockets_reader is None:
            self._sockets_reader = BatchReader(self.program["sockets"], ctypes.c_uint64, SocketRecord,
                                               self.max_sockets, 1)
        return {int(key.value): SocketRecord.from_buffer_copy(values[0])
                for key, values in self._sockets_reader.items()}

    def read_sockets(self) -> dict[int, tuple]:
        """sk -> (raw flow key, sent, received, stale, *RTT histogram words) for every
        `sockets` entry: one run of the iterator, which reads each socket's bytes from its
        tcp_sock. An entry shown twice (the iterator resumes by position when the map
        changed between two of its reads) is kept once."""
        raw = self._live_sockets.read()
        return {sk: (key, sent, received, stale, *srtt) for key, sk, sent, received, stale, *srtt
                in LIVE_SOCKET.iter_unpack(raw[:len(raw) - len(raw) % LIVE_SOCKET.size])}

    def _key_of(self, raw: bytes) -> FlowKey:
        key = self._socket_keys.get(raw)
        if key is None:
            if len(self._socket_keys) >= self.max_sockets:  # bounded like the map
                self._socket_keys.clear()
            key = self._socket_keys[raw] = flow_key(FlowKeyRecord.from_buffer_copy(raw))
        return key

    def _add_live_sockets(self, snap: Snapshot) -> int:
        """Add the live sockets' bytes and RTT samples to their flows (read after `flows`
        and `srtt_hist`; see the module docstring for the race and for a full `flows`); how
        many entries `sockets` has."""
        entries = self.read_sockets()
        flows_full = self._readers["flows"].entries >= self.max_flows
        stale = set()
        for sk, (raw, sent, received, is_stale, *srtt) in entries.items():
            if is_stale:
                stale.add(sk)
                continue
            key = self._key_of(raw)
            if flows_full and key not in snap.flows:
                continue  # lost at CLOSE: see the module docstring
            merge(snap.flows, key, FlowCounters(sent_bytes=sent, received_bytes=received), operator.add)
            if srtt[HISTOGRAM_SLOTS]:  # any sample has a sum of at least 1 us
                merge(snap.srtt, key, Log2Histogram(tuple(srtt[:HISTOGRAM_SLOTS]), srtt[HISTOGRAM_SLOTS]),
                      buckets.merge)
        self._remove_stale(stale)
        return len(entries)

    def _remove_stale(self, stale: set[int]) -> None:
        """Delete the entries stale on this read and the one before: their socket reached
        CLOSE unseen (or its memory is another connection's), so no hook will ever remove
        them. Two reads, not one: a CLOSE on another CPU may be between its steps now."""
        table = self.program["sockets"]
        for sk in stale & self._stale_before:
            try:
                del table[table.Key(sk)]
            except KeyError:
                continue  # its CLOSE came after all
            self.stale_removed += 1
        self._stale_before = stale

    def missed_runs(self) -> int:
        """Runs the kernel skipped of the agent's programs (fdinfo `recursion_misses`): a
        classic tracepoint program does not run while another BPF program runs on its CPU,
        even one of the agent's own map reads, so state changes can go unseen."""
        fds = [fn.fd for name, fn in self.program.bpf.funcs.items() if name.decode() in TRACEPOINTS.values()]
        fds += [program.prog_fd for program in self.program.btf_tracepoints.values()]
        return sum(program_fdinfo(fd).get("recursion_misses", 0) for fd in fds)

    def snapshot(self) -> Snapshot:
        snap = Snapshot(probes_attached=self.probes_attached)
        for key, per_cpu in self._readers["flows"].items():
            merge(snap.flows, flow_key(key), sum_counters(per_cpu), operator.add)
        for name, target in (("connect_hist", snap.connect_duration), ("srtt_hist", snap.srtt)):
            for key, per_cpu in self._readers[name].items():
                merge(target, flow_key(key), sum_histogram(per_cpu), buckets.merge)
        socket_entries = self._add_live_sockets(snap)
        keep_bytes_monotonic(snap.flows, self._reported_bytes)
        keep_histograms_monotonic(snap.srtt, self._reported_srtt)
        snap.map_entries = {name: reader.entries for name, reader in self._readers.items()}
        snap.map_entries["sockets"] = socket_entries
        snap.events_lost = sum(self.lost_by_map().values()) + self.stale_removed + self.missed_runs()
        return snap

    # --- life cycle ---

    def close(self) -> None:
        program = getattr(self, "program", None)
        if program is not None:
            self.program = None
            self.probes_attached = 0
            program.close()

    def __enter__(self) -> AgentProbes:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
