"""`netsprint stun-server` and `netsprint nat-type`."""

from __future__ import annotations

import argparse
import json
import logging

from rich.console import Console
from rich.table import Table

from netsprint.log import setup_logging
from netsprint.reactor.addresses import short_addr
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.signals import StopOnSignals
from netsprint.stun.client import StunError, parse_address, parse_ip
from netsprint.stun.nat import DEFAULT_TEST_TIMEOUT, NatReport, detect_nat

log = logging.getLogger(__name__)


def run_stun_server(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C, then print the counters."""
    from netsprint.stun.server import StunServer

    setup_logging()
    primary = parse_address(args.listen)
    alt_ip = parse_ip(args.alt) if args.alt else None
    loop = EventLoop()
    try:
        with StunServer(loop, primary, alt_ip) as server:
            addresses = ", ".join(short_addr(a) for a in server.core.local_addresses)
            mode = "RFC 5780 (2 IPs x 2 ports)" if alt_ip else "Binding only (no --alt)"
            log.info("STUN server on %s: %s", addresses, mode)
            with StopOnSignals(loop):
                loop.run_forever()
            _print_counters(server.counters())
    except OSError as exc:
        raise StunError(f"cannot serve on {args.listen}: {exc}") from exc
    finally:
        loop.close()
    return 0


def _print_counters(counters: dict[str, int]) -> None:
    table = Table(title="STUN server counters")
    table.add_column("counter")
    table.add_column("value", justify="right")
    for name, value in counters.items():
        table.add_row(name, str(value))
    Console(stderr=True).print(table)


def run_nat_type(args: argparse.Namespace) -> int:
    """Detect the NAT type; JSON with --json, a table otherwise."""
    server = parse_address(args.server)
    timeout = args.timeout if args.timeout is not None else DEFAULT_TEST_TIMEOUT
    if timeout <= 0:
        raise StunError(f"--timeout must be positive, not {timeout}")
    report = detect_nat(server, timeout=timeout)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    return 0


def _print_report(report: NatReport) -> None:
    summary = report.to_dict()
    table = Table(title=f"NAT type via {summary['server']}")
    table.add_column("")
    table.add_column("result")
    for key in ("nat_type", "mapping", "filtering", "mapped_address", "local_address",
                "rfc5780", "reason"):
        table.add_row(key, str(summary[key]))
    console = Console()
    console.print(table)
    tests = Table(title="tests (RFC 5780 §4.3, §4.4)")
    for column in ("test", "to", "change", "answer from", "mapped", "note"):
        tests.add_column(column)
    for test in report.tests:
        change = "+".join(n for n, on in (("ip", test.change_ip), ("port", test.change_port))
                          if on) or "-"
        tests.add_row(test.name, test.destination, change,
                      test.source_address or "(none)", test.mapped_address or "-",
                      test.note or test.error or "")
    console.print(tests)
