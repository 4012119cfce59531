"""Length-prefixed frames over a TCP byte stream (half and sticky packets, 半包/粘包).

TCP keeps no message boundaries: one `recv` may hold half a message, or three and a bit.
Each frame is a 4-byte unsigned big-endian length N, then N bytes of payload, with
0 <= N <= max_frame_bytes. A length above the limit is fatal for the stream: the decoder
cannot tell where the next frame starts, so it fails for good (and says so again on every
later feed) instead of guessing.
"""

from __future__ import annotations

import struct

from netsprint.errors import DecodeError

MAX_FRAME_BYTES = 65536
HEADER_BYTES = 4
_LENGTH = struct.Struct(">I")


class FrameError(DecodeError):
    """The byte stream breaks the framing rules; `offset` is the stream offset of the
    offending length prefix. `frames` holds the complete frames the same `feed` found
    before it, so a server can still answer them before it closes."""

    def __init__(self, reason: str, offset: int = 0, frames: list[bytes] | None = None) -> None:
        super().__init__(reason, offset)
        self.frames = frames or []


def encode_frame(payload: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """The frame carrying `payload`: its length, then the payload itself."""
    if len(payload) > max_frame_bytes:
        raise FrameError(f"payload of {len(payload)} bytes exceeds the frame limit of "
                         f"{max_frame_bytes} bytes", 0)
    return _LENGTH.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frame payloads. Owns the bytes of the incomplete frame
    at the end of what it was fed (at most one frame and a header).

    O(n) over the stream: bytes are appended to one bytearray and read at an offset; the
    consumed prefix is dropped once per `feed`, never once per frame or per byte.
    """

    __slots__ = ("max_frame_bytes", "_buf", "_stream_offset", "_error")

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 0:
            raise ValueError("max_frame_bytes must be >= 0")
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._stream_offset = 0  # stream offset of _buf[0], for error offsets
        self._error: FrameError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Every frame that `data` completes, in order; a partial frame is kept."""
        if self._error is not None:
            raise FrameError(self._error.reason, self._error.offset)
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= HEADER_BYTES:
            length = _LENGTH.unpack_from(buf, pos)[0]
            if length > self.max_frame_bytes:
                # Checked on the header alone: an oversized body is never buffered.
                self._fail(length, self._stream_offset + pos, frames)
            body_start = pos + HEADER_BYTES
            if end - body_start < length:
                break
            frames.append(bytes(buf[body_start:body_start + length]))
            pos = body_start + length
        if pos:
            del buf[:pos]  # CPython moves the bytearray's start: no copy of the tail
            self._stream_offset += pos
        return frames

    def _fail(self, length: int, offset: int, frames: list[bytes]) -> None:
        self._error = FrameError(f"frame length {length} exceeds the limit of "
                                 f"{self.max_frame_bytes} bytes", offset)
        self._buf = bytearray()  # the rest of the stream is meaningless: free it
        raise FrameError(self._error.reason, offset, frames)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame waiting for the rest."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        return self._error is not None
