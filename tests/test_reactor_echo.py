"""The echo server as the learner runs it: `python -m netsprint echo-server`, signals,
backends, sub-reactors, and the memory of 10,000 idle connections."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys

import pytest
from netutil import echo, echo_server

pytestmark = pytest.mark.net

HOST = "127.0.0.1"


@pytest.mark.parametrize("args", [(), ("--backend", "poll"), ("--backend", "select"),
                                  ("--sub-reactors", "2"), ("--edge",),
                                  ("--sub-reactors", "2", "--edge")])
def test_cli_echo_server_echoes_and_stops_on_sigint(args):
    with echo_server(*args) as (proc, port):
        clients = [socket.create_connection((HOST, port), timeout=5) for _ in range(4)]
        try:
            for i, sock in enumerate(clients):
                message = b"%d " % i * 1000
                assert echo(sock, message) == message
        finally:
            for sock in clients:
                sock.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "stopped: accepted=4 shed=0" in proc.stdout.read()
        assert "Traceback" not in proc.stderr.read()


def test_edge_reaches_the_server_which_refuses_it_without_epoll():
    result = subprocess.run([sys.executable, "-m", "netsprint", "echo-server", "--port", "0",
                             "--backend", "poll", "--edge"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "need the epoll backend" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_stops_with_open_connections():
    with echo_server() as (proc, port):
        with socket.create_connection((HOST, port), timeout=5) as sock:
            assert echo(sock, b"ping") == b"ping"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert sock.recv(10) == b""  # the server closed our connection on the way out


IDLE_CONNECTIONS = 10_000
BYTES_PER_CONNECTION_MAX = 1024

RAISE_LIMIT_AND_SERVE = f"""
import resource
from netsprint.reactor.echo import run_server
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, ({IDLE_CONNECTIONS + 200}, hard))
run_server("127.0.0.1", 0)
"""


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_ten_thousand_idle_connections_cost_under_1kb_each(fd_limit):
    fd_limit(IDLE_CONNECTIONS + 200)  # this side's sockets; the server raises its own
    socks: list[socket.socket] = []
    try:
        with echo_server(python_code=RAISE_LIMIT_AND_SERVE) as (proc, port):
            with socket.create_connection((HOST, port), timeout=5) as warm:
                assert echo(warm, b"warm up") == b"warm up"
            before = rss_bytes(proc.pid)
            for i in range(IDLE_CONNECTIONS):
                socks.append(socket.create_connection((HOST, port), timeout=5))
                if i % 256 == 255 or i == IDLE_CONNECTIONS - 1:
                    # The accept queue is FIFO: an echo on the newest connection proves
                    # every earlier one has been accepted and set up.
                    assert echo(socks[-1], b"?") == b"?"
            per_connection = (rss_bytes(proc.pid) - before) / IDLE_CONNECTIONS
            assert per_connection <= BYTES_PER_CONNECTION_MAX, \
                f"{per_connection:.0f} bytes of RSS per idle connection"
    finally:
        for sock in socks:
            # RST instead of FIN: no TIME_WAIT left behind for 10,000 ports.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


def test_a_busy_port_is_a_one_line_error():
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "netsprint", "echo-server",
                                 "--port", str(port)], capture_output=True, text=True,
                                timeout=30)
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1" in result.stderr and "in use" in result.stderr
    assert "Traceback" not in result.stderr
