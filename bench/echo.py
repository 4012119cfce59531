"""Echo benchmark: netsprint's echo server against asyncio, uvloop and a C epoll ceiling.

    python bench/echo.py [--connections 100] [--size 64] [--duration 5] [--rounds 3]
                         [--idle 10000] [--servers a,b,...] [--json]

A benchmark, not a test: it prints figures and the ratios the project tracks; nothing
asserts on them. See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn
from rich.table import Table

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
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--rounds", type=int, default=3, help="runs per server (median reported)")
    p.add_argument("--idle", type=int, default=10000,
                   help="idle connections for the memory figure (0: skip it)")
    p.add_argument("--servers", default=",".join(ALL),
                   help=f"comma-separated subset of: {','.join(ALL)}")
    p.add_argument("--start-timeout", type=float, default=5.0,
                   help="seconds a server gets to start listening")
    p.add_argument("--json", action="store_true", help="print every number as JSON")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(args.servers) - set(ALL))
    if unknown or not args.servers:
        p.error(f"unknown server(s) {unknown}; choose from {', '.join(ALL)}")
    if min(args.connections, args.size, args.rounds) < 1 or args.duration <= 0 \
            or args.warmup < 0 or args.idle < 0:
        p.error("--connections, --size, --rounds, --duration must be positive; "
                "--warmup and --idle not negative")
    return args


def machine_info() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    try:
        uvloop = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop = None
    gcc = shutil.which("gcc")
    gcc = gcc and subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "uvloop": uvloop, "kernel": platform.release(), "cpu": cpu,
            "cores": os.cpu_count(), "gcc": gcc.splitlines()[0] if gcc else None,
            "busy_cores_before": busy_cores()}


def busy_cores(window: float = 0.5) -> float:
    """How many cores other work keeps busy right now (from /proc/stat over `window` s):
    a benchmark shares the box with whatever else runs on it."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)
    busy0, total0 = sample()
    time.sleep(window)
    busy1, total1 = sample()
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)


def prepare_process() -> None:
    """Give this process (and so every child) the hard fd limit: the idle test holds
    thousands of sockets on both sides. Move it to the load generator's CPU so its own
    work (the progress bar's thread, the idle clients) never runs on the server's CPU."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if (os.cpu_count() or 1) > LOADGEN_CPU:
        os.sched_setaffinity(0, {LOADGEN_CPU})


def check_limits(args: argparse.Namespace) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    need = max(args.idle, args.connections) + 100
    if hard != resource.RLIM_INFINITY and hard < need:
        raise BenchError(f"the open-files hard limit is {hard}, the run needs {need}: "
                         f"lower --idle/--connections or raise it (ulimit -Hn {need}).")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("one CPU only: the server and the load generator would share it "
                         "and the figures would mean nothing.")


def run_loadgen(procs: Processes, loadgen: Path, server: Server,
                args: argparse.Namespace) -> dict:
    argv = [str(loadgen), "-h", HOST, "-p", str(server.port), "-c", str(args.connections),
            "-s", str(args.size), "-d", str(args.duration), "-w", str(args.warmup)]
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    proc = procs.spawn(argv, LOADGEN_CPU, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    timeout = args.warmup + args.duration + 30  # the generator gives up after 5 s stalled
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the load generator against {server.peer.name!r} did not finish "
                         f"within {timeout:.0f} s") from None
    finally:
        procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"load against {server.peer.name!r} failed: {err.strip()}\n"
                         f"  server stderr:\n{server.stderr_text()}")
    result = json.loads(out)
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


def run_rounds(procs: Processes, chosen: list[Peer], loadgen: Path,
               args: argparse.Namespace, progress: Progress) -> dict[str, list[dict]]:
    """Interleave: round r runs every server once. Slow drift of the machine (thermal,
    frequency, noisy neighbours on a VM) then hits every server alike instead of whichever
    happened to run last; the order also rotates so no server always goes first."""
    runs: dict[str, list[dict]] = {p.name: [] for p in chosen}
    task = progress.add_task("throughput", total=args.rounds * len(chosen))
    for r in range(args.rounds):
        order = chosen[r % len(chosen):] + chosen[:r % len(chosen)]
        for peer in order:
            progress.update(task, description=f"round {r + 1}/{args.rounds} · {peer.name}")
            runs[peer.name].append(measure(procs, peer, loadgen, args))
            progress.advance(task)
    progress.update(task, description="throughput done")
    return runs


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
    """Median of each figure over the rounds (robust to one disturbed run)."""
    out = {}
    for name, rs in runs.items():
        rps = [r["rps"] for r in rs]
        out[name] = {"rps": statistics.median(rps),
                     "p50_us": statistics.median(r["p50_us"] for r in rs),
                     "p99_us": statistics.median(r["p99_us"] for r in rs),
                     "server_cpu": statistics.median(r["server_cpu"] for r in rs),
                     "spread": (max(rps) - min(rps)) / statistics.median(rps)}
    return out


def ratios(summary: dict[str, dict]) -> dict[str, dict]:
    ours = summary.get("netsprint")
    out = {}
    for peer, target in TARGETS.items():
        theirs = summary.get(peer)
        value = ours["rps"] / theirs["rps"] if ours and theirs else None
        out[f"netsprint/{peer}"] = {"value": value, "target": target,
                                    "met": None if value is None else value >= target}
    return out


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
    if m["busy_cores_before"] > 0.2:
        console.print(f"[yellow]warning:[/] other work kept {m['busy_cores_before']:.1f} cores "
                      f"busy just before the run; it skews the figures.")
    for name, r in report["ratios"].items():
        if r["value"] is None:
            console.print(f"{name.replace('/', ' / ')} = n/a (target ≥ {r['target']:.2f}; "
                          f"both servers must be measured)")
        else:
            mark = "[green]met[/]" if r["met"] else "[red]not met[/]"
            console.print(f"{name.replace('/', ' / ')} = {r['value']:.2f} "
                          f"(target ≥ {r['target']:.2f}) {mark}")
    if report["idle"]:
        print_idle(console, report["idle"])


def new_table(title: str | None, *columns: str) -> Table:
    """A table whose first column (the server) is left-aligned and the figures right."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i else "left", no_wrap=True)
    return table


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
    machine = machine_info()  # before any server starts: the busy cores are other work's
    chosen = [PEERS[name] for name in args.servers]
    procs = Processes()
    try:
        preflight(procs, chosen, args)
        with Progress(SpinnerColumn(), "{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            runs = run_rounds(procs, chosen, loadgen, args, progress)
            idle = run_idle(procs, chosen, args, progress) if args.idle > 0 else {}
    finally:
        procs.stop_all()
    summary = summarize(runs)
    return {"date": datetime.date.today().isoformat(),
            "command": " ".join(["python", "bench/echo.py", *map(shlex.quote, sys.argv[1:])]),
            "machine": machine,
            "pinning": {"server_cpu": SERVER_CPU, "loadgen_cpu": LOADGEN_CPU},
            "params": {k: getattr(args, k) for k in
                       ("connections", "size", "duration", "warmup", "rounds", "idle", "servers")},
            "summary": summary, "ratios": ratios(summary), "runs": runs, "idle": idle}


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so SIGTERM, like Ctrl-C, runs the finally that stops servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    # With --json, stdout carries only the JSON; progress and errors go to stderr.
    console = Console(stderr=args.json)
    prepare_process()
    try:
        report = run(args, console)
    except BenchError as exc:
        err = Console(stderr=True)
        err.print("[bold red]echo benchmark failed:[/]", end=" ")
        err.print(str(exc), markup=False, highlight=False)
        return 1
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; every process started was stopped")
        return 130
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(console, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
