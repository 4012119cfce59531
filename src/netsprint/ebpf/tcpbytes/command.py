"""`netsprint trace bytes`: payload bytes per TCP connection, one line as each closes (root).

The trace parser adds `--json` and `--duration`; this module adds the filters and prints.
When the run ends (`--duration` over, or Ctrl-C) it prints the connections still open,
and with `--per-ip` the totals per remote address. It imports no bcc at module level (the
CLI imports it to build its parser); loading errors are `BpfLoadError`s the CLI prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from netsprint.ebpf.command import follow
from netsprint.ebpf.tcpbytes.loader import ConnBytes, IpTotals, TcpBytesTracer
from netsprint.reactor.addresses import short_addr

RUN_AS = "run it as root: `sudo .venv/bin/netsprint trace bytes`"
COLUMNS = (f"{'STATE':<6} {'PID':>7} {'COMM':<16} {'LOCAL -> REMOTE':<47} "
           f"{'SENT':>10} {'RECEIVED':>10} {'DURATION':>10}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", type=int, default=None,
                        help="only connections opened by PID (an accepted connection belongs to "
                             "the first process that sends or receives on it)")
    parser.add_argument("--port", type=int, action="append", default=None,
                        help="only connections with PORT as local or remote port (repeatable)")
    parser.add_argument("--per-ip", action="store_true",
                        help="at the end also print the totals per remote address (unfiltered)")


def matches(conn: ConnBytes, pid: int | None = None, ports: list[int] | None = None) -> bool:
    """Does `conn` pass the --pid and --port filters (None: no filter)?"""
    if pid is not None and conn.pid != pid:
        return False
    return not ports or conn.local_port in ports or conn.remote_port in ports


def human_bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1.0 else f"{seconds:.2f} s"


def format_conn(conn: ConnBytes, now_ns: int | None = None) -> str:
    """One aligned line: CLOSE for a record, OPEN for a snapshot entry."""
    state = "CLOSE" if conn.closed else "OPEN"
    pair = f"{short_addr((conn.local_ip, conn.local_port))} -> {short_addr((conn.remote_ip, conn.remote_port))}"
    pid = str(conn.pid) if conn.pid else "-"
    return (f"{state:<6} {pid:>7} {conn.comm or '-':<16} {pair:<47} {human_bytes(conn.sent_bytes):>10} "
            f"{human_bytes(conn.received_bytes):>10} {human_duration(conn.duration_seconds(now_ns)):>10}")


def conn_json(conn: ConnBytes, now_ns: int | None = None) -> str:
    fields = conn.as_dict()
    fields["duration_seconds"] = round(conn.duration_seconds(now_ns), 6)
    return json.dumps({"event": "close" if conn.closed else "open", **fields})


def ip_lines(totals: dict[str, IpTotals], as_json: bool) -> list[str]:
    """The per-remote-address totals, biggest talker first."""
    ranked = sorted(totals.items(), key=lambda item: -(item[1].sent_bytes + item[1].received_bytes))
    if as_json:
        return [json.dumps({"event": "ip", "remote_ip": ip, "connections": t.connections,
                            "sent_bytes": t.sent_bytes, "received_bytes": t.received_bytes})
                for ip, t in ranked]
    header = f"{'REMOTE IP':<40} {'CONNS':>6} {'SENT':>10} {'RECEIVED':>10}"
    return [header] + [f"{ip:<40} {t.connections:>6} {human_bytes(t.sent_bytes):>10} "
                       f"{human_bytes(t.received_bytes):>10}" for ip, t in ranked]


def _emit(line: str, out: TextIO) -> None:
    print(line, file=out, flush=True)


def _print_closed(conn: ConnBytes, args: argparse.Namespace, out: TextIO) -> None:
    if matches(conn, args.pid, args.port):
        _emit(conn_json(conn) if args.json else format_conn(conn), out)


def _print_what_is_open(tracer, args: argparse.Namespace, out: TextIO) -> None:
    now_ns = time.monotonic_ns()  # the kernel's bpf_ktime_get_ns() is CLOCK_MONOTONIC too
    for conn in tracer.poll(0.0):  # records that arrived while we stopped
        _print_closed(conn, args, out)
    still_open = [c for c in tracer.snapshot() if matches(c, args.pid, args.port)]
    for conn in sorted(still_open, key=lambda c: c.start_ns):
        _emit(conn_json(conn, now_ns) if args.json else format_conn(conn, now_ns), out)
    if args.per_ip:
        for line in ip_lines(tracer.per_ip(), args.json):
            _emit(line, out)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    with TcpBytesTracer(run_as=RUN_AS) as tracer:
        print("tracing TCP payload bytes (sock:sock_send_length / sock_recv_length); Ctrl-C stops",
              file=sys.stderr, flush=True)
        if not args.json:
            _emit(COLUMNS, out)
        follow(tracer, args.duration, lambda conn: _print_closed(conn, args, out))
        try:
            _print_what_is_open(tracer, args, out)
        except KeyboardInterrupt:  # a second Ctrl-C while printing: stop quietly
            pass
    return 0
