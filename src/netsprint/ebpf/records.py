"""What every ring-buffer program's loader shares: reading a record into its ctypes mirror,
C strings out of fixed arrays, the ring-size flag, and `RingTracer`, the poll loop.

Pure apart from `RingTracer`, which holds a loaded program.
"""

from __future__ import annotations

import ctypes
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


def ring_pages_cflag(ring_pages: int) -> str:
    """The -D flag for a BPF_RINGBUF_OUTPUT size: the kernel wants a power-of-two number of
    pages."""
    if ring_pages < 1 or ring_pages & (ring_pages - 1):
        raise ValueError(f"ring_pages must be a power of two, got {ring_pages}")
    return f"-DNETSPRINT_RINGBUF_PAGES={ring_pages}"


def lost_events(program) -> int:
    """lost[0]: the records a program's full ring buffer refused."""
    return int(program["lost"][ctypes.c_int(0)].value)


class RingTracer(Generic[E]):
    """Owns one loaded program (a `BpfProgram`, given by the subclass) and the events its
    ring buffer `events` delivered but `poll` has not handed out yet."""

    RING = "events"

    def __init__(self, program, decode: Callable[[bytes], E]) -> None:
        self.program = program
        self._decode = decode
        self._pending: list[E] = []
        try:
            program.open_ring_buffer(self.RING, self._on_record)
        except BaseException:
            program.close()
            raise

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
