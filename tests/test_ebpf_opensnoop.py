"""opensnoop: every openat(2) through a ring buffer, and read(2) bytes per process.

Ground truth comes from the test itself: it opens files it created (and a missing one, and a
file as a directory), so it knows each name, flags value, returned fd and errno; and a forked
child reads a file of known size and nothing else, so its byte count is exact. Events are
filtered by this process's pid or the child's: other programs run on the machine too.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
from bpfutil import assert_mirror_matches, assert_refuses_short, fill, our_programs

from netsprint.ebpf.opensnoop.loader import (
    EVENT_SIZE,
    HEADER,
    OpenEvent,
    OpenEventDecodeError,
    OpenEventStruct,
    OpenSnoop,
    build_cflags,
    decode,
    describe_flags,
    for_pid,
)

OUR_FUNCTIONS = ("ns_open_enter", "ns_open_exit", "ns_read_exit")
PAGE_BYTES = 4096
RINGBUF_HEADER_BYTES = 8  # BPF_RINGBUF_HDR_SZ: each record is header + data rounded up to 8


def pack(**fields) -> bytes:
    return bytes(fill(OpenEventStruct, **fields))


# --- pure: layout, decode, flags -------------------------------------------------------------

@pytest.mark.unit
def test_ctypes_mirror_matches_the_c_struct():
    assert_mirror_matches(OpenEventStruct, HEADER, "struct open_event")


@pytest.mark.unit
def test_decode_reads_every_field():
    raw = pack(ts_ns=2_500_000_000, pid=4321, tid=4322, uid=1000, flags=os.O_WRONLY | os.O_CREAT,
               ret=7, comm=b"cat\0junk", filename=b"/etc/hostname\0stale bytes")
    assert decode(raw) == OpenEvent(timestamp=2.5, pid=4321, tid=4322, uid=1000, comm="cat",
                                    flags=os.O_WRONLY | os.O_CREAT, ret=7, filename="/etc/hostname")
    event = decode(raw)
    assert (event.ok, event.fd, event.errno, event.errno_name) == (True, 7, 0, "")


@pytest.mark.unit
def test_decode_names_the_errno_of_a_failed_open():
    event = decode(pack(ret=-2, filename=b"/missing"))
    assert (event.ok, event.fd, event.errno, event.errno_name) == (False, None, 2, "ENOENT")
    assert decode(pack(ret=-13)).errno_name == "EACCES"


@pytest.mark.unit
def test_decode_keeps_undecodable_filename_bytes():
    name = b"/tmp/caf\xe9"  # latin-1, not UTF-8: os.fsdecode keeps it as a surrogate
    event = decode(pack(filename=name))
    assert os.fsencode(event.filename) == name


@pytest.mark.unit
def test_a_full_length_filename_without_nul_is_kept_whole():
    name = b"/" + b"a" * (256 - 1)
    assert decode(pack(filename=name)).filename == name.decode()


@pytest.mark.unit
def test_decode_refuses_a_short_record_with_its_length():
    assert_refuses_short(decode, EVENT_SIZE, OpenEventDecodeError)


@pytest.mark.unit
@pytest.mark.parametrize(("flags", "text"), [
    (os.O_RDONLY, "O_RDONLY"),
    (os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"),
    (os.O_RDWR | os.O_TMPFILE, "O_RDWR|O_TMPFILE"),          # not O_DIRECTORY|0x400000
    (os.O_RDONLY | os.O_SYNC, "O_RDONLY|O_SYNC"),            # not O_DSYNC|0x100000
    (os.O_RDONLY | 0x40000000, "O_RDONLY|0x40000000"),       # unknown bits shown, not lost
])
def test_describe_flags(flags, text):
    assert describe_flags(flags) == text


@pytest.mark.unit
def test_ring_size_must_be_a_power_of_two_pages():
    assert build_cflags(None, 8) == ["-DNETSPRINT_RINGBUF_PAGES=8"]
    assert build_cflags(42, 1) == ["-DNETSPRINT_RINGBUF_PAGES=1", "-DNETSPRINT_TGID=42"]
    with pytest.raises(ValueError):
        build_cflags(None, 3)


# --- the loaded program ------------------------------------------------------------------------

def leftover_functions() -> list[str]:
    return [name for name in our_programs().values() if name.startswith(OUR_FUNCTIONS)]


@pytest.fixture(scope="module")
def snoop():
    """One unfiltered tracer for the module (a compile costs ~1 s)."""
    from conftest import have_bcc, is_root

    if not is_root() or not have_bcc():
        pytest.skip("needs root and bcc (run `sudo make test`; provision installs python3-bpfcc)")
    tracer = OpenSnoop()
    try:
        yield tracer
    finally:
        tracer.close()
    assert not leftover_functions(), "opensnoop programs still loaded after close()"


def own_opens(events: list[OpenEvent], names: set[str]) -> list[OpenEvent]:
    return [e for e in for_pid(events, os.getpid()) if e.filename in names]


def try_open(path: str, flags: int) -> int:
    """The fd, or -errno: what the kernel returns from openat."""
    try:
        return os.open(path, flags)
    except OSError as exc:
        return -exc.errno


@pytest.mark.bpf
def test_opens_of_this_process_match_what_it_did(snoop, tmp_path):
    existing, created = tmp_path / "existing.txt", tmp_path / "created.txt"
    existing.write_bytes(b"hello\n")
    plan = [  # (path, flags) ; os.open adds O_CLOEXEC (PEP 446: fds are non-inheritable)
        (str(existing), os.O_RDONLY),
        (str(existing), os.O_WRONLY | os.O_APPEND),
        (str(created), os.O_RDWR | os.O_CREAT | os.O_EXCL),
        (str(tmp_path / "missing.txt"), os.O_RDONLY),                 # ENOENT
        (str(existing), os.O_RDONLY | os.O_DIRECTORY),                # ENOTDIR
    ]
    snoop.drain()  # forget earlier activity
    results = [try_open(path, flags) for path, flags in plan]
    for fd in results:
        if fd >= 0:
            os.close(fd)
    events = own_opens(snoop.drain(), {path for path, _ in plan})

    expected = [(path, flags | os.O_CLOEXEC, ret) for (path, flags), ret in zip(plan, results)]
    assert [(e.filename, e.flags, e.ret) for e in events] == expected
    assert [e.errno_name for e in events] == ["", "", "", "ENOENT", "ENOTDIR"]
    comm = open("/proc/self/comm").read().strip()
    for event in events:
        assert (event.pid, event.tid, event.uid, event.comm) == \
            (os.getpid(), threading.get_native_id(), os.getuid(), comm)


@pytest.mark.bpf
def test_an_open_in_another_thread_carries_that_threads_id(snoop, tmp_path):
    target = tmp_path / "from-thread.txt"
    target.write_bytes(b"x")
    seen: dict[str, int] = {}

    def opener():
        seen["tid"] = threading.get_native_id()
        os.close(os.open(target, os.O_RDONLY))

    snoop.drain()
    worker = threading.Thread(target=opener)
    worker.start()
    worker.join(timeout=10)
    events = own_opens(snoop.drain(), {str(target)})
    assert len(events) == 1, events
    assert events[0].tid == seen["tid"] != os.getpid()  # thread id differs from the process id


@pytest.mark.bpf
def test_timestamps_are_on_the_monotonic_clock(snoop, tmp_path):
    target = tmp_path / "clock.txt"
    target.write_bytes(b"x")
    snoop.drain()
    start = time.monotonic()
    os.close(os.open(target, os.O_RDONLY))
    end = time.monotonic()
    [event] = own_opens(snoop.drain(), {str(target)})
    assert start <= event.timestamp <= end


def fork_reader(path: str, chunk_bytes: int) -> int:
    """A child that, between fork and _exit, only opens `path` and read()s it to the end: its
    read(2) calls return exactly the file's size (the last read returns 0). A child made by
    exec would also read its ELF libraries (ld.so) and, for Python, its .pyc files."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            fd = os.open(path, os.O_RDONLY)
            while os.read(fd, chunk_bytes):
                pass
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return pid


@pytest.mark.bpf
def test_read_bytes_of_a_child_are_exact(snoop, tmp_path):
    data = tmp_path / "data.bin"
    size = 100_003  # not a multiple of the chunk: the last read is short
    data.write_bytes(os.urandom(size))
    snoop.clear_read_bytes()  # pids recycle (pid_max may be 32768): start from nothing
    child = fork_reader(str(data), 4096)
    assert snoop.read_bytes().get(child) == size
    opens = for_pid(snoop.drain(), child)
    assert [(e.filename, e.ok) for e in opens] == [(str(data), True)]


@pytest.mark.bpf
def test_read_bytes_of_head_include_at_least_its_payload(snoop, tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(50_000))
    wanted = 30_000
    snoop.clear_read_bytes()
    child = subprocess.Popen(["head", "-c", str(wanted), str(data)], stdout=subprocess.DEVNULL)
    assert child.wait(timeout=10) == 0
    # head's reads of the file stop once it has `wanted` bytes, but before main() the dynamic
    # loader read()s each shared library's ELF header and setlocale() reads locale.alias:
    # at least, not exactly (the forked child above is the exact case).
    assert snoop.read_bytes().get(child.pid, 0) >= wanted


@pytest.mark.bpf
def test_pid_filter_and_lost_events_when_the_ring_is_full(needs_bcc, tmp_path):
    target = tmp_path / "flood.txt"
    target.write_bytes(b"x")
    opens = 200
    record_bytes = -(-(EVENT_SIZE + RINGBUF_HEADER_BYTES) // 8) * 8
    capacity = PAGE_BYTES // record_bytes  # one page holds this many records, then reserve fails
    with OpenSnoop(pid=os.getpid(), ring_pages=1) as tracer:
        # The filter is compiled in: a child's open and reads make no record at all.
        child = fork_reader(str(target), 4096)
        assert for_pid(tracer.drain(), child) == []
        assert child not in tracer.read_bytes()
        assert tracer.lost_events == 0

        for _ in range(opens):  # nobody polls meanwhile: the ring fills
            os.close(os.open(target, os.O_RDONLY))
        received = tracer.drain()
        ours = [e for e in received if e.filename == str(target)]
        assert len(received) == capacity, (len(received), capacity)
        assert len(ours) + tracer.lost_events == opens
        assert tracer.lost_events == opens - capacity


@pytest.mark.bpf
def test_collect_returns_what_arrives_during_the_window(snoop, tmp_path):
    target = tmp_path / "later.txt"
    target.write_bytes(b"x")
    snoop.drain()
    opener = threading.Timer(0.05, lambda: os.close(os.open(target, os.O_RDONLY)))
    opener.start()
    try:
        events = own_opens(snoop.collect(0.5), {str(target)})
    finally:
        opener.join(timeout=10)
    assert [e.ok for e in events] == [True]
