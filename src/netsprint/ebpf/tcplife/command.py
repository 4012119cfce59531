"""`netsprint trace tcp`: print TCP connect / accept / close events as they happen (root).

The trace parser adds `--json` and `--duration`; this module adds the filters and prints.
It imports no bcc at module level (the CLI imports it to build its parser); errors from
loading (not root, no bcc, no tracefs) are `BpfLoadError`s that the CLI prints, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from netsprint.ebpf.command import follow
from netsprint.ebpf.tcplife.loader import EventKind, TcpEvent, TcpLifeTracer
from netsprint.reactor.addresses import short_addr

RUN_AS = "run it as root: `sudo .venv/bin/netsprint trace tcp`"
COLUMNS = f"{'TIME':<12} {'KIND':<14} {'PID':>7} {'COMM':<16} {'LOCAL -> REMOTE':<47} LATENCY / LIFETIME"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", type=int, default=None,
                        help="only events whose pid is PID (ACCEPT's pid is the interrupted task, "
                             "so a server's accepts show up under its close() only)")
    parser.add_argument("--port", type=int, default=None,
                        help="only connections with PORT as local or remote port")
    parser.add_argument("--kprobes", action="store_true",
                        help="also use the plan's kprobes (tcp_v4_connect/tcp_close) if a feature "
                             "probe shows they work here; the tracepoint is used either way")


def matches(event: TcpEvent, pid: int | None = None, port: int | None = None) -> bool:
    """Does `event` pass the --pid and --port filters (None: no filter)?"""
    if pid is not None and event.pid != pid:
        return False
    return port is None or port in (event.sport, event.dport)


def _duration(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 1.0 else f"{seconds:.3f} s"


def format_event(event: TcpEvent, wall_minus_monotonic: float) -> str:
    """One aligned line. `wall_minus_monotonic` turns the kernel's monotonic timestamp into
    the time of day (time.time() - time.monotonic() at start)."""
    # Seconds and milliseconds from one instant, in whole milliseconds (no float fraction).
    seconds, millis = divmod(round((event.timestamp + wall_minus_monotonic) * 1000), 1000)
    clock = time.strftime("%H:%M:%S", time.localtime(seconds))
    pid, comm = (str(event.pid), event.comm) if event.owner_known else ("-", "[softirq]")
    pair = f"{short_addr((event.saddr, event.sport))} -> {short_addr((event.daddr, event.dport))}"
    if event.kind == EventKind.CLOSE:
        measure = f"lived {_duration(event.lifetime)} (from {event.oldstate})"
    else:
        measure = _duration(event.latency)
    return f"{clock}.{millis:03d} {event.kind.name:<14} {pid:>7} {comm:<16} {pair:<47} {measure}"


def _print_event(event: TcpEvent, args: argparse.Namespace, offset: float, out: TextIO) -> None:
    if matches(event, args.pid, args.port):
        line = json.dumps(event.as_dict()) if args.json else format_event(event, offset)
        print(line, file=out, flush=True)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    offset = time.time() - time.monotonic()
    with TcpLifeTracer(kprobes=getattr(args, "kprobes", False), run_as=RUN_AS) as tracer:
        if getattr(args, "kprobes", False):
            print(f"kprobes: {'used' if tracer.using_kprobes else 'not used'} ({tracer.kprobe_status})",
                  file=sys.stderr)
        print("tracing TCP lifecycle events from sock:inet_sock_set_state; Ctrl-C stops",
              file=sys.stderr, flush=True)
        if not args.json:
            print(COLUMNS, file=out, flush=True)
        follow(tracer, args.duration, lambda event: _print_event(event, args, offset, out))
    return 0
