"""Idle memory per connection: how much a server's RSS grows for each idle TCP connection.

Owns the N client sockets it opens; the server process belongs to the caller's Processes.
RSS counts user-space memory only (the server's per-connection objects and buffers); the
kernel's socket memory is the same for every server and is not part of the figure.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from peers import BenchError, Peer, Processes

TARGET_BYTES = 1024
# Connect in chunks smaller than any sane listen backlog, and let the server accept each
# chunk before the next: a full accept queue drops SYNs, and the 1 s SYN retry would turn
# a few seconds' measurement into minutes.
CHUNK = 64


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled(read: Callable[[], int], deadline: float, interval: float = 0.1) -> int:
    """Read until two consecutive readings agree (or time is up); return the last one."""
    last = read()
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = read()
        if now == last:
            return now
        last = now
    return last


def open_idle(host: str, port: int) -> socket.socket:
    s = socket.create_connection((host, port), timeout=5)
    # Close with RST (linger 0): no TIME_WAIT left behind for thousands of sockets.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return s


def connect_all(host: str, port: int, pid: int, n: int, base_fds: int, deadline: float,
                socks: list[socket.socket], advance: Callable[[int], None]) -> None:
    """Open n connections into `socks`, waiting after each chunk until the server has
    accepted them all (its fd count = baseline + connections)."""
    while len(socks) < n:
        for _ in range(min(CHUNK, n - len(socks))):
            socks.append(open_idle(host, port))
        while fd_count(pid) < base_fds + len(socks):
            if time.monotonic() > deadline:
                raise BenchError(f"server accepted only {fd_count(pid) - base_fds} of "
                                 f"{len(socks)} connections in time")
            time.sleep(0.002)
        advance(len(socks))


def measure_idle(procs: Processes, peer: Peer, host: str, n: int, start_timeout: float,
                 budget: float, advance: Callable[[int], None]) -> dict:
    server = procs.start_server(peer, host, start_timeout)
    socks: list[socket.socket] = []
    deadline = time.monotonic() + budget
    try:
        base_fds = settled(lambda: fd_count(server.pid), deadline)
        before = settled(lambda: rss_bytes(server.pid), deadline)
        connect_all(host, server.port, server.pid, n, base_fds, deadline, socks, advance)
        after = settled(lambda: rss_bytes(server.pid), deadline, interval=0.2)
        return {"connections": n, "rss_before": before, "rss_after": after,
                "bytes_per_conn": (after - before) / n, "target_bytes": TARGET_BYTES}
    except (BenchError, OSError) as exc:
        return {"connections": n, "error": f"{exc} (stderr: {server.stderr_text(500)})"}
    finally:
        for s in socks:
            s.close()
        procs.stop(server.proc)
