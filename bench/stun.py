"""STUN benchmark: Binding responses/s, netsprint's STUN server against Debian's coturn.

    python bench/stun.py [--duration 5] [--rounds 3] [--window 64] [--sockets 1]
                         [--servers netsprint,coturn] [--json]

Both servers answer bare Binding requests on 127.0.0.1, pinned to the server CPU, driven
by the same C load generator (bench/stun_loadgen.c) on the other CPU. A benchmark, not a
test: it prints figures and the ratio the project tracks; nothing asserts on them. See
bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from netsprint.stun.client import StunError, binding_request

import harness
from peers import LOADGEN_CPU, SERVER_CPU, BenchError, Peer, Processes, Server, compile_c, pin

HOST = "127.0.0.1"
TARGET = 0.90  # netsprint responses/s ÷ coturn responses/s
MAX_DURATION_S = 600.0  # the load generator refuses more than an hour; this bench, 10 min
MAX_ROUNDS = 20
MAX_WINDOW = 4096  # the load generator's limit


def _servers() -> dict[str, Peer]:
    """Each argv is filled with {host}, {port} and {dir} (a fresh temporary directory)."""
    coturn = (
        "turnserver", "--stun-only", "-n", "--listening-ip", "{host}", "--listening-port",
        "{port}", "--no-tls", "--no-dtls", "--no-cli",
        # Keep coturn off the system's files: its log, pid file and user database (it
        # opens /var/lib/turn/turndb even in --stun-only mode) go to the temp directory.
        "--log-file", "{dir}/turnserver.log", "--simple-log", "--no-stdout-log",
        "--pidfile", "{dir}/turnserver.pid", "--db", "{dir}/turndb")
    return {
        "netsprint": Peer("netsprint", (sys.executable, "-m", "netsprint", "stun-server",
                                        "--listen", "{host}:{port}")),
        "coturn": Peer("coturn", coturn),
    }


SERVERS = _servers()
ALL = tuple(SERVERS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_run_options(p)
    p.add_argument("--window", type=int, default=64,
                   help="Binding requests kept outstanding")
    p.add_argument("--sockets", type=int, default=1,
                   help="client UDP sockets the window is spread over")
    p.add_argument("--resend-ms", type=int, default=200,
                   help="resend a request unanswered for this long (same transaction id)")
    harness.add_server_options(
        p, ALL, start_help="seconds a server gets to answer its first Binding request")
    args = p.parse_args(argv)
    harness.parse_servers(p, args, ALL)
    if not (0 < args.duration <= MAX_DURATION_S and 0 <= args.warmup <= 60
            and 1 <= args.rounds <= MAX_ROUNDS and 1 <= args.window <= MAX_WINDOW
            and 1 <= args.sockets <= min(64, args.window) and args.resend_ms >= 1):
        p.error(f"need 0 < --duration <= {MAX_DURATION_S:.0f}, 0 <= --warmup <= 60, "
                f"1 <= --rounds <= {MAX_ROUNDS}, 1 <= --window <= {MAX_WINDOW}, "
                f"1 <= --sockets <= min(64, --window), --resend-ms >= 1")
    return args


# -- servers ---------------------------------------------------------------------------------

@dataclass
class Running:
    """One started STUN server: the process (owned by Processes) and its temp directory."""

    server: Server
    workdir: tempfile.TemporaryDirectory
    threads: int = 0
    udp_sockets: int = 0

    def log_text(self, limit: int = 3000) -> str:
        """stderr, and coturn's log file when there is one (coturn logs there, not stderr)."""
        text = self.server.stderr_text(limit)
        log = Path(self.workdir.name) / "turnserver.log"
        if log.exists():
            text += "\n  turnserver.log:\n" + log.read_text(errors="replace")[-limit:].strip()
        return text


def free_udp_port(host: str) -> int:
    """A port free for UDP and for TCP (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            try:
                with socket.socket() as tcp:
                    tcp.bind((host, port))
            except OSError:
                continue
            return port
    raise BenchError(f"no port free for both UDP and TCP on {host}")


def binding_answered(port: int) -> bool:
    """Send one Binding request from a fresh socket; True if a success answer to it comes
    back within 50 ms (the package's client checks the transaction id).

    Fresh socket each time: coturn 4.6.1 keeps per-client-address state, and a client
    whose first datagrams arrive while it is still starting can stay unanswered for good
    (seen here about once in 20 starts); a new source port is a new client."""
    try:
        answer = binding_request((HOST, port), timeout=0.05)
    except StunError:  # e.g. ECONNREFUSED before the server binds
        return False
    return answer is not None and answer.error is None


READY_PROBES = 3  # answered in a row: every listener thread is serving, not just the first


def wait_until_answering(running: Running, procs: Processes, timeout: float) -> None:
    port = running.server.port
    procs.wait_serving(
        running.server, lambda: all(binding_answered(port) for _ in range(READY_PROBES)),
        timeout, lambda: f"answered no Binding request on UDP port {port} within "
                         f"{timeout:.0f} s ({udp_sockets_on(port)} UDP socket(s) bound to it)",
        running.log_text, ALL)


def pin_all_threads(pid: int, cpu: int) -> int:
    """Pin every thread of `pid` (spawn pinned only the main one: threads started before
    that inherit nothing). Returns the thread count."""
    tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    for tid in tids:
        try:
            pin(tid, cpu)
        except ProcessLookupError:
            pass  # a thread that ended meanwhile needs no pinning
    return len(tids)


def udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to `port` (coturn opens one per relay thread with
    SO_REUSEPORT; the kernel spreads clients over them by address hash)."""
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return sum(1 for line in lines if int(line.split()[1].rsplit(":", 1)[1], 16) == port)


def start(procs: Processes, peer: Peer, timeout: float) -> Running:
    if shutil.which(peer.argv[0]) is None and not os.path.exists(peer.argv[0]):
        raise BenchError(f"{peer.argv[0]!r} not found for server {peer.name!r}: install it "
                         f"(coturn: apt-get install coturn), or leave it out with --servers")
    workdir = tempfile.TemporaryDirectory(prefix="stunbench-")
    running = Running(procs.launch(peer, free_udp_port(HOST), host=HOST, dir=workdir.name),
                      workdir)
    try:
        wait_until_answering(running, procs, timeout)
        running.threads = pin_all_threads(running.server.pid, SERVER_CPU)
        running.udp_sockets = udp_sockets_on(running.server.port)
    except BaseException:
        stop(procs, running)
        raise
    return running


def stop(procs: Processes, running: Running) -> None:
    procs.stop(running.server.proc)
    running.server.stderr.close()
    running.workdir.cleanup()


# -- one run ---------------------------------------------------------------------------------

def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def task_seconds_on(cpu: int) -> float:
    """user + nice + system time spent on `cpu` so far, all processes (/proc/stat; softirq
    and idle excluded, so it is comparable with a process's utime + stime)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system = (int(x) for x in line.split()[1:4])
            return (user + nice + system) / os.sysconf("SC_CLK_TCK")
    return 0.0


def run_loadgen(procs: Processes, loadgen: Path, running: Running,
                args: argparse.Namespace) -> dict:
    server = running.server
    argv = [str(loadgen), "-h", HOST, "-p", str(server.port), "-n", str(args.window),
            "-s", str(args.sockets), "-d", str(args.duration), "-w", str(args.warmup),
            "-r", str(args.resend_ms)]
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    on_server_cpu, on_loadgen_cpu = task_seconds_on(SERVER_CPU), task_seconds_on(LOADGEN_CPU)
    children0 = _children_cpu_seconds()
    result = harness.run_loadgen(procs, argv, server.peer.name, args.warmup + args.duration,
                                 lambda: f"  server log:\n{running.log_text()}")
    wall, used = time.monotonic() - t0, server.cpu_seconds() - cpu0
    # Near 100 %, the server is the bottleneck; well below, the generator or other work is.
    result["server_cpu"] = used / wall
    # Other processes on the server's CPU take turns with the server: on a shared box this
    # says how much of the CPU the server did not get.
    result["other_on_server_cpu"] = max(
        0.0, (task_seconds_on(SERVER_CPU) - on_server_cpu - used) / wall)
    # The same for the generator's CPU: a descheduled generator leaves the server idle.
    loadgen_used = _children_cpu_seconds() - children0  # only the generator was reaped
    result["other_on_loadgen_cpu"] = max(
        0.0, (task_seconds_on(LOADGEN_CPU) - on_loadgen_cpu - loadgen_used) / wall)
    # Responses per second of server CPU: the cost per answer, steadier than responses/s
    # when other work shares the CPU (the server is simply descheduled more often).
    result["rps_per_cpu"] = result["rps"] / result["server_cpu"] if used > 0 else None
    result["server_threads"] = running.threads
    result["server_udp_sockets"] = running.udp_sockets
    return result


def measure(procs: Processes, peer: Peer, loadgen: Path, args: argparse.Namespace) -> dict:
    """One run: a fresh server process, one load generator run against it, stop."""
    running = start(procs, peer, args.start_timeout)
    try:
        return run_loadgen(procs, loadgen, running, args)
    finally:
        stop(procs, running)


# -- the report ------------------------------------------------------------------------------

def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Median of each figure over the rounds (robust to one disturbed run); the counts of
    resends and rejected answers are totals."""
    return {name: summarize_server(rs) for name, rs in runs.items()}


def summarize_server(rs: list[dict]) -> dict:
    rps = [r["rps"] for r in rs]
    return {**harness.medians(rs, ("rps", "p50_us", "p99_us", "server_cpu",
                                   "other_on_server_cpu", "other_on_loadgen_cpu")),
            "rps_per_cpu": statistics.median(r["rps_per_cpu"] or 0 for r in rs),
            "server_threads": max(r["server_threads"] for r in rs),
            "server_udp_sockets": max(r["server_udp_sockets"] for r in rs),
            "spread": harness.spread(rps),
            "per_round_rps": rps,
            "resent": sum(r["resent"] for r in rs),
            "unmatched": sum(r["unmatched"] for r in rs),
            "invalid": sum(r["invalid"] for r in rs)}


def ratio(summary: dict[str, dict], key: str = "rps") -> dict:
    return harness.target_ratio(summary, "netsprint", "coturn", TARGET, key)


def coturn_version() -> str | None:
    if shutil.which("turnserver") is None:
        return None
    out = subprocess.run(["turnserver", "--version"], capture_output=True, text=True)
    return (out.stdout.strip() or out.stderr.strip()).splitlines()[-1] or None


def print_report(console: Console, report: dict) -> None:
    m, prm = report["machine"], report["params"]
    console.print(f"[bold]STUN benchmark[/] {report['date']}  ·  Python {m['python']}  ·  "
                  f"coturn {m['coturn']}  ·  kernel {m['kernel']}  ·  {m['cpu']} "
                  f"({m['cores']} cores)")
    console.print(f"servers pinned to CPU {SERVER_CPU} (every thread), load generator (C, "
                  f"sendmmsg/recvmmsg) to CPU {LOADGEN_CPU}.  {prm['window']} Binding "
                  f"requests outstanding over {prm['sockets']} socket(s), {prm['duration']} s "
                  f"(+{prm['warmup']} s warm-up) × {prm['rounds']} interleaved rounds, "
                  f"median shown.")
    table = harness.new_table(None, "server", "resp/s", "p99 µs", "spread", "CPU", "other",
                              "per CPU-s", "rs/rej")
    for name, s in report["summary"].items():
        rejected = s["unmatched"] + s["invalid"]
        table.add_row(name, f"{s['rps']:,.0f}", f"{s['p99_us']:,.0f}", f"{s['spread']:.0%}",
                      f"{s['server_cpu']:.0%}",
                      f"{s['other_on_server_cpu']:.0%}/{s['other_on_loadgen_cpu']:.0%}",
                      f"{s['rps_per_cpu']:,.0f}",
                      f"{s['resent']:,}/" + (f"[red]{rejected:,}[/]" if s["invalid"]
                                             else f"{rejected:,}"))
    console.print(table)
    console.print("spread: (max − min) ÷ median over the rounds; CPU: the server's CPU time ÷ "
                  "wall time (near 100 %: the server is the bottleneck); other: CPU time other "
                  "processes took on the server's / the generator's CPU (above a few %: a "
                  "shared box, the figures are low); per CPU-s: responses per second of "
                  "server CPU time; "
                  f"rs/rej: requests resent (unanswered for {prm['resend_ms']} ms) / answers "
                  "not counted (late duplicates, or invalid: red). p50 latency is in --json "
                  "(with a fixed window it is window ÷ responses/s).", style="dim")
    for name, s in report["summary"].items():
        console.print(f"{name}: {s['server_threads']} thread(s), {s['server_udp_sockets']} "
                      f"UDP socket(s) on its port; per round "
                      + ", ".join(f"{r / 1000:.1f}k" for r in s["per_round_rps"]), style="dim")
    harness.warn_if_busy(console, m)
    # Three decimals: 0.8995 printed as "0.90 ... not met" would read as a bug.
    harness.print_ratio(console, "netsprint / coturn", report["ratio"], decimals=3)
    if report["ratio"]["value"] is not None:
        per_cpu = report["ratio_per_cpu"]["value"]
        if per_cpu is not None:
            console.print(f"  per second of server CPU: {per_cpu:.2f} (the cost per answer; "
                          f"steadier than responses/s on a shared box)", style="dim")


# -- main ------------------------------------------------------------------------------------

def run(args: argparse.Namespace, console: Console) -> dict:
    harness.require_two_cpus()
    loadgen = compile_c("stun_loadgen")
    machine = harness.machine_info(coturn=coturn_version())  # before any server starts
    chosen = [SERVERS[name] for name in args.servers]
    procs = Processes()
    try:
        for peer in chosen:  # a broken server fails now, not minutes in
            stop(procs, start(procs, peer, args.start_timeout))
        with harness.progress_bar(console) as progress:
            runs = harness.run_rounds(chosen, args.rounds,
                                      lambda peer: measure(procs, peer, loadgen, args), progress)
    finally:
        procs.stop_all()
    summary = summarize(runs)
    return {**harness.report_head("bench/stun.py", machine, args,
                                  ("window", "sockets", "duration", "warmup", "rounds",
                                   "resend_ms", "servers")),
            "summary": summary, "ratio": ratio(summary),
            "ratio_per_cpu": ratio(summary, "rps_per_cpu"), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return harness.run_bench("STUN benchmark", args, lambda console: run(args, console),
                             print_report)


if __name__ == "__main__":
    sys.exit(main())
