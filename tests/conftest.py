"""Test tiers and the REQUIRE_ALL rule.

Tiers are pytest markers (see pyproject.toml). A test that cannot run here skips with the
reason; with NETSPRINT_REQUIRE_ALL=1 (set by .ci/run) every skip becomes a failure, so a
missing install step cannot hide behind a skip.
"""

from __future__ import annotations

import importlib
import os
import resource
import shutil
import socket
import subprocess

import pytest

from netsprint.reactor.pollcost import raise_fd_limit

REQUIRE_ALL = os.environ.get("NETSPRINT_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"NETSPRINT_REQUIRE_ALL=1 turns this skip into a failure: {reason}"


def is_root() -> bool:
    return os.geteuid() == 0


def have_bcc() -> bool:
    try:
        importlib.import_module("bcc")
    except ImportError:
        return False
    return True


def have_netns() -> bool:
    if not is_root() or shutil.which("ip") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0


@pytest.fixture
def pair():
    """A connected, non-blocking socket pair, closed after the test."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def fd_limit():
    """`fd_limit(n)` raises this process's soft RLIMIT_NOFILE to n for one test. Only a
    hard limit below n skips: many machines start with a soft limit of 1024, which any
    process may raise itself."""
    original = resource.getrlimit(resource.RLIMIT_NOFILE)

    def at_least(wanted: int) -> None:
        got = raise_fd_limit(wanted)
        if got < wanted:
            pytest.skip(f"needs {wanted} open files; the hard RLIMIT_NOFILE allows {got}")

    try:
        yield at_least
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, original)


@pytest.fixture
def needs_root():
    if not is_root():
        pytest.skip("needs root (run `sudo make test`)")


@pytest.fixture
def needs_bcc(needs_root):
    if not have_bcc():
        pytest.skip("bcc is not importable: run `make test` (scripts/provision.sh installs python3-bpfcc)")


@pytest.fixture
def needs_netns(needs_root):
    if not have_netns():
        pytest.skip("network namespaces unavailable: install iproute2 and run as root")


def needs_tool(name: str, package: str):
    """Skip (or, under REQUIRE_ALL, fail) when an external program is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` not found: scripts/provision.sh installs Debian's `{package}`")
    return path


def _bpf_program_fds(pid: int | str = "self") -> set[int]:
    """The open file descriptors of process `pid` that hold a BPF program."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf-prog":
                found.add(int(fd))
        except OSError:  # closed meanwhile (e.g. the fd listdir itself used)
            continue
    return found


@pytest.fixture(autouse=True)
def no_bpf_program_left_open(request):
    """After every bpf or workbook test, this process holds no BPF program it did not hold
    before: whatever a test loads, it closes (even when it fails)."""
    if not (request.node.get_closest_marker("bpf") or request.node.get_closest_marker("workbook")):
        yield
        return
    before = _bpf_program_fds()
    yield
    left = _bpf_program_fds() - before
    assert not left, f"BPF programs still open after the test (fds {sorted(left)})"


# Set in the environment of every process this test run starts (see the session fixture).
_RUN_TAG = "NETSPRINT_TEST_RUN"


def _program_holders() -> dict[int, set[int]]:
    """BPF program id -> pids holding an fd to it, from /proc/*/fdinfo (`prog_id:`): this
    machine's bpftool is built without its pid iterator, so `prog show` names no owner."""
    holders: dict[int, set[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in _bpf_program_fds(pid):
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    prog_id = next(line.split()[1] for line in info if line.startswith("prog_id:"))
                holders.setdefault(int(prog_id), set()).add(int(pid))
        except (OSError, StopIteration):  # the process or the fd went away while we looked
            continue
    return holders


def _of_this_run(pid: int) -> bool:
    """`pid` is this pytest process or a descendant of it, or carries this run's tag in its
    environment (an orphan a test left behind is a child of init now, but keeps the tag)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            if f"{_RUN_TAG}={os.getpid()}".encode() in environ.read().split(b"\0"):
                return True
        while pid > 1 and pid != os.getpid():
            with open(f"/proc/{pid}/stat", "rb") as stat:  # ppid is the 2nd field after "(comm)"
                pid = int(stat.read().rsplit(b")", 1)[1].split()[1])
    except OSError:  # it exited meanwhile: then it holds nothing any more
        return False
    return pid == os.getpid()


@pytest.fixture(scope="session", autouse=True)
def no_bpf_program_left_in_the_kernel():
    """At the end of the run, bpftool shows no program of ours (named ns_*) that appeared
    during this run and is still loaded: also none a notebook kernel or a CLI child left
    attached. A program only other processes hold (a concurrent test run, a `netsprint
    grade` elsewhere) is theirs; one nobody holds (pinned, or attached to a device) counts."""
    if not is_root() or shutil.which("bpftool") is None:
        yield
        return
    from bpfutil import our_programs, still_loaded

    os.environ[_RUN_TAG] = str(os.getpid())  # children inherit it, so orphans stay ours
    before = our_programs()
    yield
    os.environ.pop(_RUN_TAG, None)
    appeared = {prog: name for prog, name in our_programs().items() if prog not in before}
    holders = _program_holders()
    ours = {prog for prog in appeared
            if not holders.get(prog) or any(_of_this_run(pid) for pid in holders[prog])}
    still = still_loaded(ours)  # the kernel frees a closed program a moment later
    left = {prog: name for prog, name in appeared.items() if prog in still}
    assert not left, f"BPF programs of this run left in the kernel after the test run: {left}"
