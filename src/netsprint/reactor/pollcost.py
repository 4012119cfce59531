"""How the cost of one poll grows with the number of watched fds (week 1's plot).

Registers `n` idle pipes plus one readable pipe with a backend and times a zero-timeout
poll. select and poll hand the kernel every watched fd on every call; epoll keeps its
interest list in the kernel and returns only ready fds, so its cost follows the ready count.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable

from netsprint.reactor.poller import FD_SETSIZE, READABLE, make_poller


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def poll_cost_us(backend: str, idle: int, calls: int = 200, batches: int = 5) -> float | None:
    """Best-of-`batches` mean µs per poll with `idle` idle fds and one ready fd.

    None when the backend cannot watch that many (select's FD_SETSIZE).
    """
    raise_fd_limit(2 * idle + 64)
    pipes: list[tuple[int, int]] = []
    poller = make_poller(backend)
    try:
        for _ in range(idle + 1):
            pipes.append(os.pipe())  # inside the try: EMFILE halfway must not leak the rest
        if backend == "select" and max(read_end for read_end, _ in pipes) >= FD_SETSIZE:
            return None  # only the read ends are watched
        for read_end, _ in pipes:
            poller.register(read_end, READABLE)
        os.write(pipes[-1][1], b"!")
        best = float("inf")
        for _ in range(batches):
            started = time.perf_counter()
            for _ in range(calls):
                poller.poll(0)
            best = min(best, (time.perf_counter() - started) / calls)
        return best * 1e6
    finally:
        poller.close()
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)


def measure_poll_cost(sizes: Iterable[int], backends: Iterable[str] = ("select", "poll", "epoll"),
                      ) -> dict[str, list[tuple[int, float]]]:
    """{backend: [(idle fds, µs per poll), ...]}, leaving out sizes a backend cannot watch."""
    results: dict[str, list[tuple[int, float]]] = {}
    for backend in backends:
        points = [(n, poll_cost_us(backend, n)) for n in sizes]
        results[backend] = [(n, us) for n, us in points if us is not None]
    return results
