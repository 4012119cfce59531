"""`netsprint trace tcp`: its filters and output lines (pure), the clear error without BPF
privileges, and the real command in a subprocess while this test makes known connections."""

from __future__ import annotations

import ipaddress
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netsprint import cli
from netsprint.ebpf import loader as bpf_loader
from netsprint.ebpf.tcplife.command import COLUMNS, format_event, matches
from netsprint.ebpf.tcplife.loader import EventKind, TcpEvent

NETSPRINT = Path(sys.executable).with_name("netsprint")
READY_TIMEOUT = 30.0  # seconds for the subprocess to compile and attach


def event(kind=EventKind.CONNECT, *, pid=100, sport=40000, dport=443, family=socket.AF_INET,
          saddr="127.0.0.1", daddr="127.0.0.1", owner_known=True, latency=0.00125, lifetime=None):
    return TcpEvent(kind=kind, timestamp=1000.5, pid=pid, comm="curl", family=family,
                    saddr=ipaddress.ip_address(saddr), sport=sport, daddr=ipaddress.ip_address(daddr),
                    dport=dport, latency=latency, lifetime=lifetime, active=True,
                    owner_known=owner_known, oldstate="SYN_SENT", sock_id=1)


@pytest.mark.unit
def test_filters():
    e = event(pid=7, sport=1111, dport=2222)
    assert matches(e) and matches(e, pid=7) and matches(e, port=1111) and matches(e, port=2222)
    assert not matches(e, pid=8) and not matches(e, port=3333) and not matches(e, pid=7, port=3333)


@pytest.mark.unit
def test_lines_are_aligned_under_the_header():
    lines = [format_event(event(), 0.0),
             format_event(event(EventKind.ACCEPT, owner_known=False, family=socket.AF_INET6,
                                saddr="::1", daddr="::1"), 0.0),
             format_event(event(EventKind.CLOSE, latency=None, lifetime=2.5), 0.0)]
    starts = [COLUMNS.index(name) for name in ("KIND", "COMM")]
    for line in lines:
        assert [line[s - 1] for s in starts] == [" ", " "], f"columns shifted:\n{COLUMNS}\n{line}"
    assert "1.250 ms" in lines[0] and "127.0.0.1:40000 -> 127.0.0.1:443" in lines[0]
    assert " - [softirq]" in lines[1] and "[::1]:40000 -> [::1]:443" in lines[1], \
        "ACCEPT runs in softirq: no owner pid is claimed"
    assert "lived 2.500 s" in lines[2]


@pytest.mark.unit
def test_the_time_of_day_carries_the_milliseconds_into_the_seconds():
    # monotonic 1000.5 + offset 0.6 = wall ...1.1: the line must read :01.100, not :01.500
    offset = 86400 * 20000 + 0.6  # a wall clock whole seconds plus 0.6 ahead of monotonic
    line = format_event(event(), offset)
    wall = 1000.5 + offset
    assert line.startswith(time.strftime("%H:%M:%S", time.localtime(wall)) + ".100"), line


@pytest.mark.unit
def test_json_object_round_trips():
    data = json.loads(json.dumps(event(family=socket.AF_INET6, saddr="::1", daddr="2001:db8::5").as_dict()))
    assert data["kind"] == "CONNECT" and data["family"] == "ipv6" and data["daddr"] == "2001:db8::5"
    assert data["latency"] == 0.00125 and data["lifetime"] is None


@pytest.mark.unit
def test_parser_takes_the_filters():
    args = cli.build_parser().parse_args(["trace", "tcp", "--json", "--duration", "3", "--pid", "5",
                                          "--port", "80", "--kprobes"])
    assert (args.json, args.duration, args.pid, args.port, args.kprobes) == (True, 3.0, 5, 80, True)


@pytest.mark.unit
def test_without_privileges_says_to_use_sudo(monkeypatch, capsys):
    monkeypatch.setattr(bpf_loader, "has_bpf_privileges", lambda net_admin=False: False)
    assert cli.main(["trace", "tcp", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "netsprint trace" in err and ("sudo .venv/bin/netsprint trace tcp" in err or "bcc" in err), err


# --- the real command -----------------------------------------------------------------------------

def start_tracer(*extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([str(NETSPRINT), "trace", "tcp", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT
        seen = ""
        while "Ctrl-C" not in seen:  # the line printed once the tracepoint is attached
            if time.monotonic() > deadline or not sel.select(deadline - time.monotonic()):
                proc.kill()
                raise AssertionError(f"tracer not ready after {READY_TIMEOUT} s: {seen!r}")
            line = proc.stderr.readline()
            if not line:
                proc.wait(5)
                raise AssertionError(f"tracer exited {proc.returncode}: {seen!r}")
            seen += line
    return proc


def finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the tracer did not stop at --duration") from None
    assert proc.returncode == 0, err
    return out


def connect_and_refuse(server: socket.socket, closed_port: int, n: int) -> tuple[set[int], int]:
    host, port = server.getsockname()[:2]
    clients = set()
    for _ in range(n):
        with socket.create_connection((host, port), timeout=5) as client:
            clients.add(client.getsockname()[1])
            accepted, _ = server.accept()
        accepted.close()
    with socket.socket() as refused:
        refused.bind((host, 0))
        with pytest.raises(ConnectionRefusedError):
            refused.connect((host, closed_port))
        refused_port = refused.getsockname()[1]
    return clients, refused_port


@pytest.fixture
def loopback_server():
    with socket.socket() as server, socket.socket() as closed:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        closed.bind(("127.0.0.1", 0))  # never listens: connects to it are refused
        yield server, closed.getsockname()[1]


@pytest.mark.bpf
def test_json_lines_report_our_connections(needs_bcc, loopback_server):
    server, closed_port = loopback_server
    proc = start_tracer("--json", "--duration", "3")
    try:
        clients, refused_port = connect_and_refuse(server, closed_port, 5)
    finally:
        out = finish(proc, timeout=15)
    server_port = server.getsockname()[1]
    events = [json.loads(line) for line in out.splitlines()]
    mine = [e for e in events if server_port in (e["sport"], e["dport"]) or e["dport"] == closed_port]
    kinds = {(e["kind"], e["sport"] if e["active"] else e["dport"]) for e in mine}
    for client in clients:
        assert {("CONNECT", client), ("ACCEPT", client), ("CLOSE", client)} <= kinds, (client, mine)
    assert ("CONNECT_FAILED", refused_port) in kinds
    connects = [e for e in mine if e["kind"] == "CONNECT"]
    assert len(connects) == len(clients) and all(e["pid"] == os.getpid() for e in connects)


@pytest.mark.bpf
def test_port_filter_and_human_lines(needs_bcc, loopback_server):
    server, closed_port = loopback_server
    server_port = server.getsockname()[1]
    proc = start_tracer("--duration", "2", "--port", str(server_port))
    try:
        clients, _ = connect_and_refuse(server, closed_port, 3)
    finally:
        out = finish(proc, timeout=15)
    header, *lines = out.splitlines()
    assert header == COLUMNS
    assert lines and all(f":{server_port}" in line for line in lines), \
        f"--port {server_port} lets only its connections through:\n{out}"
    assert sum(" CONNECT " in line for line in lines) == len(clients)
    assert not any("CONNECT_FAILED" in line for line in lines), "the refused connect used another port"
