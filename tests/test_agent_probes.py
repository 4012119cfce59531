"""The agent's BPF probes against ground truth the tests make themselves: their own
connections (each test on its own loopback addresses 127.77.<test>.x, or in a veth pair in
198.51.100.0/24), byte counts their own calls returned, a cgroup they create.

Keys have no ports, and the machine has other traffic, so every assertion is filtered to the
test's own addresses (and cgroup). One loaded program is shared by the module (a compile
takes 1-2 s); tests that need other map sizes load their own.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from contextlib import contextmanager
from pathlib import Path

import pytest
from bpfutil import assert_mirror_matches, our_programs, run_unprivileged, still_loaded

from netsprint.agent.buckets import slot_of_microseconds as slot_of
from netsprint.agent.model import HISTOGRAM_SLOTS, FlowCounters, FlowKey, Log2Histogram
from netsprint.agent.probes import (FIELDS, HEADER, ITERATOR_PROGRAM, RAW_ARGS, READ_ATTEMPTS,
                                    TRACEPOINTS, AgentProbes, BatchReader, FlowCountersRecord,
                                    FlowKeyRecord, HistogramRecord, LiveSocketRecord, ReadingRecord,
                                    SocketRecord, address_text, flow_key, keep_bytes_monotonic,
                                    keep_histograms_monotonic, kernel_field_flags, sum_counters,
                                    sum_histogram)
from netsprint.ebpf.btf import BtfError, Field
from netsprint.ebpf.loader import BpfLoadError
from netsprint.lab.pods import cgroup2_mount, join_cgroup_argv, process_cgroup

WAIT_SECONDS = 5.0  # bound on waiting for the kernel side to show what must come
TCP_INFO_RTT = struct.Struct("B" * 8 + "I" * 24)  # struct tcp_info up to tcpi_rcv_space
TCPI_RTT_INDEX = 8 + 15  # tcpi_rtt: the 16th __u32 (linux/tcp.h), srtt_us >> 3


# --- pure: layouts and sums --------------------------------------------------------------------

class ScriptedBatches:
    """Stands in for libbcc's bpf_lookup_batch: each call answers with the next (entries,
    errno) of the script (the last one repeats), as the count of entries it returned."""

    def __init__(self, *script: tuple[int, int]) -> None:
        self.script, self.calls = list(script), 0

    def bpf_lookup_batch(self, fd, start, out_token, keys, values, count):
        entries, error = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        count._obj.value = entries  # `count` is ctypes.byref(c_uint32)
        ctypes.set_errno(error)
        return -1 if error else 0


def scripted_reader(*script: tuple[int, int]) -> tuple[BatchReader, ScriptedBatches]:
    lib = ScriptedBatches(*script)
    table = types.SimpleNamespace(map_fd=-1)
    return BatchReader(table, ctypes.c_uint64, ctypes.c_uint64, 16, lib=lib), lib


@pytest.mark.unit
def test_a_map_read_that_meets_churn_starts_over():
    # ENOSPC: the next bucket no longer fits the room left, because entries read earlier
    # were deleted and others inserted; the walk starts over and the answer is whole
    reader, lib = scripted_reader((5, errno.ENOSPC), (7, errno.ENOENT))
    assert reader.read_raw() == 7
    assert lib.calls == 2


@pytest.mark.unit
def test_a_map_that_never_holds_still_says_so():
    reader, lib = scripted_reader((3, errno.ENOSPC))
    with pytest.raises(BpfLoadError, match="faster than it could be read") as caught:
        reader.read_raw()
    assert lib.calls == READ_ATTEMPTS
    assert "max_flows" in caught.value.hint


@pytest.mark.unit
def test_a_kernel_without_batch_reads_is_named():
    reader, _ = scripted_reader((0, errno.EINVAL))
    with pytest.raises(BpfLoadError, match="Invalid argument") as caught:
        reader.read_raw()
    assert "5.6" in caught.value.hint


class KernelLike:
    """What kernel_field_flags asks of the kernel's BTF, with answers a test chooses."""

    def __init__(self, sizes: dict[str, int] | None = None, args: dict[str, tuple] | None = None):
        self.sizes, self.args = sizes or {}, args or {}

    def field(self, path: str) -> Field:
        return Field(len(path), self.sizes.get(path, dict(FIELDS.values())[path]))

    def tracepoint_args(self, event: str) -> tuple[str, ...]:
        return self.args.get(event, RAW_ARGS[next(t for t in RAW_ARGS if t.endswith(":" + event))])


@pytest.mark.unit
def test_field_offsets_become_one_flag_each():
    flags = kernel_field_flags(KernelLike())
    assert flags == [f"-D{macro}={len(path)}" for macro, (path, _size) in FIELDS.items()]


@pytest.mark.unit
def test_a_field_of_another_size_is_refused():
    with pytest.raises(BtfError, match="tcp_sock.srtt_us is 8 bytes on this kernel; the agent reads 4"):
        kernel_field_flags(KernelLike(sizes={"tcp_sock.srtt_us": 8}))


@pytest.mark.unit
def test_a_tracepoint_with_other_arguments_is_refused():
    with pytest.raises(BtfError, match=r"tcp_probe takes \(struct sock \*\); the agent's program expects"):
        kernel_field_flags(KernelLike(args={"tcp_probe": ("struct sock *",)}))


@pytest.mark.unit
@pytest.mark.parametrize("mirror, struct_name", [
    (FlowKeyRecord, "struct agent_flow_key"),
    (SocketRecord, "struct agent_socket"),
    (FlowCountersRecord, "struct agent_flow_counters"),
    (HistogramRecord, "struct agent_histogram"),
    (ReadingRecord, "struct agent_reading"),
    (LiveSocketRecord, "struct agent_live_socket"),
])
def test_ctypes_mirrors_match_the_header(mirror, struct_name):
    assert_mirror_matches(mirror, HEADER, struct_name)


@pytest.mark.unit
def test_the_header_has_the_models_slot_count():
    assert f"#define AGENT_HISTOGRAM_SLOTS {HISTOGRAM_SLOTS}" in HEADER.read_text()


@pytest.mark.unit
@pytest.mark.parametrize("us, slot", [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (1023, 9), (1024, 10),
                                      (2**26, 26), (2**27, 26), (2**40, 26)])
def test_slot_rule_is_floor_log2_with_an_open_last_slot(us, slot):
    assert slot_of(us) == slot


@pytest.mark.unit
def test_flow_key_decodes_ipv4_ipv6_and_unknown():
    v4 = FlowKeyRecord(cgroup_id=7, family=socket.AF_INET)
    ctypes.memmove(v4.local, bytes([198, 51, 100, 1]), 4)
    ctypes.memmove(v4.peer, bytes([198, 51, 100, 2]), 4)
    v6 = FlowKeyRecord(cgroup_id=8, family=socket.AF_INET6)
    ctypes.memmove(v6.local, socket.inet_pton(socket.AF_INET6, "2001:db8::1"), 16)
    ctypes.memmove(v6.peer, socket.inet_pton(socket.AF_INET6, "::1"), 16)
    assert flow_key(v4) == FlowKey(7, "198.51.100.1", "198.51.100.2")
    assert flow_key(v6) == FlowKey(8, "2001:db8::1", "::1")
    assert flow_key(FlowKeyRecord(cgroup_id=9)) == FlowKey(9, "", "")
    assert address_text(0, bytes(16)) == ""


def as_words(record: ctypes.Structure) -> memoryview:
    """A map value (all __u64 fields) as its 64-bit words, the form BatchReader hands out."""
    return memoryview(bytes(record)).cast("Q")


@pytest.mark.unit
def test_per_cpu_values_are_summed():
    cpu0 = FlowCountersRecord(opened_outbound=2, sent_bytes=100, retransmitted_segments=1)
    cpu1 = FlowCountersRecord(opened_outbound=1, closed=3, sent_bytes=23)
    assert sum_counters([as_words(cpu0), as_words(cpu1)]) == \
        FlowCounters(opened_outbound=3, closed=3, sent_bytes=123, retransmitted_segments=1)
    h0, h1 = HistogramRecord(sum_us=10), HistogramRecord(sum_us=5)
    h0.slots[3], h1.slots[3], h1.slots[26] = 1, 2, 4
    merged = sum_histogram([as_words(h0), as_words(h1)])
    assert merged == Log2Histogram(tuple(3 if i == 3 else 4 if i == 26 else 0
                                         for i in range(HISTOGRAM_SLOTS)), 15)
    assert merged.count == 7


@pytest.mark.unit
def test_exported_byte_counts_never_go_down():
    # A socket that closes between the reads of `flows` and the live sockets is in neither:
    # that read is short, and a Prometheus counter that goes down reads as a restart.
    key, other, gone = FlowKey(1, "10.0.0.1", "10.0.0.2"), FlowKey(2, "", ""), FlowKey(3, "", "")
    reported: dict = {}
    first = {key: FlowCounters(opened_outbound=1, sent_bytes=500, received_bytes=70),
             gone: FlowCounters(received_bytes=9)}
    keep_bytes_monotonic(first, reported)
    short = {key: FlowCounters(opened_outbound=1, closed=1, sent_bytes=400, received_bytes=80),
             other: FlowCounters(sent_bytes=5)}
    keep_bytes_monotonic(short, reported)
    assert short[key] == FlowCounters(opened_outbound=1, closed=1, sent_bytes=500, received_bytes=80)
    assert short[other] == FlowCounters(sent_bytes=5)
    assert short[gone] == FlowCounters(received_bytes=9)  # its series does not vanish
    caught_up = {key: FlowCounters(sent_bytes=650, received_bytes=80)}
    keep_bytes_monotonic(caught_up, reported)
    assert caught_up[key].sent_bytes == 650


@pytest.mark.unit
def test_exported_histograms_never_go_down():
    # The same race for RTT samples: each bucket of a histogram is a counter too.
    def hist(slot3: int, slot5: int, sum_us: int) -> Log2Histogram:
        return Log2Histogram(tuple(slot3 if i == 3 else slot5 if i == 5 else 0
                                   for i in range(HISTOGRAM_SLOTS)), sum_us)

    key, gone = FlowKey(1, "10.0.0.1", "10.0.0.2"), FlowKey(3, "", "")
    reported: dict = {}
    first = {key: hist(4, 1, 60), gone: hist(1, 0, 9)}
    keep_histograms_monotonic(first, reported)
    short = {key: hist(2, 3, 70)}  # slot 3 short, slot 5 grew
    keep_histograms_monotonic(short, reported)
    assert short == {key: hist(4, 3, 70), gone: hist(1, 0, 9)}
    caught_up = {key: hist(5, 3, 80), gone: hist(1, 0, 9)}
    keep_histograms_monotonic(caught_up, reported)
    assert caught_up[key] == hist(5, 3, 80)


# --- ground truth helpers ----------------------------------------------------------------------

def own_cgroup_id() -> int:
    """The cgroup v2 id bpf_get_current_cgroup_id() gives this process: the inode number of
    its cgroup directory ("0::<path>" in /proc/self/cgroup)."""
    return (cgroup2_mount() / process_cgroup().lstrip("/")).stat().st_ino


@contextmanager
def new_cgroup(name: str):
    """A cgroup v2 directory of our own, removed afterwards (its processes must have ended)."""
    path = cgroup2_mount() / f"{name}-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        path.rmdir()


def run_in_cgroup(cgroup: Path, code: str, pass_fds: tuple[int, ...] = ()) -> None:
    """Run `code` in a Python child that is in `cgroup` from its first instruction (a shell
    joins, then execs it: no preexec_fn, which is unsafe in a threaded process)."""
    proc = subprocess.run(join_cgroup_argv(cgroup, [sys.executable, "-c", code]),
                          pass_fds=pass_fds, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


class Connection:
    """A client socket and the server socket that accepted it, on loopback addresses."""

    def __init__(self, server: socket.socket, client_ip: str) -> None:
        self.client = socket.socket()
        self.client.bind((client_ip, 0))
        self.client.connect(server.getsockname())
        self.server, _ = server.accept()

    def send_and_read(self, size: int) -> int:
        """The client sends `size` bytes, the server reads them all; what recv returned."""
        self.client.sendall(b"c" * size)
        got = 0
        while got < size:
            chunk = self.server.recv(65536)
            assert chunk, "peer closed early"
            got += len(chunk)
        return got

    def close(self) -> None:
        self.client.close()
        self.server.close()


def listener(ip: str) -> socket.socket:
    return socket.create_server((ip, 0), backlog=64)


def wait_for(probes: AgentProbes, ready, seconds: float = WAIT_SECONDS):
    """Snapshots until `ready(snapshot)` holds (at most `seconds`); the last one."""
    deadline = time.monotonic() + seconds
    while True:
        snap = probes.snapshot()
        if ready(snap) or time.monotonic() > deadline:
            return snap
        time.sleep(0.02)


def counters(snap, key: FlowKey) -> FlowCounters:
    return snap.flows.get(key, FlowCounters())


def held_program_ids() -> set[int]:
    """Ids of the BPF programs this process holds a file descriptor to (fdinfo's prog_id)."""
    ids = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:  # the fd listdir itself used, closed meanwhile
            continue
        ids.update(int(line.split()[1]) for line in info.splitlines() if line.startswith("prog_id:"))
    return ids


def tcp_info_rtt_us(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_RTT.size)
    return TCP_INFO_RTT.unpack(raw)[TCPI_RTT_INDEX]


# --- the shared program ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probes():
    if os.geteuid() != 0:
        pytest.skip("needs root (run `sudo make test`)")
    pytest.importorskip("bcc", reason="bcc is not importable: scripts/provision.sh installs python3-bpfcc")
    with AgentProbes() as loaded:
        yield loaded


@pytest.mark.bpf
def test_connections_bytes_and_connect_time_are_counted_per_flow(needs_bcc, probes):
    server_ip, client_ip, me = "127.77.1.1", "127.77.1.2", own_cgroup_id()
    n, sizes = 5, [123_457, 1, 65_536, 4_000, 999]

    def ours_live() -> list:
        return [r for r in probes.sockets().values()
                if address_text(r.key.family, r.key.local) in (server_ip, client_ip)]

    with listener(server_ip) as server:
        conns = [Connection(server, client_ip) for _ in range(n)]
        read = sum(c.send_and_read(size) for c, size in zip(conns, sizes))
        # both sides are the socket's own cgroup: the listener's for the accepted ones
        outbound, inbound = FlowKey(me, client_ip, server_ip), FlowKey(me, server_ip, client_ip)
        # sent counts what the peer acknowledged, so wait for the last ACKs too
        snap = wait_for(probes, lambda s: counters(s, inbound).received_bytes >= read
                        and counters(s, outbound).sent_bytes >= sum(sizes))
        assert counters(snap, outbound) == FlowCounters(opened_outbound=n, sent_bytes=sum(sizes))
        assert counters(snap, inbound) == FlowCounters(opened_inbound=n, received_bytes=read)
        assert read == sum(sizes)
        live = ours_live()
        assert len(live) == 2 * n and all(r.opened for r in live)
        assert snap.map_entries["sockets"] >= 2 * n
        for c in conns:
            c.close()
    snap = wait_for(probes, lambda s: counters(s, outbound).closed == n
                    and counters(s, inbound).closed == n)
    assert counters(snap, outbound).closed == n and counters(snap, outbound).active == 0
    assert counters(snap, inbound).closed == n and counters(snap, inbound).active == 0
    duration = snap.connect_duration[outbound]
    assert duration.count == n and duration.sum_us > 0
    assert inbound not in snap.connect_duration  # outbound only
    assert snap.srtt[outbound].count > 0
    # closed sockets are forgotten at CLOSE, their bytes kept in their flows: each FIN took a
    # sequence number in bytes_acked and bytes_received, and neither is a payload byte
    gone = wait_for(probes, lambda s: not ours_live())
    assert not ours_live(), "socket entries left after every socket was closed"
    assert gone.probes_attached == len(TRACEPOINTS)
    assert counters(gone, outbound).sent_bytes == sum(sizes)
    assert counters(gone, inbound).received_bytes == read
    assert counters(gone, outbound).received_bytes == counters(gone, inbound).sent_bytes == 0


@pytest.mark.bpf
def test_fins_are_not_bytes_while_a_socket_lives(needs_bcc, probes):
    # Half-closed, both sockets still open (FIN_WAIT2 and CLOSE_WAIT): the live read (the
    # iterator) must take the FIN out on both ends, acknowledged and arrived.
    server_ip, client_ip, up, down = "127.77.8.1", "127.77.8.2", 2_345, 678
    me = own_cgroup_id()
    outbound, inbound = FlowKey(me, client_ip, server_ip), FlowKey(me, server_ip, client_ip)
    with listener(server_ip) as server:
        conn = Connection(server, client_ip)
        try:
            conn.client.sendall(b"u" * up)
            conn.client.shutdown(socket.SHUT_WR)
            assert len(conn.server.recv(up, socket.MSG_WAITALL)) == up
            assert conn.server.recv(1) == b""  # the FIN arrived
            conn.server.sendall(b"d" * down)  # CLOSE_WAIT may still send
            assert len(conn.client.recv(down, socket.MSG_WAITALL)) == down
            want = {outbound: (up, down), inbound: (down, up)}
            snap = wait_for(probes, lambda s: all(
                (counters(s, k).sent_bytes, counters(s, k).received_bytes) == v for k, v in want.items()))
            assert {k: (counters(snap, k).sent_bytes, counters(snap, k).received_bytes)
                    for k in want} == want
            live = [r for r in probes.sockets().values()
                    if address_text(r.key.family, r.key.local) in (server_ip, client_ip)]
            assert sorted(r.fin_queued for r in live) == [0, 1]  # the iterator's case, not CLOSE's
        finally:
            conn.close()


def closed_pair_counts(probes: AgentProbes, server_ip: str, client_ip: str, want: dict) -> dict:
    """Each key's (sent, received) once every socket of the pair is gone from `sockets`."""
    me = own_cgroup_id()
    keys = {"client": FlowKey(me, client_ip, server_ip), "server": FlowKey(me, server_ip, client_ip)}

    def done(s) -> bool:
        return all(counters(s, keys[side]).closed == 1 for side in want)

    snap = wait_for(probes, done)
    return {side: (counters(snap, keys[side]).sent_bytes, counters(snap, keys[side]).received_bytes)
            for side in want}


@pytest.mark.bpf
def test_close_right_after_shutdown_counts_the_fin_once(needs_bcc, probes):
    # close() in FIN_WAIT1 passes FIN_WAIT1 again, with write_seq already past the FIN: the
    # FIN's number must be the one taken at shutdown(), or the FIN counts as a byte sent.
    server_ip, client_ip, size = "127.77.12.1", "127.77.12.2", 4_321
    with listener(server_ip) as server:
        conn = Connection(server, client_ip)
        conn.client.sendall(b"s" * size)
        conn.client.shutdown(socket.SHUT_WR)
        conn.client.close()  # before the peer acknowledged the FIN (it delays that ACK)
        assert len(conn.server.recv(size, socket.MSG_WAITALL)) == size
        assert conn.server.recv(1) == b""
        conn.server.close()
    want = {"client": (size, 0), "server": (0, size)}
    assert closed_pair_counts(probes, server_ip, client_ip, want) == want


@pytest.mark.bpf
def test_an_aborted_connection_counts_what_was_acknowledged(needs_bcc, probes):
    # close() with SO_LINGER 0 sends a RST, no FIN: nothing to take out on either side.
    server_ip, client_ip, size = "127.77.13.1", "127.77.13.2", 3_210
    with listener(server_ip) as server:
        conn = Connection(server, client_ip)
        conn.client.sendall(b"a" * size)
        assert len(conn.server.recv(size, socket.MSG_WAITALL)) == size
        conn.server.sendall(b"k")  # carries the ACK of every byte sent
        assert conn.client.recv(1) == b"k"
        conn.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.client.close()
        with pytest.raises(ConnectionResetError):
            while conn.server.recv(10):
                pass
        conn.server.close()
    want = {"client": (size, 1), "server": (1, size)}
    assert closed_pair_counts(probes, server_ip, client_ip, want) == want


@pytest.mark.bpf
def test_an_entry_whose_close_was_missed_is_removed_after_two_reads(needs_bcc):
    # A CLOSE the state hook did not see (its run skipped) leaves an entry no hook removes:
    # made here by hand, for a "socket" whose memory cannot be read.
    with AgentProbes(max_flows=16, max_sockets=16) as small:
        table = small.program["sockets"]
        nowhere = 0x10  # the zero page: never a socket
        table[table.Key(nowhere)] = table.Leaf()
        first = small.snapshot()
        assert nowhere in small.sockets() and small.stale_removed == 0  # one read is not enough
        second = small.snapshot()
        assert nowhere not in small.sockets()
        assert small.stale_removed == 1 and second.events_lost >= first.events_lost + 1
        assert first.map_entries["sockets"] >= 1


def disconnect(sock: socket.socket) -> None:
    """connect() with AF_UNSPEC: the kernel's way to dissolve a TCP connection and keep the
    socket (tcp_disconnect); Python's connect() has no spelling for it."""
    libc = ctypes.CDLL(None, use_errno=True)
    unspec = ctypes.create_string_buffer(16)  # sa_family 0 = AF_UNSPEC
    if libc.connect(sock.fileno(), unspec, ctypes.sizeof(unspec)) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


@pytest.mark.bpf
def test_bytes_survive_a_socket_that_connects_again(needs_bcc, probes):
    # tcp_disconnect() zeroes the socket's byte counters after it passes CLOSE: the first
    # connection's bytes must reach the flow at CLOSE, before the second connect().
    server_ip, client_ip, first, second = "127.77.7.1", "127.77.7.2", 3_333, 4_444
    key = FlowKey(own_cgroup_id(), client_ip, server_ip)
    with listener(server_ip) as server, socket.socket() as client:
        client.bind((client_ip, 0))
        for size in (first, second):
            client.connect(server.getsockname())
            accepted, _ = server.accept()
            with accepted:
                client.sendall(b"r" * size)
                assert len(accepted.recv(size, socket.MSG_WAITALL)) == size
                accepted.sendall(b"k")  # carries the ACK of every byte: acknowledged is sent
                assert client.recv(1) == b"k"
                disconnect(client)
    snap = wait_for(probes, lambda s: counters(s, key).sent_bytes >= first + second)
    assert counters(snap, key).sent_bytes == first + second
    assert counters(snap, key).received_bytes == 2
    assert counters(snap, key).opened_outbound == 2


@pytest.mark.bpf
def test_a_refused_connect_is_one_failure(needs_bcc, probes):
    server_ip, client_ip = "127.77.2.1", "127.77.2.2"
    with listener(server_ip) as closed_port:
        address = closed_port.getsockname()
    with socket.socket() as client:
        client.bind((client_ip, 0))
        with pytest.raises(ConnectionRefusedError):
            client.connect(address)
    key = FlowKey(own_cgroup_id(), client_ip, server_ip)
    snap = wait_for(probes, lambda s: counters(s, key).connect_failures >= 1)
    assert counters(snap, key) == FlowCounters(connect_failures=1)
    assert key not in snap.connect_duration


@pytest.mark.bpf
def test_srtt_is_microseconds_like_tcp_info(needs_bcc, probes):
    # tcp_probe's srtt is tp->srtt_us >> 3, and so is TCP_INFO's tcpi_rtt (both in us): the
    # histogram's mean must be near the RTTs the socket itself reports. Reported as us << 3
    # it would be 8x off; as ms, it would be 0 (no samples).
    server_ip, client_ip = "127.77.3.1", "127.77.3.2"
    with listener(server_ip) as server:
        conn = Connection(server, client_ip)
        rtts = []
        for _ in range(50):
            conn.send_and_read(100)
            conn.server.sendall(b"s")
            conn.client.recv(1)
            rtts.append(tcp_info_rtt_us(conn.client))
        key = FlowKey(own_cgroup_id(), client_ip, server_ip)
        snap = wait_for(probes, lambda s: key in s.srtt and s.srtt[key].count >= 50)
        conn.close()
    hist = snap.srtt[key]
    most_common_slot = max(range(HISTOGRAM_SLOTS), key=lambda slot: hist.slots[slot])
    typical = sorted(rtts)[len(rtts) // 2]
    # us << 3 would put the peak 3 slots higher; ms would give no samples at all
    assert abs(most_common_slot - slot_of(typical)) <= 1, (hist.slots, rtts)
    used = {slot for slot, count in enumerate(hist.slots) if count}
    assert used <= set(range(slot_of(min(rtts)) - 2, slot_of(max(rtts)) + 3)), (used, rtts)


@pytest.mark.bpf
def test_bytes_of_a_process_in_a_new_cgroup_carry_its_cgroup_id(needs_bcc, probes):
    server_ip, client_ip, size = "127.77.4.1", "127.77.4.2", 54_321
    with listener(server_ip) as server, new_cgroup("netsprint-agent") as cgroup:
        host, port = server.getsockname()
        code = ("import socket\n"
                f"s = socket.socket(); s.bind(({client_ip!r}, 0)); s.connect(({host!r}, {port}))\n"
                f"s.sendall(b'k' * {size}); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()\n")
        child = threading.Thread(target=run_in_cgroup, args=(cgroup, code))
        child.start()
        accepted, _ = server.accept()
        got = 0
        while chunk := accepted.recv(65536):
            got += len(chunk)
        accepted.close()
        child.join(timeout=30)
        cgroup_id = cgroup.stat().st_ino
    key = FlowKey(cgroup_id, client_ip, server_ip)
    snap = wait_for(probes, lambda s: counters(s, key).closed >= 1)
    assert got == size
    assert counters(snap, key) == FlowCounters(opened_outbound=1, closed=1, sent_bytes=size)


@pytest.mark.bpf
def test_a_socket_opened_before_attach_is_adopted_at_its_next_segment(needs_bcc):
    # Established before the probes exist: no open to count, but from its next received
    # segment on, its bytes and RTTs count under its own addresses and its own cgroup (the
    # creating process's, not the one that sends on it later).
    server_ip, client_ip, size, me = "127.77.5.1", "127.77.5.2", 777, own_cgroup_id()
    with listener(server_ip) as server, new_cgroup("netsprint-agent-old") as cgroup:
        conn = Connection(server, client_ip)
        try:
            with AgentProbes() as fresh:
                fd = conn.client.fileno()  # pass_fds keeps the number in the child
                run_in_cgroup(cgroup, f"import socket\nsocket.socket(fileno={fd}).sendall(b'o' * {size})\n",
                              pass_fds=(fd,))
                assert conn.server.recv(size, socket.MSG_WAITALL) == b"o" * size
                outbound, inbound = FlowKey(me, client_ip, server_ip), FlowKey(me, server_ip, client_ip)
                snap = wait_for(fresh, lambda s: counters(s, outbound).sent_bytes >= size
                                and counters(s, inbound).received_bytes >= size)
                assert counters(snap, outbound) == FlowCounters(sent_bytes=size)
                assert counters(snap, inbound) == FlowCounters(received_bytes=size)
                assert FlowKey(cgroup.stat().st_ino, "", "") not in snap.flows
                assert snap.srtt[inbound].count > 0
        finally:
            conn.close()


@pytest.mark.bpf
def test_a_full_flow_map_counts_lost_updates(needs_bcc):
    client_ip, servers = "127.77.6.9", ["127.77.6.1", "127.77.6.2", "127.77.6.3"]
    with AgentProbes(max_flows=2, max_sockets=64) as small:
        listeners, conns = [listener(ip) for ip in servers], []
        try:
            conns = [Connection(s, client_ip) for s in listeners]
            for c in conns:
                c.send_and_read(10)
            # Live sockets whose key found no room in `flows` will lose their bytes at
            # CLOSE: a read must not show them now (a key shown once stays for good).
            live = small.snapshot()
            assert len(live.flows) <= 2, sorted(live.flows)
        finally:
            for c in conns:
                c.close()
            for s in listeners:
                s.close()
        wait_for(small, lambda s: small.lost_by_map()["flows"] > 0)
        # lost only grows (the machine's other traffic keeps hitting the full map): what
        # was lost before a snapshot is at most what the snapshot reports
        lost = small.lost_by_map()
        snap = small.snapshot()
        assert 0 < lost["flows"] <= snap.events_lost, (lost, snap.events_lost)
        assert len(snap.flows) <= 2 and snap.map_entries["flows"] <= 2


@pytest.mark.bpf
@pytest.mark.lab
def test_dropped_segments_are_retransmits_of_their_flow(needs_bcc, needs_netns, probes):
    from netsprint.lab.vethpair import VethPair

    with VethPair("ns-agent") as pair:
        a, b = pair.address("a"), pair.address("b")
        with pair.socket("b", kind=socket.SOCK_STREAM) as server:
            server.bind((b, 0))
            server.listen()
            client = pair.socket("a", kind=socket.SOCK_STREAM)
            client.connect(server.getsockname())
            accepted, _ = server.accept()
            table = "netsprint_agent_drop"
            pair.run("b", ["nft", f"add table ip {table}; add chain ip {table} in "
                                  "{ type filter hook input priority 0; }; "
                                  f"add rule ip {table} in tcp dport {server.getsockname()[1]} drop"],
                     check=True)
            client.sendall(b"r" * 1000)
            key = FlowKey(own_cgroup_id(), a, b)
            snap = wait_for(probes, lambda s: counters(s, key).retransmitted_segments > 0)
            pair.run("b", ["nft", f"delete table ip {table}"], check=True)
            assert counters(snap, key).retransmitted_segments > 0
            accepted.settimeout(WAIT_SECONDS)
            assert accepted.recv(1000, socket.MSG_WAITALL) == b"r" * 1000
            accepted.close()
            client.close()


@pytest.mark.bpf
def test_reading_ten_thousand_flows_is_exact(needs_bcc):
    # Filled from user space with different values on each CPU: the batch reader must hand
    # back every entry, each summed over the CPUs.
    entries = 10_000
    with AgentProbes(max_flows=16384, max_sockets=64) as big:
        table = big.program["flows"]
        cpus = table.total_cpu
        for i in range(entries):
            key = table.Key.from_buffer_copy(bytes(FlowKeyRecord(cgroup_id=0xFEED_0000 + i)))
            values = table.Leaf()
            for cpu in range(cpus):
                one = FlowCountersRecord(sent_bytes=i, received_bytes=cpu + 1)
                values[cpu] = table.sLeaf.from_buffer_copy(bytes(one))
            table[key] = values
        started = time.perf_counter()
        snap = big.snapshot()
        read_seconds = time.perf_counter() - started
        ours = {k: v for k, v in snap.flows.items() if k.cgroup_id >= 0xFEED_0000 and k.local == ""}
        assert len(ours) == entries
        assert all(v.sent_bytes == (k.cgroup_id - 0xFEED_0000) * cpus for k, v in ours.items())
        assert {v.received_bytes for v in ours.values()} == {cpus * (cpus + 1) // 2}
        assert snap.map_entries["flows"] >= entries
        print(f"snapshot of {snap.map_entries['flows']} flows: {read_seconds * 1000:.1f} ms")


@pytest.mark.bpf
def test_close_unloads_every_program_and_is_idempotent(needs_bcc):
    before = held_program_ids()
    probes = AgentProbes(max_flows=16, max_sockets=16)
    try:
        mine = held_program_ids() - before  # not another test run's agent
        loaded = {prog: name for prog, name in our_programs().items() if prog in mine}
        assert sorted(loaded.values()) == sorted([*TRACEPOINTS.values(), ITERATOR_PROGRAM])
        assert probes.probes_attached == len(TRACEPOINTS)
    finally:
        probes.close()
    probes.close()
    assert not still_loaded(set(loaded)), "programs still loaded after close()"


@pytest.mark.bpf
def test_without_privileges_the_error_says_what_to_do(needs_bcc):
    code = ("from netsprint.agent.probes import AgentProbes\n"
            "from netsprint.ebpf.loader import BpfLoadError\n"
            "try:\n    AgentProbes()\nexcept BpfLoadError as e:\n    print('refused:', e)\n")
    proc = run_unprivileged(code)
    assert "refused:" in proc.stdout and "sudo" in proc.stdout, proc.stdout + proc.stderr
