"""Agent overhead benchmark: echo requests/s with the eBPF agent attached vs without.

    sudo .venv/bin/python bench/agent.py [--server netsprint] [--connections 100] [--size 64]
                                         [--duration 5] [--rounds 3] [--json]

Both sides run the same echo server and the same C load generator; in the "agent" runs
`netsprint agent` (three tracepoints and its map iterator) runs beside them and is scraped once a
second, as Prometheus would. Rounds alternate so drift hits both alike. The ratio tracked:
agent req/s ÷ no-agent req/s (target ≥ 0.95). A benchmark, not a test (bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from rich.console import Console

import harness
from harness import new_table
from peers import ALL, PEERS, BenchError, Peer, Processes, compile_c, free_port

HOST = "127.0.0.1"
TARGET = 0.95
SCRAPE_INTERVAL = 1.0  # seconds, a typical Prometheus scrape_interval for a node agent
CPU_OF_AGENT = 0       # shares the server's CPU: the agent's cost lands where it would


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", choices=ALL, default="netsprint",
                   help="the echo server under load (netsprint: the week-1 reactor; c-epoll "
                        "is the worst case: the kernel's share, and so the probes' share, "
                        "of each request is largest there)")
    p.add_argument("--connections", type=int, default=100)
    p.add_argument("--size", type=int, default=64, help="message size in bytes")
    harness.add_run_options(p)
    p.add_argument("--start-timeout", type=float, default=60.0,
                   help="seconds the agent (BPF compile) and the server get to start")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


class ScrapingAgent:
    """Owns one `netsprint agent` process and the thread that scrapes it every second."""

    def __init__(self, procs: Processes, timeout: float) -> None:
        self.procs = procs
        self.dir = tempfile.TemporaryDirectory(prefix="netsprint-bench-agent-")
        config = Path(self.dir.name) / "agent.yaml"
        config.write_text("collect_interval: 0\npods: {source: none}\n")
        self.url = f"http://{HOST}:{free_port(HOST)}"
        with open(Path(self.dir.name) / "stderr", "w") as stderr:  # the child keeps its copy
            self.proc = procs.spawn([sys.executable, "-m", "netsprint.agent", "--config",
                                     str(config), "--listen", self.url.removeprefix("http://")],
                                    CPU_OF_AGENT, stdout=subprocess.DEVNULL, stderr=stderr)
        self.scrapes = 0
        self._stop = threading.Event()
        self._wait_healthy(timeout)
        self._thread = threading.Thread(target=self._scrape_loop, daemon=True)
        self._thread.start()

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return response.read().decode()

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (Path(self.dir.name) / "stderr").read_text()
                raise BenchError(f"the agent exited ({self.proc.returncode}): {log.strip()}")
            try:
                self._get("/healthz")
                return
            except OSError:
                time.sleep(0.2)
        raise BenchError(f"the agent was not healthy within {timeout:g} s")

    def _scrape_loop(self) -> None:
        while not self._stop.wait(SCRAPE_INTERVAL):
            self._get("/metrics")
            self.scrapes += 1

    def sent_bytes(self) -> float:
        """Every byte the probes counted (proves they were in the path during the run)."""
        total = 0.0
        for line in self._get("/metrics").splitlines():
            if line.startswith("netsprint_tcp_sent_bytes_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.procs.stop(self.proc, grace=10.0)
        self.dir.cleanup()


def measure(procs: Processes, peer: Peer, loadgen: Path, args: argparse.Namespace) -> dict:
    """One run: a fresh server (and, for "agent", a fresh agent), one load run, stop."""
    agent = ScrapingAgent(procs, args.start_timeout) if peer.name == "agent" else None
    server = None
    try:
        server = procs.start_server(PEERS[args.server], HOST, args.start_timeout)
        argv = [str(loadgen), "-h", HOST, "-p", str(server.port), "-c", str(args.connections),
                "-s", str(args.size), "-d", str(args.duration), "-w", str(args.warmup)]
        result = harness.run_loadgen(procs, argv, args.server, args.warmup + args.duration,
                                     lambda: f"  server stderr:\n{server.stderr_text()}")
        if agent:
            result["agent_sent_bytes"] = agent.sent_bytes()
            result["scrapes"] = agent.scrapes
        return result
    finally:
        if server:
            procs.stop(server.proc)
        if agent:
            agent.stop()


def run(args: argparse.Namespace, console: Console) -> dict:
    if os.geteuid() != 0:
        raise BenchError("the agent loads BPF programs: run as root "
                         "(sudo .venv/bin/python bench/agent.py)")
    harness.require_two_cpus()
    loadgen = compile_c("loadgen")
    compile_c("c_echo")
    machine = harness.machine_info()
    sides = [Peer("no-agent", ()), Peer("agent", ())]
    procs = Processes()
    try:
        with harness.progress_bar(console) as progress:
            runs = harness.run_rounds(sides, args.rounds,
                                      lambda side: measure(procs, side, loadgen, args),
                                      progress)
    finally:
        procs.stop_all()
    summary = {name: harness.medians(rs, ("rps", "p50_us", "p99_us")) for name, rs in runs.items()}
    for name, rs in runs.items():
        summary[name]["spread"] = harness.spread([r["rps"] for r in rs])
    return {**harness.report_head("bench/agent.py", machine, args,
                                  ("server", "connections", "size", "duration", "warmup",
                                   "rounds")),
            "summary": summary,
            "ratio": harness.target_ratio(summary, "agent", "no-agent", TARGET),
            "runs": runs}


def print_report(console: Console, report: dict) -> None:
    m, prm = report["machine"], report["params"]
    console.print(f"[bold]agent overhead[/] {report['date']}  ·  kernel {m['kernel']}  ·  "
                  f"{m['cpu']} ({m['cores']} cores)  ·  server {prm['server']}, "
                  f"{prm['connections']} connections × {prm['size']} B, {prm['duration']} s × "
                  f"{prm['rounds']} alternating rounds, median shown")
    table = new_table(None, "side", "req/s", "p50 µs", "p99 µs", "spread")
    for name, s in report["summary"].items():
        table.add_row(name, f"{s['rps']:,.0f}", f"{s['p50_us']:,.0f}", f"{s['p99_us']:,.0f}",
                      f"{s['spread']:.1%}")
    console.print(table)
    counted = [r["agent_sent_bytes"] for r in report["runs"]["agent"]]
    console.print(f"the agent counted {min(counted):,.0f} to {max(counted):,.0f} sent bytes "
                  "per run (its probes were in the path)", style="dim")
    harness.warn_if_busy(console, m)
    harness.print_ratio(console, "agent / no-agent req/s", report["ratio"], decimals=3)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return harness.run_bench("agent benchmark", args, lambda console: run(args, console),
                             print_report)


if __name__ == "__main__":
    sys.exit(main())
