"""Echo benchmark: netsprint's echo server against asyncio, uvloop and a C epoll ceiling.

    python bench/echo.py [--connections 100] [--size 64] [--duration 5] [--rounds 3]
                         [--idle 10000] [--servers a,b,...] [--json]

A benchmark, not a test: it prints figures and the ratios the project tracks; nothing
asserts on them. See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from netsprint.reactor.pollcost import raise_fd_limit

import harness
from harness import new_table
from idle import TARGET_BYTES, measure_idle
from peers import (ALL, LOADGEN_CPU, PEERS, SERVER_CPU, BenchError, Peer, Processes, Server,
                   compile_c)

# The ratios the project tracks: (peer, target for netsprint req/s / peer req/s).
TARGETS = {"asyncio-protocol": 1.20, "uvloop-protocol": 0.95}
IDLE_PEERS = ("netsprint", "asyncio-protocol", "uvloop-protocol")
HOST = "127.0.0.1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=100, help="concurrent connections")
    p.add_argument("--size", type=int, default=64, help="message size in bytes")
    harness.add_run_options(p)
    p.add_argument("--idle", type=int, default=10000,
                   help="idle connections for the memory figure (0: skip it)")
    harness.add_server_options(p, ALL, start_help="seconds a server gets to start listening")
    args = p.parse_args(argv)
    harness.parse_servers(p, args, ALL)
    if min(args.connections, args.size, args.rounds) < 1 or args.duration <= 0 \
            or args.warmup < 0 or args.idle < 0:
        p.error("--connections, --size, --rounds, --duration must be positive; "
                "--warmup and --idle not negative")
    return args


def uvloop_version() -> str | None:
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return None


def check_limits(args: argparse.Namespace) -> None:
    """Raise the soft fd limit of this process (and so of every child) to what the run
    needs: the idle test holds thousands of sockets on both sides."""
    need = max(args.idle, args.connections) + 100
    got = raise_fd_limit(need)
    if got < need:
        raise BenchError(f"the open-files hard limit is {got}, the run needs {need}: "
                         f"lower --idle/--connections or raise it (ulimit -Hn {need}).")
    harness.require_two_cpus()


def run_loadgen(procs: Processes, loadgen: Path, server: Server,
                args: argparse.Namespace) -> dict:
    argv = [str(loadgen), "-h", HOST, "-p", str(server.port), "-c", str(args.connections),
            "-s", str(args.size), "-d", str(args.duration), "-w", str(args.warmup)]
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    result = harness.run_loadgen(procs, argv, server.peer.name, args.warmup + args.duration,
                                 lambda: f"  server stderr:\n{server.stderr_text()}")
    # Near 100 %, the server is the bottleneck; well below, the generator (or the box) is.
    result["server_cpu"] = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    return result


def measure(procs: Processes, peer: Peer, loadgen: Path, args: argparse.Namespace) -> dict:
    """One run: a fresh server process, one load generator run against it, stop."""
    server = procs.start_server(peer, HOST, args.start_timeout)
    try:
        return run_loadgen(procs, loadgen, server, args)
    finally:
        procs.stop(server.proc)


def preflight(procs: Processes, chosen: list[Peer], args: argparse.Namespace) -> None:
    """Start and stop every server once, so a broken one fails now, not minutes in."""
    for peer in chosen:
        procs.stop(procs.start_server(peer, HOST, args.start_timeout).proc)


def run_idle(procs: Processes, chosen: list[Peer], args: argparse.Namespace,
             progress: Progress) -> dict[str, dict]:
    results = {}
    for peer in chosen:
        if peer.name not in IDLE_PEERS:
            continue
        task = progress.add_task(f"idle memory · {peer.name}", total=args.idle)
        results[peer.name] = measure_idle(
            procs, peer, HOST, args.idle, args.start_timeout, budget=60 + args.idle / 200,
            advance=lambda done, task=task: progress.update(task, completed=done))
        progress.update(task, completed=args.idle)
    return results


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Median of each figure over the rounds, and their req/s spread."""
    return {name: {**harness.medians(rs, ("rps", "p50_us", "p99_us", "server_cpu")),
                   "spread": harness.spread([r["rps"] for r in rs])}
            for name, rs in runs.items()}


def ratios(summary: dict[str, dict]) -> dict[str, dict]:
    return {f"netsprint/{peer}": harness.target_ratio(summary, "netsprint", peer, target)
            for peer, target in TARGETS.items()}


def print_report(console: Console, report: dict) -> None:
    m, prm = report["machine"], report["params"]
    console.print(f"[bold]echo benchmark[/] {report['date']}  ·  Python {m['python']} "
                  f"({m['implementation']}), uvloop {m['uvloop']}  ·  kernel {m['kernel']}  ·  "
                  f"{m['cpu']} ({m['cores']} cores)")
    console.print(f"servers pinned to CPU {SERVER_CPU}, load generator (C, epoll) to CPU "
                  f"{LOADGEN_CPU}: on a 2-core box the generator needs its own core.  "
                  f"{prm['connections']} connections × {prm['size']} B ping-pong, "
                  f"{prm['duration']} s (+{prm['warmup']} s warm-up) × {prm['rounds']} "
                  f"interleaved rounds, median shown.")
    summary = report["summary"]
    base = summary.get("netsprint", {}).get("rps")
    table = new_table(None, "server", "req/s", "p50 µs", "p99 µs", "netsprint/x", "spread", "CPU")
    for name, s in summary.items():
        table.add_row(name, f"{s['rps']:,.0f}", f"{s['p50_us']:,.0f}", f"{s['p99_us']:,.0f}",
                      f"{base / s['rps']:.2f}" if base else "n/a", f"{s['spread']:.1%}",
                      f"{s['server_cpu']:.0%}")
    console.print(table)
    console.print("netsprint/x: netsprint req/s ÷ this server's; spread: (max − min) ÷ median "
                  "req/s over the rounds; CPU: the server's CPU use during the run (near "
                  "100 %: the server is the bottleneck).", style="dim")
    harness.warn_if_busy(console, m)
    for name, r in report["ratios"].items():
        harness.print_ratio(console, name.replace("/", " / "), r, decimals=2)
    if report["idle"]:
        print_idle(console, report["idle"])


def print_idle(console: Console, idle: dict[str, dict]) -> None:
    table = new_table(f"idle memory (target ≤ {TARGET_BYTES} B per connection)",
                      "server", "connections", "RSS before", "RSS after", "B / connection")
    for name, r in idle.items():
        if "error" in r:
            table.add_row(name, str(r["connections"]), "", "", f"[red]{r['error']}[/]")
            continue
        ok = "[green]" if r["bytes_per_conn"] <= TARGET_BYTES else "[red]"
        table.add_row(name, f"{r['connections']:,}", f"{r['rss_before'] / 2**20:.1f} MiB",
                      f"{r['rss_after'] / 2**20:.1f} MiB", f"{ok}{r['bytes_per_conn']:,.0f}[/]")
    console.print(table)


def run(args: argparse.Namespace, console: Console) -> dict:
    check_limits(args)
    loadgen = compile_c("loadgen")
    compile_c("c_echo")  # the c-epoll peer's binary
    machine = harness.machine_info(uvloop=uvloop_version())  # before any server starts
    chosen = [PEERS[name] for name in args.servers]
    procs = Processes()
    try:
        preflight(procs, chosen, args)
        with harness.progress_bar(console) as progress:
            runs = harness.run_rounds(chosen, args.rounds,
                                      lambda peer: measure(procs, peer, loadgen, args), progress)
            idle = run_idle(procs, chosen, args, progress) if args.idle > 0 else {}
    finally:
        procs.stop_all()
    summary = summarize(runs)
    return {**harness.report_head("bench/echo.py", machine, args,
                                  ("connections", "size", "duration", "warmup", "rounds",
                                   "idle", "servers")),
            "summary": summary, "ratios": ratios(summary), "runs": runs, "idle": idle}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return harness.run_bench("echo benchmark", args, lambda console: run(args, console),
                             print_report)


if __name__ == "__main__":
    sys.exit(main())
