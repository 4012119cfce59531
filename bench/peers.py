"""The servers under test, the C programs they need, and their processes.

Owns: the named echo servers, compiling bench/*.c into bench/build/, starting a server
pinned to the server CPU (on a free port; for TCP, waiting until it listens), and stopping
every process it started (by PID). bench/stun.py names its own STUN servers and starts
them with the same Processes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

BENCH = Path(__file__).resolve().parent
BUILD = BENCH / "build"  # git-ignored

# On a 2-core box the server and the load generator must not share a core: otherwise the
# scheduler splits one core between them and the number measures the split, not the server.
SERVER_CPU = 0
LOADGEN_CPU = 1


class BenchError(Exception):
    """A failure the user can act on: the message says what happened and what to do."""


@dataclass(frozen=True)
class Peer:
    name: str
    argv: tuple[str, ...]  # "{host}" and "{port}" are filled in at start


def _peers() -> dict[str, Peer]:
    py, asyncio_echo = sys.executable, str(BENCH / "asyncio_echo.py")
    addr = ("--host", "{host}", "--port", "{port}")

    def on_asyncio(api: str, loop: str) -> tuple[str, ...]:
        return (py, asyncio_echo, "--api", api, "--loop", loop, *addr)

    argvs = {
        "netsprint": (py, "-m", "netsprint", "echo-server", *addr),  # one reactor, epoll
        "asyncio-protocol": on_asyncio("protocol", "asyncio"),
        "asyncio-streams": on_asyncio("streams", "asyncio"),
        "uvloop-protocol": on_asyncio("protocol", "uvloop"),
        "c-epoll": (str(BUILD / "c_echo"), "{host}", "{port}"),  # compile_c("c_echo") first
    }
    return {name: Peer(name, argv) for name, argv in argvs.items()}


PEERS = _peers()
ALL = tuple(PEERS)


def compile_c(name: str) -> Path:
    """gcc -O2 bench/NAME.c -> bench/build/NAME, skipped when the binary is newer than the
    source and every header in bench/ (the load generators share bench_common.h)."""
    src, out = BENCH / f"{name}.c", BUILD / name
    newest_input = max(p.stat().st_mtime for p in (src, *BENCH.glob("*.h")))
    if out.exists() and out.stat().st_mtime >= newest_input:
        return out
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc not found: the load generator and the C peer are compiled at "
                         "run time. Install it (apt-get install gcc) and run again.")
    BUILD.mkdir(exist_ok=True)
    # `#include "bench_common.h"` is looked up next to the source first: no -I needed.
    done = subprocess.run([gcc, "-O2", "-Wall", "-Wextra", "-o", str(out), str(src)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"gcc failed on {src.name}:\n{done.stderr}")
    return out


def not_serving(name: str, state: str, details: str, names: tuple[str, ...]) -> BenchError:
    """The error for a server that exited or never served: what happened, the command and
    its log (`details`), and how to leave it out of a run of the servers `names`."""
    return BenchError(f"server {name!r} {state}.\n{details}\n"
                      f"Fix it, or leave it out: --servers "
                      f"{','.join(n for n in names if n != name)}")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pin(pid: int, cpu: int) -> None:
    """Pin a started process. Done from here rather than in preexec_fn, which is unsafe once
    threads run (rich's progress bar has one); the child is pinned long before it serves."""
    if os.cpu_count() and os.cpu_count() > cpu:
        os.sched_setaffinity(pid, {cpu})


def is_listening(port: int) -> bool:
    """True once some socket LISTENs on `port` (read from /proc: no probe connection, so
    the server's fd count and memory stay untouched before the idle measurement)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


@dataclass
class Server:
    peer: Peer
    port: int
    proc: subprocess.Popen
    stderr: IO[str] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (all its threads)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stderr_text(self, limit: int = 4000) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-limit:].strip() or "(empty)"


class Processes:
    """Every process the benchmark starts, so a `finally` can stop them all by PID."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], cpu: int, **kwargs) -> subprocess.Popen:
        # A new session keeps Ctrl-C away from the children: the bench stops them itself,
        # in order, instead of every server printing its own KeyboardInterrupt traceback.
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.procs.append(proc)
        pin(proc.pid, cpu)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 3.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        """Stop every process still running. Ctrl-C and SIGTERM are held back until this is
        done (then delivered), so pressing Ctrl-C again cannot leave a server behind."""
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for proc in list(self.procs):
                self.stop(proc)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def launch(self, peer: Peer, port: int, **fill: str) -> Server:
        """Start `peer` on `port`, pinned to SERVER_CPU, its stderr kept in a temp file.
        The argv's "{port}" and every "{key}" of `fill` are filled in. It may not serve yet."""
        argv = [a.format(port=port, **fill) for a in peer.argv]
        err = tempfile.TemporaryFile("w+")
        proc = self.spawn(argv, SERVER_CPU, stdout=subprocess.DEVNULL, stderr=err,
                          cwd=BENCH.parent, text=True)
        return Server(peer, port, proc, err)

    def wait_serving(self, server: Server, ready: Callable[[], bool], timeout: float,
                     silent: Callable[[], str], log: Callable[[], str],
                     names: tuple[str, ...]) -> None:
        """Poll `ready()` until it says the server serves. When the server exits or `timeout`
        passes first, stop it and raise `not_serving` with `silent()` (what it failed to
        do, asked before the stop) and `log()`; `names` are the run's servers."""
        proc = server.proc
        deadline = time.monotonic() + timeout
        while not ready():
            exited = proc.poll() is not None
            if exited or time.monotonic() > deadline:
                state = f"exited with status {proc.returncode}" if exited else silent()
                self.stop(proc)
                raise not_serving(server.peer.name, state,
                                  f"  command: {shlex.join(proc.args)}\n  log:\n{log()}", names)
            time.sleep(0.02)

    def start_server(self, peer: Peer, host: str, timeout: float) -> Server:
        """Start an echo server on a free port; return once it listens."""
        server = self.launch(peer, free_port(host), host=host)
        self.wait_serving(server, lambda: is_listening(server.port), timeout,
                          lambda: f"did not listen on port {server.port} within {timeout:.0f} s",
                          server.stderr_text, ALL)
        return server

