"""Load hello.bpf.c (one event per execve(2)) and decode its ring-buffer records.

`decode(raw)` is pure (no bcc, no root): it turns one `struct exec_event` (hello.h) into an
`ExecEvent`. `HelloTracer` owns the loaded program, its one tracepoint attachment and the
events decoded but not yet handed out.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from netsprint.ebpf.loader import AS_ROOT, BpfProgram
from netsprint.ebpf.records import RingTracer, c_bytes, c_text, read_record, ring_pages_cflag
from netsprint.errors import DecodeError

HERE = Path(__file__).parent
SOURCE = HERE / "hello.bpf.c"
HEADER = HERE / "hello.h"
COMM_LEN = 16        # NETSPRINT_COMM_LEN
PATH_LEN = 256       # NETSPRINT_EXEC_PATH_LEN
DEFAULT_RING_PAGES = 64
TRACEPOINT = "syscalls:sys_enter_execve"
FN_NAME = "ns_hello_exec"


class ExecEventStruct(ctypes.Structure):
    """ctypes mirror of `struct exec_event` (hello.h); a test checks it against gcc."""

    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("filename_len", ctypes.c_int32),
        ("comm", ctypes.c_uint8 * COMM_LEN),
        ("filename", ctypes.c_uint8 * PATH_LEN),
    ]


EVENT_SIZE = ctypes.sizeof(ExecEventStruct)


class ExecEventDecodeError(DecodeError):
    """A ring-buffer record too short to be a `struct exec_event`."""


@dataclass(frozen=True)
class ExecEvent:
    """One execve(2) as its caller entered it (before the kernel loads the new program)."""

    timestamp: float   # seconds on CLOCK_MONOTONIC (the clock of time.monotonic())
    pid: int
    tid: int
    uid: int
    comm: str          # the caller's name: the new program's name only appears after the exec
    filename: str      # "" when the kernel could not read it (see filename_ok)
    filename_ok: bool


def decode(raw: bytes) -> ExecEvent:
    """One ring-buffer record (`struct exec_event`) -> `ExecEvent`.

    Raises `ExecEventDecodeError` when `raw` is shorter than the struct."""
    record = read_record(ExecEventStruct, raw, ExecEventDecodeError)
    return ExecEvent(
        timestamp=record.ts_ns / 1e9,
        pid=record.pid,
        tid=record.tid,
        uid=record.uid,
        comm=c_text(record.comm),
        # os.fsdecode keeps undecodable bytes (surrogateescape), as os.listdir would
        filename=os.fsdecode(c_bytes(record.filename)),
        filename_ok=record.filename_len > 0,
    )


class HelloTracer(RingTracer[ExecEvent]):
    """Owns the loaded hello program (one attachment to syscalls:sys_enter_execve, its ring
    buffer and maps) and the events decoded but not yet handed out by `poll`.

    `pid`: report only execs by that process id (None: every process). It lives in a BPF
    array the program reads on each event, so `tracer.pid = n` changes it without a recompile."""

    def __init__(self, pid: int | None = None, *, ring_pages: int = DEFAULT_RING_PAGES,
                 run_as: str = AS_ROOT) -> None:
        program = BpfProgram(SOURCE, cflags=[ring_pages_cflag(ring_pages)], name="hello",
                             run_as=run_as)
        self._initial_pid = pid
        super().__init__(program, decode)

    def _attach(self) -> None:
        self.pid = self._initial_pid
        self.program.attach_tracepoint(TRACEPOINT, FN_NAME)

    @property
    def pid(self) -> int | None:
        value = int(self.program["filter"][ctypes.c_int(0)].value)
        return value or None

    @pid.setter
    def pid(self, pid: int | None) -> None:
        self.program["filter"][ctypes.c_int(0)] = ctypes.c_uint32(pid or 0)

