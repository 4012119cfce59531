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


def _bpf_program_fds() -> set[int]:
    """This process's open file descriptors that hold a BPF program."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-prog":
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


@pytest.fixture(scope="session", autouse=True)
def no_bpf_program_left_in_the_kernel():
    """At the end of the run, bpftool shows no program of ours (named ns_*) that was not
    there at the start: also none a notebook kernel or a CLI child left attached."""
    if not is_root() or shutil.which("bpftool") is None:
        yield
        return
    from bpfutil import our_programs

    before = our_programs()
    yield
    left = {pid: name for pid, name in our_programs().items() if pid not in before}
    assert not left, f"BPF programs of ours left in the kernel after the test run: {left}"
