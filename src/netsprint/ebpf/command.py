"""`netsprint trace tcp|bytes`: the week-10 and week-11 tracers from the command line (root).

Each tracer's module owns its options and its output (`add_arguments`, `run`); this module
puts them under one `trace` command and runs their shared poll loop (`follow`).
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable

POLL_SLICE = 0.2  # seconds per ring-buffer poll, so --duration and Ctrl-C are noticed quickly

# tracer name -> (module with add_arguments(parser) and run(args) -> int, help)
TRACERS = {
    "tcp": ("netsprint.ebpf.tcplife.command", "week 10: TCP connect/accept/close events with latency"),
    "bytes": ("netsprint.ebpf.tcpbytes.command", "week 11: bytes sent/received per TCP connection"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tracer", required=True, metavar="TRACER")
    for name, (module, help_text) in TRACERS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.add_argument("--duration", type=float, default=None, metavar="S",
                       help="stop after S seconds (default: until Ctrl-C)")
        importlib.import_module(module).add_arguments(p)


def run(args: argparse.Namespace) -> int:
    module, _ = TRACERS[args.tracer]
    return importlib.import_module(module).run(args)


def follow(tracer, duration: float | None, handle: Callable[[object], object]) -> None:
    """Hand every event `tracer.poll()` returns to `handle` for `duration` seconds (None:
    until Ctrl-C, which ends it quietly). The time counts from this call, not from the
    tracer's start: compiling took a second or two and saw nothing."""
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or (left := deadline - time.monotonic()) > 0:
            for event in tracer.poll(POLL_SLICE if deadline is None else min(POLL_SLICE, left)):
                handle(event)
    except KeyboardInterrupt:
        pass
