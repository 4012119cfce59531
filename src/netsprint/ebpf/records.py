"""What every ring-buffer program's loader shares: reading a record into its ctypes mirror,
C strings and IP addresses out of fixed arrays, the ring-size flag, and `RingTracer`, the poll
loop.

Pure apart from `RingTracer`, which holds a loaded program.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import time
from typing import Callable, Generic, TypeVar

from netsprint.errors import DecodeError

S = TypeVar("S", bound=ctypes.Structure)
E = TypeVar("E")


def read_record(mirror: type[S], raw: bytes, error: type[DecodeError]) -> S:
    """`raw` as `mirror`; longer is fine (perf samples are padded to 8 bytes), shorter
    raises `error` with the length as its offset."""
    size = ctypes.sizeof(mirror)
    if len(raw) < size:
        raise error(f"a {mirror.__name__} record has {size} bytes, got {len(raw)}", len(raw))
    return mirror.from_buffer_copy(raw[:size])


def c_bytes(field) -> bytes:
    """A fixed char array up to its first NUL (the kernel NUL-terminates comm and paths)."""
    return bytes(field).split(b"\0", 1)[0]


def c_text(field) -> str:
    return c_bytes(field).decode(errors="replace")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_address(family: int, raw: bytes) -> IPAddress:
    """The address in a 16-byte field as the tracepoints fill it: AF_INET in the first 4
    bytes, otherwise all 16 (network byte order either way)."""
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(bytes(raw[:4]))
    return ipaddress.IPv6Address(bytes(raw[:16]))


def check_pages(name: str, pages: int) -> int:
    """`pages`, or ValueError: the kernel sizes ring and perf buffers in a power-of-two
    number of pages."""
    if pages < 1 or pages & (pages - 1):
        raise ValueError(f"{name} must be a power of two, got {pages}")
    return pages


def ring_pages_cflag(ring_pages: int) -> str:
    """The -D flag that sizes a program's BPF_RINGBUF_OUTPUT (NETSPRINT_RINGBUF_PAGES)."""
    return f"-DNETSPRINT_RINGBUF_PAGES={check_pages('ring_pages', ring_pages)}"


def lost_events(program) -> int:
    """lost[0]: the records a program's full ring buffer refused."""
    return int(program["lost"][ctypes.c_int(0)].value)


class RingTracer(Generic[E]):
    """Owns one loaded program (a `BpfProgram`, given by the subclass), its attachments and
    the events its ring buffer `RING` delivered but `poll` has not handed out yet.

    Subclasses attach in `_attach()`; a failure there (or opening the ring) closes the
    program, so nothing stays attached."""

    RING = "events"

    def __init__(self, program, decode: Callable[[bytes], E]) -> None:
        self.program = program
        self._decode = decode
        self._pending: list[E] = []
        try:
            program.open_ring_buffer(self.RING, self._on_record)
            self._attach()
        except BaseException:
            program.close()
            raise

    def _attach(self) -> None:
        """Attach the program's functions (the ring buffer is already open, so no event of
        the first moments is lost)."""

    def _on_record(self, raw: bytes) -> None:
        self._pending.append(self._decode(raw))

    def poll(self, timeout: float = 0.0) -> list[E]:
        """Wait up to `timeout` seconds for records; every event decoded since the last call."""
        self.program.poll(timeout)
        events, self._pending = self._pending, []
        return events

    def collect(self, seconds: float, step: float = 0.05,
                until: Callable[[list[E]], bool] | None = None) -> list[E]:
        """Poll for `seconds` (sooner once `until(events so far)` holds)."""
        deadline = time.monotonic() + seconds
        events: list[E] = []
        while (left := deadline - time.monotonic()) > 0:
            events += self.poll(min(step, left))
            if until is not None and until(events):
                break
        return events

    def drain(self, rounds: int = 3, timeout: float = 0.05) -> list[E]:
        """A few short polls: what is already in the ring once the caller's activity is done."""
        events: list[E] = []
        for _ in range(rounds):
            events += self.poll(timeout)
        return events

    @property
    def lost_events(self) -> int:
        """Records the ring buffer refused because it was full (each program's `lost` array)."""
        return lost_events(self.program)

    def close(self) -> None:
        self.program.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
