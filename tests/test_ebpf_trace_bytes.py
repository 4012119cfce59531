"""`netsprint trace bytes`: the filters and the output lines (pure), and the command itself
in a subprocess while the test moves known bytes over loopback (root + bcc)."""

from __future__ import annotations

import json
import os
import random
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netsprint.cli import build_parser
from netsprint.ebpf.tcpbytes.command import conn_json, format_conn, human_bytes, ip_lines, matches
from netsprint.ebpf.tcpbytes.loader import ConnBytes, IpTotals

NETSPRINT = Path(sys.executable).with_name("netsprint")
READY_SECONDS = 30.0  # bound on the compile + attach before the command says it is tracing
TRACE_SECONDS = 3.0


def conn(**changes) -> ConnBytes:
    fields = dict(sk=1, family=socket.AF_INET, local_ip="192.0.2.1", local_port=40000,
                  remote_ip="198.51.100.7", remote_port=443, active=True, pid=77, comm="curl",
                  sent_bytes=2048, received_bytes=100, send_calls=2, recv_calls=1,
                  start_ns=1_000_000_000, end_ns=1_250_000_000)
    fields.update(changes)
    return ConnBytes(**fields)


@pytest.mark.unit
def test_the_parser_takes_the_filters():
    args = build_parser().parse_args(["trace", "bytes", "--json", "--duration", "3", "--pid", "9",
                                      "--port", "80", "--port", "443", "--per-ip"])
    assert (args.json, args.duration, args.pid, args.port, args.per_ip) == (True, 3.0, 9, [80, 443], True)


@pytest.mark.unit
def test_filters_by_pid_and_either_port():
    assert matches(conn())
    assert matches(conn(), pid=77, ports=[443]) and matches(conn(), ports=[1, 40000])
    assert not matches(conn(), pid=78)
    assert not matches(conn(), ports=[80])


@pytest.mark.unit
def test_a_closed_connection_as_a_line_and_as_json():
    line = format_conn(conn())
    assert line.startswith("CLOSE") and "192.0.2.1:40000 -> 198.51.100.7:443" in line
    assert "2.0 KiB" in line and "100 B" in line and "250.0 ms" in line
    data = json.loads(conn_json(conn()))
    assert data["event"] == "close" and data["sent_bytes"] == 2048 and data["received_bytes"] == 100
    assert data["duration_seconds"] == pytest.approx(0.25)


@pytest.mark.unit
def test_an_open_ipv6_connection_shows_its_age():
    open_conn = conn(local_ip="::1", remote_ip="::1", end_ns=0)
    assert "OPEN" in format_conn(open_conn, now_ns=3_000_000_000)
    assert "[::1]:443" in format_conn(open_conn, now_ns=3_000_000_000)
    data = json.loads(conn_json(open_conn, now_ns=3_000_000_000))
    assert data["event"] == "open" and data["duration_seconds"] == pytest.approx(2.0)


@pytest.mark.unit
def test_per_ip_lines_rank_the_biggest_talker_first():
    totals = {"192.0.2.1": IpTotals(1, 10, 10), "203.0.113.5": IpTotals(4, 5000, 7)}
    rows = [json.loads(line) for line in ip_lines(totals, as_json=True)]
    assert [r["remote_ip"] for r in rows] == ["203.0.113.5", "192.0.2.1"]
    assert rows[0] == {"event": "ip", "remote_ip": "203.0.113.5", "connections": 4,
                       "sent_bytes": 5000, "received_bytes": 7}
    text = ip_lines(totals, as_json=False)
    assert text[0].startswith("REMOTE IP") and text[1].startswith("203.0.113.5")


@pytest.mark.unit
@pytest.mark.parametrize("count, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                         (5 * 1024 ** 2, "5.0 MiB"), (3 * 1024 ** 4, "3072.0 GiB")])
def test_human_bytes(count, text):
    assert human_bytes(count) == text


# --- the command, in a subprocess -----------------------------------------------------------------

def wait_until_tracing(proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_SECONDS
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
            if line.startswith("tracing"):
                return
    raise AssertionError(f"`netsprint trace bytes` did not start tracing: {seen!r}")


def send_exactly(sender: socket.socket, receiver: socket.socket, count: int) -> None:
    sender.sendall(random.randbytes(count))
    got = 0
    while got < count:
        chunk = receiver.recv(count - got)
        assert chunk, "peer closed early"
        got += len(chunk)


def connect(listener: socket.socket, client_ip: str) -> tuple[socket.socket, socket.socket]:
    client = socket.socket()
    client.bind((client_ip, 0))
    client.connect(listener.getsockname())
    server, _ = listener.accept()
    return client, server


@pytest.mark.bpf
def test_the_command_reports_closed_and_open_connections(needs_bcc):
    octet = random.randrange(1, 255)
    server_ip, client_ip = f"127.{octet}.{random.randrange(1, 255)}.1", f"127.{octet}.77.2"
    listener = socket.create_server((server_ip, 0))
    port = listener.getsockname()[1]
    proc = subprocess.Popen([str(NETSPRINT), "trace", "bytes", "--json", "--duration", str(TRACE_SECONDS),
                             "--port", str(port), "--per-ip"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sockets: list[socket.socket] = []
    try:
        wait_until_tracing(proc)
        closing_client, closing_server = connect(listener, client_ip)
        send_exactly(closing_client, closing_server, 5000)
        send_exactly(closing_server, closing_client, 321)
        closing_tuple = closing_client.getsockname()
        closing_client.close()
        closing_server.close()
        open_client, open_server = connect(listener, client_ip)
        sockets += [open_client, open_server]  # open until the command has ended
        open_end = "{}:{}".format(*open_client.getsockname())
        send_exactly(open_client, open_server, 999)
        out, err = proc.communicate(timeout=TRACE_SECONDS + READY_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for sock in (*sockets, listener):
            sock.close()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    by_local = {(line["event"], line["local"]): line for line in lines if line["event"] in ("close", "open")}
    client_end = f"{closing_tuple[0]}:{closing_tuple[1]}"
    closed_client = by_local[("close", client_end)]
    assert (closed_client["remote"], closed_client["sent_bytes"], closed_client["received_bytes"]) == \
        (f"{server_ip}:{port}", 5000, 321)
    closed_server = by_local[("close", f"{server_ip}:{port}")]
    assert (closed_server["remote"], closed_server["sent_bytes"], closed_server["received_bytes"]) == \
        (client_end, 321, 5000)
    still_open = by_local[("open", open_end)]
    assert (still_open["sent_bytes"], still_open["received_bytes"], still_open["pid"]) == (999, 0, os.getpid())
    assert 0 < still_open["duration_seconds"]
    assert {(e, local) for e, local in by_local} == {
        ("close", client_end), ("close", f"{server_ip}:{port}"), ("open", open_end), ("open", f"{server_ip}:{port}")}
    per_ip = {line["remote_ip"]: line for line in lines if line["event"] == "ip"}
    assert (per_ip[server_ip]["connections"], per_ip[server_ip]["sent_bytes"]) == (2, 5000 + 999)
    assert (per_ip[client_ip]["connections"], per_ip[client_ip]["received_bytes"]) == (2, 5000 + 999)
