"""Load `tc_egress.bpf.c` on one interface's egress: per-port counters and a token bucket.

`TcEgress` owns the program, the clsact qdisc it adds and the filter on it. Pure parts:
`bucket_config(...)` (the struct the loader writes) and the ctypes mirrors.
"""

from __future__ import annotations

import ctypes
import socket
from dataclasses import dataclass
from pathlib import Path

from netsprint.ebpf.loader import AS_ROOT, BpfProgram, guarded, require_bpf
from netsprint.ebpf.tc.clsact import add_clsact, attach_filter, remove_clsact

SOURCE = Path(__file__).with_name("tc_egress.bpf.c")
HEADER = Path(__file__).with_name("tc_egress.h")
FUNCTION = "ns_tc_egress"
PROTOCOLS = {"udp": socket.IPPROTO_UDP, "tcp": socket.IPPROTO_TCP}
NS_PER_S = 1_000_000_000


class TcPortKey(ctypes.Structure):
    """struct tc_port_key: destination port (host order) and IP protocol."""

    _fields_ = [("port", ctypes.c_uint16), ("protocol", ctypes.c_uint8), ("pad", ctypes.c_uint8)]


class TcPortCounter(ctypes.Structure):
    """struct tc_port_counter: what left and what the rate limit dropped."""

    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("dropped_packets", ctypes.c_uint64), ("dropped_bytes", ctypes.c_uint64)]


class TcBucket(ctypes.Structure):
    """struct tc_bucket: the token bucket's configuration and state."""

    _fields_ = [("ns_per_token", ctypes.c_uint64), ("burst", ctypes.c_uint64),
                ("tokens", ctypes.c_uint64), ("last_refill_ns", ctypes.c_uint64),
                ("port", ctypes.c_uint16), ("protocol", ctypes.c_uint8),
                ("pad", ctypes.c_uint8 * 5)]


@dataclass(frozen=True)
class PortCount:
    """Egress traffic to one destination port, as the program counted it."""

    packets: int
    bytes: int
    dropped_packets: int
    dropped_bytes: int


def bucket_config(port: int, rate_per_s: float, burst: int, protocol: str = "udp") -> TcBucket:
    """A full bucket of `burst` tokens for `protocol` traffic to `port`, refilled at
    `rate_per_s` tokens a second (0: never refilled, a fixed budget of `burst` packets)."""
    if not 0 < port < 65536 or burst < 0 or rate_per_s < 0:
        raise ValueError("port 1..65535, burst >= 0 and rate_per_s >= 0")
    ns_per_token = round(NS_PER_S / rate_per_s) if rate_per_s else 0
    # last_refill_ns 0: the first packet "earns" a full bucket, capped at burst.
    return TcBucket(ns_per_token, burst, burst, 0, port, PROTOCOLS[protocol])


class TcEgress:
    """Owns one loaded `ns_tc_egress` program, the clsact qdisc it adds to `ifname` (inside
    `netns`, or this process's namespace when None) and the egress filter on it.

    `TcEgress("veth-a", netns=pair.netns("a"), limit=bucket_config(5002, 0.01, 5))`;
    `counters()`, `set_limit(bucket)`, `clear_limit()`, `close()` (or `with`): removes the
    qdisc (and with it the filter), then unloads.
    """

    def __init__(self, ifname: str, netns: str | None = None, limit: TcBucket | None = None,
                 run_as: str = AS_ROOT) -> None:
        self.ifname, self.netns = ifname, netns
        require_bpf(run_as=run_as, tracing=False, net_admin=True)
        # The qdisc first: an interface that already has one fails here, before a compile
        # that takes seconds.
        add_clsact(netns, ifname)
        try:
            self.program = BpfProgram(SOURCE, name="tc_egress", run_as=run_as, tracing=False,
                                      net_admin=True)
        except BaseException:
            remove_clsact(netns, ifname)
            raise
        self.program.on_close(lambda: remove_clsact(netns, ifname))
        try:
            if limit is not None:
                self.set_limit(limit)
            self._attach()
        except BaseException:
            self.program.close()
            raise

    def _attach(self) -> None:
        from bcc import BPF

        function = self.program.load_func(FUNCTION, BPF.SCHED_CLS)
        guarded(f"attaching {FUNCTION} to {self.ifname} egress",
                lambda: attach_filter(self.netns, self.ifname, function.fd, FUNCTION))

    def set_limit(self, bucket: TcBucket) -> None:
        """Rate-limit one port (replaces any earlier limit, starting with a full bucket)."""
        self.program["bucket"][ctypes.c_int(0)] = bucket

    def clear_limit(self) -> None:
        self.program["bucket"][ctypes.c_int(0)] = TcBucket()

    def bucket(self) -> TcBucket:
        """The bucket as the program left it (tokens, last refill)."""
        return self.program["bucket"][ctypes.c_int(0)]

    def counters(self) -> dict[tuple[str, int], PortCount]:
        """(protocol, destination port) -> what the program counted."""
        names = {number: name for name, number in PROTOCOLS.items()}
        return {(names.get(key.protocol, str(key.protocol)), int(key.port)):
                PortCount(int(c.packets), int(c.bytes), int(c.dropped_packets), int(c.dropped_bytes))
                for key, c in self.program["port_counts"].items()}

    def close(self) -> None:
        self.program.close()

    def __enter__(self) -> TcEgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
