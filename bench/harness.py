"""The frame every benchmark script runs in: options, machine, rounds, report, main.

Owns what bench/echo.py and bench/stun.py do alike around their own servers and load
generator: the shared command-line options, the description of the machine, running a load
generator to its end, the interleaved rounds and their medians, the report's common parts
(table, busy-box warning, target ratio line) and `run_bench`, the main that turns Ctrl-C,
SIGTERM and BenchError into an exit status once every started process is stopped.
Which servers exist and how processes are started and stopped is peers.py's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn
from rich.table import Table

from peers import LOADGEN_CPU, SERVER_CPU, BenchError, Peer, Processes

# -- options ---------------------------------------------------------------------------------


def add_run_options(p: argparse.ArgumentParser) -> None:
    """--duration, --warmup, --rounds: how long and how often each server is measured."""
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--rounds", type=int, default=3, help="runs per server (median reported)")


def add_server_options(p: argparse.ArgumentParser, names: tuple[str, ...],
                       start_help: str) -> None:
    """--servers (a subset of `names`), --start-timeout, --json."""
    p.add_argument("--servers", default=",".join(names),
                   help=f"comma-separated subset of: {','.join(names)}")
    p.add_argument("--start-timeout", type=float, default=5.0, help=start_help)
    p.add_argument("--json", action="store_true", help="print every number as JSON")


def parse_servers(p: argparse.ArgumentParser, args: argparse.Namespace,
                  names: tuple[str, ...]) -> None:
    """Turn args.servers into a list of known names (argparse's error exit otherwise)."""
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(args.servers) - set(names))
    if unknown or not args.servers:
        p.error(f"unknown server(s) {unknown}; choose from {', '.join(names)}")


def require_two_cpus() -> None:
    if (os.cpu_count() or 1) < 2:
        raise BenchError("one CPU only: the server and the load generator would share it "
                         "and the figures would mean nothing.")


# -- the machine -----------------------------------------------------------------------------

def machine_info(**software: str | None) -> dict:
    """What the figures depend on, `software` (name: version) included. Call it before any
    server starts: the busy cores it measures are then other work's."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    gcc = shutil.which("gcc")
    gcc = gcc and subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            **software, "kernel": platform.release(), "cpu": cpu,
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


def keep_off_server_cpu() -> None:
    """Move this process to the load generator's CPU, so its own work (the progress bar's
    thread, idle clients) never runs on the server's CPU."""
    if (os.cpu_count() or 1) > LOADGEN_CPU:
        os.sched_setaffinity(0, {LOADGEN_CPU})


# -- running ---------------------------------------------------------------------------------

def run_loadgen(procs: Processes, argv: list[str], against: str, seconds: float,
                server_log: Callable[[], str]) -> dict:
    """Run a load generator (pinned to LOADGEN_CPU) for its `seconds` against the server
    named `against`; its JSON result. On failure the error ends with `server_log()`."""
    proc = procs.spawn(argv, LOADGEN_CPU, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    timeout = seconds + 30  # the generators give up by themselves after 5 s without replies
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the load generator against {against!r} did not finish "
                         f"within {timeout:.0f} s") from None
    finally:
        procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"load against {against!r} failed: {err.strip()}\n{server_log()}")
    return json.loads(out)


def progress_bar(console: Console) -> Progress:
    return Progress(SpinnerColumn(), "{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def run_rounds(chosen: list[Peer], rounds: int, measure: Callable[[Peer], dict],
               progress: Progress) -> dict[str, list[dict]]:
    """`measure` every server once per round. Interleaved: slow drift of the machine
    (thermal, frequency, noisy neighbours on a VM) then hits every server alike instead of
    whichever happened to run last; the order also rotates so no server always goes first."""
    runs: dict[str, list[dict]] = {p.name: [] for p in chosen}
    task = progress.add_task("throughput", total=rounds * len(chosen))
    for r in range(rounds):
        order = chosen[r % len(chosen):] + chosen[:r % len(chosen)]
        for peer in order:
            progress.update(task, description=f"round {r + 1}/{rounds} · {peer.name}")
            runs[peer.name].append(measure(peer))
            progress.advance(task)
    progress.update(task, description="throughput done")
    return runs


def medians(rs: list[dict], keys: Iterable[str]) -> dict[str, float]:
    """The median of each figure over the rounds (robust to one disturbed run)."""
    return {k: statistics.median(r[k] for r in rs) for k in keys}


def spread(values: list[float]) -> float:
    """(max − min) ÷ median: how far the rounds disagree."""
    return (max(values) - min(values)) / statistics.median(values)


def target_ratio(summary: dict[str, dict], ours: str, theirs: str, target: float,
                 key: str = "rps") -> dict:
    """summary[ours][key] ÷ summary[theirs][key] against `target` (None: one not measured)."""
    mine, other = summary.get(ours), summary.get(theirs)
    value = mine[key] / other[key] if mine and other and other[key] else None
    return {"value": value, "target": target, "met": None if value is None else value >= target}


def report_head(script: str, machine: dict, args: argparse.Namespace,
                params: Iterable[str]) -> dict:
    """The report's first entries: when, the command, the machine, the pinning, `params`."""
    return {"date": datetime.date.today().isoformat(),
            "command": " ".join(["python", script, *map(shlex.quote, sys.argv[1:])]),
            "machine": machine,
            "pinning": {"server_cpu": SERVER_CPU, "loadgen_cpu": LOADGEN_CPU},
            "params": {k: getattr(args, k) for k in params}}


# -- the report ------------------------------------------------------------------------------

def new_table(title: str | None, *columns: str) -> Table:
    """A table whose first column (the server) is left-aligned and the figures right."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i else "left", no_wrap=True)
    return table


def warn_if_busy(console: Console, machine: dict) -> None:
    if machine["busy_cores_before"] > 0.2:
        console.print(f"[yellow]warning:[/] other work kept {machine['busy_cores_before']:.1f} "
                      f"cores busy just before the run; it skews the figures.")


def print_ratio(console: Console, label: str, ratio: dict, decimals: int) -> None:
    """`label = value (target ≥ t) met|not met`, or n/a when a server was left out."""
    if ratio["value"] is None:
        console.print(f"{label} = n/a (target ≥ {ratio['target']:.2f}; both servers must be "
                      f"measured)")
    else:
        mark = "[green]met[/]" if ratio["met"] else "[red]not met[/]"
        console.print(f"{label} = {ratio['value']:.{decimals}f} "
                      f"(target ≥ {ratio['target']:.2f}) {mark}")


# -- main ------------------------------------------------------------------------------------

def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so SIGTERM, like Ctrl-C, runs the finally that stops servers


def run_bench(title: str, args: argparse.Namespace, run: Callable[[Console], dict],
              print_report: Callable[[Console, dict], None]) -> int:
    """`run` the benchmark and print its report (or, with --json, the report as JSON);
    the exit status: 0, 1 for a BenchError, 130 when interrupted. `run` stops every
    process it started in a `finally`, so Ctrl-C and SIGTERM leave none behind."""
    signal.signal(signal.SIGTERM, _interrupt)
    # With --json, stdout carries only the JSON; progress and errors go to stderr.
    console = Console(stderr=args.json)
    keep_off_server_cpu()
    try:
        report = run(console)
    except BenchError as exc:
        err = Console(stderr=True)
        err.print(f"[bold red]{title} failed:[/]", end=" ")
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
