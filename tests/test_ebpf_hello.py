"""The week-8 hello world: `struct exec_event` and its ctypes mirror, `decode`, and the loaded
program reporting execs this test makes itself (known pid, known path, known uid and comm)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from bpfutil import assert_mirror_matches, assert_refuses_short, fill
from netsprint.ebpf.hello import loader
from netsprint.ebpf.hello.loader import ExecEventDecodeError, ExecEventStruct, decode
from netsprint.ebpf.records import ring_pages_cflag

WAIT = 5.0  # seconds to wait for one event; the ring buffer delivers in milliseconds


def _record(**fields) -> bytes:
    return bytes(fill(ExecEventStruct, **fields))


# --- unit ---------------------------------------------------------------------------------

@pytest.mark.unit
def test_ctypes_mirror_matches_the_c_header():
    assert_mirror_matches(ExecEventStruct, loader.HEADER, "struct exec_event")


@pytest.mark.unit
def test_decode_a_record():
    raw = _record(ts_ns=2_500_000_000, pid=4242, tid=4243, uid=1000, filename_len=10,
                  comm=b"bash", filename=b"/bin/true")
    event = decode(raw)
    assert (event.pid, event.tid, event.uid, event.comm, event.filename) == (4242, 4243, 1000, "bash", "/bin/true")
    assert event.timestamp == 2.5 and event.filename_ok
    assert decode(raw + b"ring-buffer padding") == event  # records may arrive rounded up


@pytest.mark.unit
def test_decode_unreadable_filename_and_odd_bytes():
    unreadable = decode(_record(pid=1, filename_len=-14))  # -EFAULT
    assert unreadable.filename == "" and not unreadable.filename_ok
    odd = decode(_record(pid=1, filename_len=5, comm=b"a" * 16, filename=b"/x\xff\0junk"))
    assert odd.comm == "a" * 16  # a full 16-byte comm has no NUL: still decoded
    assert os.fsencode(odd.filename) == b"/x\xff"  # undecodable bytes survive the round trip


@pytest.mark.unit
def test_decode_rejects_a_short_record():
    assert_refuses_short(decode, loader.EVENT_SIZE, ExecEventDecodeError)


@pytest.mark.unit
def test_ring_pages_must_be_a_power_of_two():
    assert ring_pages_cflag(16) == "-DNETSPRINT_RINGBUF_PAGES=16"
    for bad in (0, 3, 48):
        with pytest.raises(ValueError, match="power of two"):
            ring_pages_cflag(bad)


# --- loaded ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tracer():
    from conftest import have_bcc, is_root

    if not is_root() or not have_bcc():
        pytest.skip("needs root and bcc (run `sudo make test`)")
    with loader.HelloTracer() as hello:
        yield hello


def _wait_for(tracer, pid: int, seen: list) -> list:
    """Poll until an event of `pid` arrives or WAIT seconds pass; every event goes to `seen`."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        seen += tracer.poll(0.1)
        mine = [e for e in seen if e.pid == pid]
        if mine:
            return mine
    return []


@pytest.fixture
def hello(needs_bcc, tracer):
    tracer.pid = None
    tracer.poll(0)  # drop what earlier tests left in the ring
    yield tracer
    tracer.pid = None


@pytest.mark.bpf
def test_exec_of_bin_true_is_reported_with_its_pid(hello):
    marker = f"netsprint-hello-{os.getpid()}"
    child = subprocess.Popen(["/bin/true", marker])
    child.wait(timeout=WAIT)
    seen: list = []
    mine = _wait_for(hello, child.pid, seen)
    assert mine, f"no exec event for pid {child.pid} among {len(seen)} events"
    (event,) = mine
    assert event.filename == "/bin/true" and event.filename_ok
    assert event.uid == os.getuid() and event.tid == child.pid
    # the event comes at syscall entry, before the exec: the child still has our name
    assert event.comm == Path("/proc/self/comm").read_text().strip()
    assert hello.lost_events == 0


@pytest.mark.bpf
def test_pid_filter_reports_only_that_process(hello):
    """A shell waits on stdin, the filter is set to its pid, then it execs /bin/true; another
    /bin/true started by the test meanwhile is not reported."""
    shell = subprocess.Popen(["/bin/sh", "-c", "read line; exec /bin/true"], stdin=subprocess.PIPE)
    try:
        hello.pid = shell.pid
        assert hello.pid == shell.pid
        hello.poll(0)  # drop the shell's own exec (made before the filter, already in the ring)
        other = subprocess.Popen(["/bin/true"])
        other.wait(timeout=WAIT)
        shell.communicate(b"go\n", timeout=WAIT)
        seen: list = []
        mine = _wait_for(hello, shell.pid, seen)
        seen += hello.poll(0.2)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
    assert [e.filename for e in mine] == ["/bin/true"]
    assert {e.pid for e in seen} == {shell.pid}, "the filter let other processes through"
    assert other.pid not in {e.pid for e in seen}
