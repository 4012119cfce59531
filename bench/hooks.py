"""What the agent's per-segment hook costs: nanoseconds per request-reply, probes on vs off.

    sudo .venv/bin/python bench/hooks.py [--round-trips 30000] [--rounds 15] [--json]

bench/agent.py answers the question that matters (echo requests/s with the agent vs
without), but on a shared VM its rounds scatter by more than the few percent it must tell
apart. This one takes the scheduler, the server and the load generator out: one thread
(bench/pingpong.c) writes a 64-byte request and reads it on the other end of a loopback
TCP connection, then the reply back, so every nanosecond is the kernel's. One of the
agent's three tracepoints runs on every such round trip, twice (tcp_probe, once per received
segment); the other two only at connect and close, and its iterator only when it is read.

Sides, one batch each per round, in rotating order, probes attached just for their batch:
  no-probes      nothing attached
  tracepoints    tcp_probe as a tracepoint, a program that returns at once
  raw            tcp_probe as a raw tracepoint (no event record), a program that returns at once
  agent          the agent's own tcp_probe program (netsprint.agent.probes, loaded once),
                 attached as the agent attaches it (raw, BTF-typed: plain loads from tcp_sock)
The figure per side is its fastest batch, as `timeit` reports its best: interference on a
shared machine only ever slows a batch down. The ratio: no-probes ÷ agent ns per round trip
(the round trips/s the agent leaves, as in bench/agent.py).

Then, after the timed batches, one more batch each for "raw" and "agent" with the kernel's
BPF run-time statistics on (BPF_ENABLE_STATS, off again when its fd closes): nanoseconds
per run of each program, so the agent's cost splits into the empty program's floor and
what each body adds. The statistics read the clock twice per run, so these runs are not
timed. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
from pathlib import Path

from rich.console import Console

import harness
from harness import new_table
from peers import BENCH, LOADGEN_CPU, BenchError, Peer, compile_c

HOT = {  # tracepoint -> the bench's empty program suffix
    "tcp:tcp_probe": "probe",
}
SIDES = ("no-probes", "tracepoints", "raw", "agent")
STATS_SIDES = ("raw", "agent")
BPF_ENABLE_STATS, BPF_STATS_RUN_TIME = 32, 0  # include/uapi/linux/bpf.h


class _EnableStatsAttr(ctypes.Structure):
    """union bpf_attr for BPF_ENABLE_STATS."""

    _fields_ = [("type", ctypes.c_uint32)]


class RunTimeStats:
    """The kernel counts run_cnt and run_time_ns per program while the fd BPF_ENABLE_STATS
    returns is open (kernel >= 5.8), and stops when it closes, even if this process dies."""

    def __enter__(self) -> RunTimeStats:
        from netsprint.ebpf.loader import bpf_syscall

        try:
            self.fd = bpf_syscall(BPF_ENABLE_STATS, _EnableStatsAttr(BPF_STATS_RUN_TIME))
        except OSError as exc:
            raise BenchError(f"BPF_ENABLE_STATS: {exc.strerror}") from exc
        return self

    def __exit__(self, *exc_info) -> None:
        os.close(self.fd)


def program_counters(fd: int) -> tuple[int, int]:
    """(run_cnt, run_time_ns) of a loaded program."""
    from netsprint.ebpf.loader import program_fdinfo

    numbers = program_fdinfo(fd)
    return numbers.get("run_cnt", 0), numbers.get("run_time_ns", 0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--round-trips", type=int, default=30_000, help="round trips per batch")
    p.add_argument("--rounds", type=int, default=15, help="batches per side")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


class Hooks:
    """Owns the empty programs and the agent's probes; attaches one side's hooks at a
    time. The agent's probes are loaded before the ping-pong connects, so its sockets are
    ones the agent saw open (the common case), then its hot tracepoint is detached
    until the agent's batches."""

    def __init__(self) -> None:
        from bcc import BPF

        from netsprint.agent.probes import TRACEPOINTS, AgentProbes

        self.empty = BPF(src_file=str(BENCH / "hooks.bpf.c"))
        self.agent = AgentProbes()
        # the agent's hot programs, BTF-typed raw tracepoints as AgentProbes attaches them
        self.agent_hot = {TRACEPOINTS[tp]: self.agent.program.btf_tracepoints[TRACEPOINTS[tp]]
                          for tp in HOT}
        for program in self.agent_hot.values():
            program.detach()

    def _hooks(self, side: str) -> list[tuple[str, str, bool]]:
        """(tracepoint, empty function name, raw?) of an empty-program side's hooks."""
        if side in ("no-probes", "agent"):
            return []
        raw = side == "raw"
        prefix = "ns_hook_raw_" if raw else "ns_hook_tp_"
        return [(tp, prefix + suffix, raw) for tp, suffix in HOT.items()]

    def _attach(self, tracepoint: str, fn: str, *, raw: bool, attach: bool) -> None:
        name = tracepoint.partition(":")[2] if raw else tracepoint
        if attach and raw:
            self.empty.attach_raw_tracepoint(tp=name.encode(), fn_name=fn.encode())
        elif attach:
            self.empty.attach_tracepoint(tp=name.encode(), fn_name=fn.encode())
        elif raw:
            self.empty.detach_raw_tracepoint(name.encode())
        else:
            self.empty.detach_tracepoint(name.encode())

    def program_fds(self, side: str) -> dict[str, int]:
        """Program name -> fd of a side's hooks."""
        if side == "agent":
            return {name: program.prog_fd for name, program in self.agent_hot.items()}
        return {fn: self.empty.funcs[fn.encode()].fd for _tp, fn, _raw in self._hooks(side)}

    def attach(self, side: str) -> None:
        if side == "agent":
            for program in self.agent_hot.values():
                program.attach()
        for tracepoint, fn, raw in self._hooks(side):
            self._attach(tracepoint, fn, raw=raw, attach=True)

    def detach(self, side: str) -> None:
        if side == "agent":
            for program in self.agent_hot.values():
                program.detach()
        for tracepoint, fn, raw in self._hooks(side):
            self._attach(tracepoint, fn, raw=raw, attach=False)

    def close(self) -> None:
        self.empty.cleanup()
        self.agent.close()  # bcc's cleanup detaches whatever is attached at the time


class PingPong:
    """Owns one bench/pingpong process, pinned to the load generator's CPU."""

    def __init__(self, binary: Path, round_trips: int, batches: int) -> None:
        self.proc = subprocess.Popen(["taskset", "-c", str(LOADGEN_CPU), str(binary),
                                      str(round_trips), str(batches)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise BenchError(f"pingpong did not start (exit status {self.proc.wait()})")

    def batch(self) -> float:
        """One batch; nanoseconds per round trip."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"pingpong exited ({self.proc.wait()})")
        return float(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run(args: argparse.Namespace, console: Console) -> dict:
    if os.geteuid() != 0:
        raise BenchError("attaching probes needs root (sudo .venv/bin/python bench/hooks.py)")
    harness.require_two_cpus()
    binary = compile_c("pingpong")
    machine = harness.machine_info()
    hooks = Hooks()
    pingpong = None
    try:
        pingpong = PingPong(binary, args.round_trips, args.rounds * len(SIDES) + len(STATS_SIDES))

        def measure(side: Peer) -> dict:
            hooks.attach(side.name)
            try:
                return {"ns_per_round_trip": pingpong.batch()}
            finally:
                hooks.detach(side.name)

        with harness.progress_bar(console) as progress:
            runs = harness.run_rounds([Peer(name, ()) for name in SIDES], args.rounds,
                                      measure, progress)
        per_program = program_run_times(hooks, pingpong, measure)
    finally:
        if pingpong:
            pingpong.stop()
        hooks.close()
    report = summarize(harness.report_head("bench/hooks.py", machine, args,
                                           ("round_trips", "rounds")), runs)
    return {**report, "per_program": per_program}


def program_run_times(hooks: Hooks, pingpong: PingPong, measure) -> dict[str, dict]:
    """One untimed batch per STATS_SIDES side with run-time statistics on: runs and ns per
    run of each of its programs (the programs only run while their side is attached)."""
    result = {}
    with RunTimeStats():
        for side in STATS_SIDES:
            fds = hooks.program_fds(side)
            before = {name: program_counters(fd) for name, fd in fds.items()}
            measure(Peer(side, ()))
            for name, fd in fds.items():
                runs, ns = (now - then for now, then in zip(program_counters(fd), before[name]))
                result[name] = {"side": side, "runs": runs, "ns_per_run": ns / runs if runs else 0.0}
    return result


def summarize(head: dict, runs: dict[str, list[dict]]) -> dict:
    best = {name: min(r["ns_per_round_trip"] for r in rs) for name, rs in runs.items()}
    summary = {name: {"best_ns": best[name],
                      "median_ns": statistics.median(r["ns_per_round_trip"] for r in rs),
                      "extra_ns": best[name] - best["no-probes"],
                      "rate_ratio": best["no-probes"] / best[name]}
               for name, rs in runs.items()}
    return {**head, "summary": summary, "runs": runs}


def print_report(console: Console, report: dict) -> None:
    m, prm = report["machine"], report["params"]
    console.print(f"[bold]agent hook cost[/] {report['date']}  ·  kernel {m['kernel']}  ·  "
                  f"{m['cpu']} ({m['cores']} cores)  ·  {prm['round_trips']:,} round trips "
                  f"of 64 B per batch, {prm['rounds']} batches per side, best shown")
    table = new_table(None, "side", "ns/round trip", "median", "extra ns", "rate vs none")
    for name, s in report["summary"].items():
        table.add_row(name, f"{s['best_ns']:,.0f}", f"{s['median_ns']:,.0f}",
                      f"{s['extra_ns']:+,.0f}", f"{s['rate_ratio']:.3f}")
    console.print(table)
    harness.warn_if_busy(console, m)
    programs = new_table("per program, one more batch with BPF run-time statistics on",
                         "side", "program", "runs", "ns/run")
    for name, p in report["per_program"].items():
        programs.add_row(p["side"], name, f"{p['runs']:,}", f"{p['ns_per_run']:,.0f}")
    console.print(programs)
    agent, floor = report["summary"]["agent"], report["summary"]["raw"]
    console.print(f"agent / no-probes round trips/s = {agent['rate_ratio']:.3f}; attaching "
                  f"empty raw tracepoints alone gives {floor['rate_ratio']:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return harness.run_bench("hook benchmark", args, lambda console: run(args, console),
                             print_report)


if __name__ == "__main__":
    sys.exit(main())
