"""Load opensnoop.bpf.c, decode its ring-buffer records, read its per-process read(2) bytes.

`decode(raw)` is pure (no bcc, no root): it turns one `struct open_event` (opensnoop.h) into
an `OpenEvent`. `OpenSnoop` owns the loaded program and its three attachments.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from netsprint.ebpf.loader import AS_ROOT, BpfProgram
from netsprint.ebpf.records import RingTracer, c_bytes, c_text, read_record, ring_pages_cflag
from netsprint.errors import DecodeError

HERE = Path(__file__).parent
SOURCE = HERE / "opensnoop.bpf.c"
HEADER = HERE / "opensnoop.h"
COMM_LEN = 16        # NETSPRINT_COMM_LEN
PATH_LEN = 256       # NETSPRINT_OPEN_PATH_LEN
DEFAULT_RING_PAGES = 64
TRACEPOINTS = (("syscalls:sys_enter_openat", "ns_open_enter"),
               ("syscalls:sys_exit_openat", "ns_open_exit"),
               ("syscalls:sys_exit_read", "ns_read_exit"))


class OpenEventStruct(ctypes.Structure):
    """ctypes mirror of `struct open_event` (opensnoop.h); a test checks it against gcc."""

    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("flags", ctypes.c_int32),
        ("ret", ctypes.c_int64),
        ("comm", ctypes.c_uint8 * COMM_LEN),
        ("filename", ctypes.c_uint8 * PATH_LEN),
    ]


EVENT_SIZE = ctypes.sizeof(OpenEventStruct)


class OpenEventDecodeError(DecodeError):
    """A ring-buffer record too short to be a `struct open_event`."""


# The access mode is a 2-bit value, not a flag bit (O_RDONLY is 0).
_ACCESS_MODES = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
# O_TMPFILE contains O_DIRECTORY's bit and O_SYNC contains O_DSYNC's: wider values first, so
# the wide name takes its bits before the narrow one could. (O_LARGEFILE is 0 in user space
# on 64-bit Linux: skipped.)
_FLAG_BITS = sorted(((getattr(os, name), name) for name in (
    "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DSYNC", "O_SYNC",
    "O_DIRECT", "O_LARGEFILE", "O_DIRECTORY", "O_NOFOLLOW", "O_NOATIME", "O_CLOEXEC", "O_PATH",
    "O_TMPFILE") if getattr(os, name, 0)), key=lambda item: -item[0].bit_count())


def describe_flags(flags: int) -> str:
    """`os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC` -> "O_WRONLY|O_CREAT|O_CLOEXEC"."""
    names = [_ACCESS_MODES.get(flags & os.O_ACCMODE, f"O_ACCMODE={flags & os.O_ACCMODE}")]
    rest = flags & ~os.O_ACCMODE
    for bit, name in _FLAG_BITS:
        if rest & bit == bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names)


@dataclass(frozen=True)
class OpenEvent:
    """One finished openat(2): who called it, on what, and what it returned."""

    timestamp: float   # seconds on CLOCK_MONOTONIC (the clock of time.monotonic())
    pid: int
    tid: int
    uid: int
    comm: str
    flags: int
    ret: int           # the new fd, or -errno
    filename: str

    @property
    def ok(self) -> bool:
        return self.ret >= 0

    @property
    def fd(self) -> int | None:
        return self.ret if self.ret >= 0 else None

    @property
    def errno(self) -> int:
        """0 on success, else the positive errno (2 for ENOENT)."""
        return -self.ret if self.ret < 0 else 0

    @property
    def errno_name(self) -> str:
        """"" on success, else the symbolic name ("ENOENT")."""
        if self.ret >= 0:
            return ""
        return errno.errorcode.get(-self.ret, f"E{-self.ret}")

    @property
    def flag_names(self) -> str:
        return describe_flags(self.flags)


def decode(raw: bytes) -> OpenEvent:
    """One ring-buffer record (`struct open_event`) -> `OpenEvent`.

    Raises `OpenEventDecodeError` when `raw` is shorter than the struct."""
    record = read_record(OpenEventStruct, raw, OpenEventDecodeError)
    return OpenEvent(
        timestamp=record.ts_ns / 1e9,
        pid=record.pid,
        tid=record.tid,
        uid=record.uid,
        comm=c_text(record.comm),
        flags=record.flags,
        ret=record.ret,
        # os.fsdecode keeps undecodable bytes (surrogateescape), as os.listdir would
        filename=os.fsdecode(c_bytes(record.filename)),
    )


def build_cflags(pid: int | None, ring_pages: int) -> list[str]:
    """The -D flags for opensnoop.bpf.c; the kernel wants a power-of-two ring of whole pages."""
    flags = [ring_pages_cflag(ring_pages)]
    if pid is not None:
        flags.append(f"-DNETSPRINT_TGID={int(pid)}")
    return flags


class OpenSnoop(RingTracer[OpenEvent]):
    """Owns the loaded opensnoop program (three tracepoint attachments, its ring buffer and
    maps) and the events decoded but not yet handed out by `poll`.

    `pid`: trace only that process (compiled in, so the kernel filters: no record is made
    for other processes). `ring_pages`: ring-buffer size in 4 KiB pages (power of two); a full
    buffer drops records and counts them in `lost_events`."""

    def __init__(self, pid: int | None = None, *, ring_pages: int = DEFAULT_RING_PAGES,
                 run_as: str = AS_ROOT) -> None:
        self.pid = pid
        program = BpfProgram(SOURCE, cflags=build_cflags(pid, ring_pages),
                             name="opensnoop", run_as=run_as)
        super().__init__(program, decode)

    def _attach(self) -> None:
        for tracepoint, fn_name in TRACEPOINTS:
            self.program.attach_tracepoint(tracepoint, fn_name)

    def read_bytes(self) -> dict[int, int]:
        """pid -> bytes its read(2) calls returned since the program was loaded."""
        return {int(k.value): int(v.value) for k, v in self.program["read_bytes"].items()}

    def clear_read_bytes(self) -> None:
        self.program["read_bytes"].clear()


def for_pid(events: Iterable[OpenEvent], pid: int) -> list[OpenEvent]:
    """The events of one process, in arrival order."""
    return [e for e in events if e.pid == pid]
