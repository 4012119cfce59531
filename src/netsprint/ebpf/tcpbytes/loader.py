"""tcpbytes in user space: the C records mirrored in ctypes, a pure decoder, and the tracer.

The BPF side (`tcpbytes.bpf.c`) counts payload bytes per TCP socket on the
`sock:sock_send_length` / `sock:sock_recv_length` tracepoints, takes each connection's
4-tuple from `sock:inet_sock_set_state` when the handshake completes, keeps totals per
remote address in a second map, and emits one `struct tcpbytes_conn` on a ring buffer when
the kernel destroys the socket. `decode()` turns such a record (or a map value) into a
`ConnBytes`; `TcpBytesTracer` owns the loaded program.
"""

from __future__ import annotations

import ctypes
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from netsprint.ebpf.loader import AS_ROOT, BpfProgram
from netsprint.ebpf.records import RingTracer, c_text, ip_address, read_record
from netsprint.errors import DecodeError

HERE = Path(__file__).parent
SOURCE = HERE / "tcpbytes.bpf.c"
HEADER = HERE / "tcpbytes.h"

ACTIVE, PASSIVE = 1, 2  # TCPBYTES_ACTIVE / TCPBYTES_PASSIVE in tcpbytes.h
TRACEPOINTS = {  # tracepoint -> BPF function in tcpbytes.bpf.c
    "sock:inet_sock_set_state": "ns_tcpb_state",
    "sock:sock_send_length": "ns_tcpb_send",
    "sock:sock_recv_length": "ns_tcpb_recv",
    "tcp:tcp_destroy_sock": "ns_tcpb_destroy",
}


class ConnRecord(ctypes.Structure):
    """Mirror of `struct tcpbytes_conn` (tcpbytes.h)."""

    _fields_ = [
        ("sk", ctypes.c_uint64),
        ("start_ns", ctypes.c_uint64),
        ("end_ns", ctypes.c_uint64),
        ("sent_bytes", ctypes.c_uint64),
        ("received_bytes", ctypes.c_uint64),
        ("send_calls", ctypes.c_uint64),
        ("recv_calls", ctypes.c_uint64),
        ("saddr", ctypes.c_uint8 * 16),
        ("daddr", ctypes.c_uint8 * 16),
        ("pid", ctypes.c_uint32),
        ("sport", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("family", ctypes.c_uint16),
        ("direction", ctypes.c_uint8),
        ("established", ctypes.c_uint8),
        ("comm", ctypes.c_uint8 * 16),
    ]


class IpKey(ctypes.Structure):
    """Mirror of `struct tcpbytes_ip_key` (tcpbytes.h)."""

    _fields_ = [("addr", ctypes.c_uint8 * 16), ("family", ctypes.c_uint16), ("pad", ctypes.c_uint16)]


class IpTotalsRecord(ctypes.Structure):
    """Mirror of `struct tcpbytes_ip_totals` (tcpbytes.h)."""

    _fields_ = [("connections", ctypes.c_uint64), ("sent_bytes", ctypes.c_uint64),
                ("received_bytes", ctypes.c_uint64)]


class ConnRecordError(DecodeError):
    """A tcpbytes record that is too short or names an unknown address family."""


def ip_text(family: int, raw: bytes) -> str:
    """The address in `raw` (16 bytes, IPv4 in the first 4) as text."""
    return str(ip_address(family, raw))


@dataclass(frozen=True)
class ConnBytes:
    """One TCP connection as tcpbytes saw it: tuple, opener and the payload it moved.

    `end_ns` is 0 while the connection is open; times are CLOCK_MONOTONIC nanoseconds
    (bpf_ktime_get_ns), comparable with `time.monotonic_ns()`."""

    sk: int
    family: int
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    active: bool          # True: we connected; False: accepted from a listener
    pid: int
    comm: str
    sent_bytes: int
    received_bytes: int
    send_calls: int
    recv_calls: int
    start_ns: int
    end_ns: int

    @property
    def closed(self) -> bool:
        return self.end_ns != 0

    def duration_seconds(self, now_ns: int | None = None) -> float:
        """Seconds from ESTABLISHED to CLOSE, or to `now_ns` (default: now) while open."""
        end = self.end_ns or (now_ns if now_ns is not None else time.monotonic_ns())
        return max(0, end - self.start_ns) / 1e9

    def as_dict(self) -> dict:
        return {"local": f"{self.local_ip}:{self.local_port}", "remote": f"{self.remote_ip}:{self.remote_port}",
                "active": self.active, "pid": self.pid, "comm": self.comm,
                "sent_bytes": self.sent_bytes, "received_bytes": self.received_bytes,
                "send_calls": self.send_calls, "recv_calls": self.recv_calls,
                "duration_seconds": round(self.duration_seconds(), 6), "closed": self.closed}


@dataclass(frozen=True)
class IpTotals:
    """Totals for one remote address since the tracer was loaded."""

    connections: int
    sent_bytes: int
    received_bytes: int


RECORD_SIZE = ctypes.sizeof(ConnRecord)


def decode(raw: bytes) -> ConnBytes:
    """Decode one `struct tcpbytes_conn` (a ring-buffer record or a `conns` map value)."""
    rec = read_record(ConnRecord, raw, ConnRecordError)
    if rec.family not in (socket.AF_INET, socket.AF_INET6):
        raise ConnRecordError(f"unknown address family {rec.family}", ConnRecord.family.offset)
    return ConnBytes(
        sk=rec.sk, family=rec.family,
        local_ip=ip_text(rec.family, bytes(rec.saddr)), local_port=rec.sport,
        remote_ip=ip_text(rec.family, bytes(rec.daddr)), remote_port=rec.dport,
        active=rec.direction == ACTIVE, pid=rec.pid, comm=c_text(rec.comm),
        sent_bytes=rec.sent_bytes, received_bytes=rec.received_bytes,
        send_calls=rec.send_calls, recv_calls=rec.recv_calls,
        start_ns=rec.start_ns, end_ns=rec.end_ns)


def decode_ip_totals(key: bytes, value: bytes) -> tuple[str, IpTotals]:
    """One `per_ip` map entry -> (address text, totals)."""
    k, v = IpKey.from_buffer_copy(key), IpTotalsRecord.from_buffer_copy(value)
    return ip_text(k.family, bytes(k.addr)), IpTotals(v.connections, v.sent_bytes, v.received_bytes)


class TcpBytesTracer(RingTracer[ConnBytes]):
    """Owns the loaded tcpbytes program, its four tracepoint attachments and the records
    its ring buffer `closed` has delivered but `poll()` has not yet returned (each one a
    connection that closed).

    Sees only connections whose handshake completes while it is loaded."""

    RING = "closed"

    def __init__(self, *, run_as: str = AS_ROOT) -> None:
        program = BpfProgram(SOURCE, name="tcpbytes", run_as=run_as)
        super().__init__(program, decode)

    def _attach(self) -> None:
        for tracepoint, function in TRACEPOINTS.items():
            self.program.attach_tracepoint(tracepoint, function)

    def snapshot(self) -> list[ConnBytes]:
        """The connections still open, with their counts so far."""
        raws = (bytes(value) for value in self.program["conns"].values())
        # entries still in the handshake (or refused connects) have no tuple yet
        return [decode(raw) for raw in raws if ConnRecord.from_buffer_copy(raw).established]

    def per_ip(self) -> dict[str, IpTotals]:
        """Remote address -> totals since the tracer was loaded (closed and open connections)."""
        return dict(decode_ip_totals(bytes(k), bytes(v)) for k, v in self.program["per_ip"].items())
