"""`netsprint trace tcp|bytes`: the week-10 and week-11 tracers from the command line (root).

Each tracer's module owns its options and its output (`add_arguments`, `run`); this module
only puts them under one `trace` command.
"""

from __future__ import annotations

import argparse
import importlib

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
