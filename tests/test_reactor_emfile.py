"""Out of fds (EMFILE): the echo server sheds new connections, keeps serving old ones, and
does not spin. The server runs in a child process with a low RLIMIT_NOFILE."""

from __future__ import annotations

import os
import re
import signal
import socket
import textwrap
import time

import pytest
from netutil import echo, echo_server

pytestmark = pytest.mark.net

HOST = "127.0.0.1"
FD_LIMIT = 48

CHILD = textwrap.dedent(f"""
    import logging, resource, sys
    from netsprint.reactor.echo import run_server  # import everything before the limit
    import traceback, linecache  # used when logging; must not need fds later
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, hard))
    run_server("127.0.0.1", 0)
""")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def echo_ok(sock: socket.socket, message: bytes) -> bool:
    """True if the server echoed `message`; False if it closed or reset the connection."""
    try:
        return echo(sock, message) == message
    except (ConnectionResetError, BrokenPipeError):
        return False


def was_shed(sock: socket.socket) -> bool:
    """A shed connection is accepted and closed at once: recv sees EOF or a reset."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def low_fd_server():
    """The echo server in a child whose RLIMIT_NOFILE is FD_LIMIT; (process, port)."""
    with echo_server(python_code=CHILD) as server:
        yield server


def test_out_of_fds_sheds_new_clients_serves_old_ones_and_does_not_spin(low_fd_server):
    proc, port = low_fd_server
    clients: list[socket.socket] = []
    try:
        # Fill the server's fd table: connect until a connection is shed.
        for i in range(FD_LIMIT + 10):
            sock = socket.create_connection((HOST, port), timeout=2)
            clients.append(sock)
            if not echo_ok(sock, b"hello %d" % i):
                break
        else:
            pytest.fail(f"no connection was shed with RLIMIT_NOFILE={FD_LIMIT}")
        clients.pop().close()  # the shed one
        served = clients
        assert len(served) > 10

        # A burst of extra clients at once: every one must be shed, none left queued.
        burst = [socket.create_connection((HOST, port), timeout=2) for _ in range(30)]
        try:
            assert all(was_shed(extra) for extra in burst), "queued, not shed"
        finally:
            for extra in burst:
                extra.close()
        flooded = len(burst)

        # Then keep new clients coming for about a second while old clients keep talking,
        # and watch the server's CPU time. A loop that spins on a listening socket that
        # stays readable burns ~1 CPU second per second; shedding costs a few syscalls.
        cpu_before = cpu_seconds(proc.pid)
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            with socket.create_connection((HOST, port), timeout=2) as extra:
                assert was_shed(extra), "a connection over the fd limit was not shed"
            flooded += 1
            assert echo_ok(served[flooded % len(served)], b"still there %d" % flooded)
            time.sleep(0.005)  # pacing, so the CPU measured is the loop's, not the flood's
        elapsed = time.monotonic() - started
        cpu_used = cpu_seconds(proc.pid) - cpu_before
        assert cpu_used < 0.5 * elapsed, f"server used {cpu_used:.2f} s CPU in {elapsed:.2f} s"
        assert all(echo_ok(c, b"after the flood") for c in served)

        # Once fds free up, new clients are served again.
        for sock in served[:5]:
            sock.close()
        del served[:5]
        deadline = time.monotonic() + 5
        while True:
            with socket.create_connection((HOST, port), timeout=2) as fresh:
                if echo_ok(fresh, b"welcome back"):
                    break
            assert time.monotonic() < deadline, "the server never accepted again"
    finally:
        for sock in clients:
            sock.close()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=5)
    stats = re.search(r"accepted=(\d+) shed=(\d+)", out)
    assert stats, out + err
    assert int(stats.group(2)) >= flooded + 1
    assert err.count("out of file descriptors") >= 1
    assert "Traceback" not in err
