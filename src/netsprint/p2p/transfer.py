"""File transfer as records on the reliable stream: an offer, data chunks, an end.

A record is the payload of one frame (`netsprint.signaling.framing`, 4-byte length) on the
channel's byte stream; its first byte says what it is:

- b"F" offer: JSON {"name": str, "size": int, "sha256": 64 hex digits}
- b"D" chunk: the next raw bytes of the file
- b"E" end:   no body; the receiver now checks size and SHA-256

One transfer at a time per stream: the stream is ordered, so chunks need no offsets.
Chunks are sized so that a framed chunk fits one segment payload (`ChannelConfig.
segment_bytes`). `chat.decode_record` dispatches every record kind, chat lines included.

The receiver trusts nothing in an offer: the name must be a plain file name (no
directories, no "..", nothing absolute), an existing file is never replaced unless the
caller says so, and the file appears under its name only after size and hash check out
(until then it is a hidden ".part" file next to it, removed on failure).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from netsprint.errors import DecodeError, NetsprintError
from netsprint.p2p.channel import ChannelConfig
from netsprint.signaling.framing import HEADER_BYTES as FRAME_HEADER_BYTES

OFFER = b"F"
CHUNK = b"D"
END = b"E"
FILE_KINDS = (OFFER, CHUNK, END)
KIND_BYTES = 1
# A framed chunk record (length prefix + kind + data) fills one segment payload exactly.
DEFAULT_CHUNK_BYTES = ChannelConfig().segment_bytes - FRAME_HEADER_BYTES - KIND_BYTES
MAX_NAME_BYTES = 255  # NAME_MAX on Linux
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class RecordError(DecodeError):
    """A record on the stream that does not decode; `offset` is within the record."""


class TransferError(NetsprintError):
    """A file transfer that must not go on: unsafe name, existing file, wrong size or hash,
    a record out of place."""


@dataclass(frozen=True)
class FileOffer:
    name: str
    size: int
    sha256: str  # lowercase hex


@dataclass(frozen=True)
class FileChunk:
    data: bytes


@dataclass(frozen=True)
class FileEnd:
    pass


FileRecord = FileOffer | FileChunk | FileEnd


# -- codec ------------------------------------------------------------------------------------

def offer_record(offer: FileOffer) -> bytes:
    body = json.dumps({"name": offer.name, "size": offer.size, "sha256": offer.sha256},
                      separators=(",", ":"), ensure_ascii=False)
    return OFFER + body.encode()


def chunk_record(data: bytes) -> bytes:
    return CHUNK + data


def end_record() -> bytes:
    return END


def decode_file_record(record: bytes) -> FileRecord:
    """Parse a record whose first byte is one of FILE_KINDS; raises RecordError."""
    kind, body = record[:KIND_BYTES], record[KIND_BYTES:]
    if kind == CHUNK:
        return FileChunk(bytes(body))
    if kind == END:
        if body:
            raise RecordError("an end record has no body", KIND_BYTES)
        return FileEnd()
    if kind == OFFER:
        return _decode_offer(body)
    raise RecordError(f"{bytes(kind)!r} is not a file record kind", 0)


def _decode_offer(body: bytes) -> FileOffer:
    try:
        fields = json.loads(body.decode())
    except UnicodeDecodeError as exc:
        raise RecordError(f"offer is not UTF-8: {exc.reason}", KIND_BYTES + exc.start) from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"offer is not JSON: {exc.msg}", KIND_BYTES + exc.pos) from None
    if not isinstance(fields, dict) or set(fields) != {"name", "size", "sha256"}:
        raise RecordError("offer must be an object with exactly name, size, sha256",
                          KIND_BYTES)
    name, size, digest = fields["name"], fields["size"], fields["sha256"]
    if not isinstance(name, str):
        raise RecordError("offer name is not a string", KIND_BYTES)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RecordError("offer size is not a non-negative integer", KIND_BYTES)
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise RecordError("offer sha256 is not 64 lowercase hex digits", KIND_BYTES)
    return FileOffer(name, size, digest)


def safe_name(name: str) -> str:
    """`name` if it is a plain file name to create in a directory; TransferError if not.
    Refuses path traversal ("../x", "a/b", "/etc/passwd"), "." and "..", separators of
    either OS, NUL and control characters, and names longer than NAME_MAX."""
    if not name or name in (".", ".."):
        raise TransferError(f"refusing file name {name!r}")
    if "/" in name or "\\" in name or any(ord(ch) < 0x20 or ch == "\x7f" for ch in name):
        raise TransferError(f"refusing file name {name!r}: only a plain file name is accepted")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise TransferError(f"refusing file name longer than {MAX_NAME_BYTES} bytes")
    return name


# -- sending ------------------------------------------------------------------------------------

class FileSender:
    """Turns one file (bytes in memory, or a path read as it is sent) into records.
    Owns the source and its hash; does not own the channel: the caller frames the records
    and writes them (`records()` is lazy, so a large file is never read all at once)."""

    def __init__(self, name: str, data: bytes | str | os.PathLike, *,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be at least 1")
        self.chunk_bytes = chunk_bytes
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._data: bytes | None = bytes(data)
            self._path: Path | None = None
            size, digest = len(self._data), hashlib.sha256(self._data).hexdigest()
        else:
            self._data, self._path = None, Path(data)
            size, digest = _hash_file(self._path)
        self.offer = FileOffer(safe_name(name), size, digest)
        self.sent_bytes = 0

    def records(self) -> Iterator[bytes]:
        """Offer, chunks, end: each an unframed record."""
        yield offer_record(self.offer)
        for piece in self._chunks():
            self.sent_bytes += len(piece)
            yield chunk_record(piece)
        if self.sent_bytes != self.offer.size:
            raise TransferError(f"{self._path} changed while being sent: {self.sent_bytes} "
                                f"bytes, offered {self.offer.size}")
        yield end_record()

    @property
    def progress(self) -> float:
        return self.sent_bytes / self.offer.size if self.offer.size else 1.0

    def _chunks(self) -> Iterator[bytes]:
        if self._data is not None:
            for start in range(0, len(self._data), self.chunk_bytes):
                yield self._data[start:start + self.chunk_bytes]
            return
        assert self._path is not None
        with self._path.open("rb") as source:
            while piece := source.read(self.chunk_bytes):
                yield piece


def _hash_file(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


# -- receiving ----------------------------------------------------------------------------------

class FileReceiver:
    """Receives one offered file into `directory` (or into memory when it is None).
    Owns the partial file and the running hash; verifies size and SHA-256 at the end and
    only then gives the file its name. Any TransferError leaves no file behind."""

    def __init__(self, directory: str | os.PathLike | None = None, *,
                 overwrite: bool = False) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.overwrite = overwrite
        self.offer: FileOffer | None = None
        self.received_bytes = 0
        self.done = False
        self.failed: str | None = None      # why the transfer was abandoned
        self.path: Path | None = None       # the final file, once done (directory mode)
        self._hash = hashlib.sha256()
        self._memory = bytearray()
        self._part: BinaryIO | None = None

    @property
    def data(self) -> bytes:
        """The file's bytes in memory mode (directory is None)."""
        return bytes(self._memory)

    @property
    def progress(self) -> float:
        """Fraction of the offered bytes received, 0..1."""
        if self.offer is None:
            return 0.0
        if self.offer.size == 0:
            return 1.0 if self.done else 0.0
        return self.received_bytes / self.offer.size

    def feed(self, record: FileRecord) -> None:
        """Take the next file record (decoded); raises TransferError if it is out of place
        or breaks the offer's promises."""
        if self.done:
            raise TransferError("the transfer is already complete")
        if self.failed is not None:
            raise TransferError(f"the transfer already failed: {self.failed}")
        try:
            if isinstance(record, FileOffer):
                self._on_offer(record)
            elif self.offer is None:
                raise TransferError(f"{type(record).__name__} before any offer")
            elif isinstance(record, FileChunk):
                self._on_chunk(record.data)
            elif isinstance(record, FileEnd):
                self._on_end()
            else:
                raise TransferError(f"{type(record).__name__} is not a file record")
        except TransferError as exc:
            self.failed = str(exc)
            self._discard()
            raise

    def abandon(self, reason: str) -> None:
        """Give up on an unfinished transfer: the partial file is removed."""
        if not self.done and self.failed is None:
            self.failed = reason
            self._discard()

    def _on_offer(self, offer: FileOffer) -> None:
        if self.offer is not None:
            raise TransferError("a second offer during a transfer")
        safe_name(offer.name)
        self.offer = offer
        if self.directory is not None:
            self._refuse_existing(self.directory / offer.name)
            # Closed by _finish or _discard, not by a with-block: it outlives this call.
            self._part = tempfile.NamedTemporaryFile(
                dir=self.directory, prefix=f".{offer.name[:200]}.", suffix=".part",
                delete=False)

    def _on_chunk(self, data: bytes) -> None:
        assert self.offer is not None
        if self.received_bytes + len(data) > self.offer.size:
            raise TransferError(f"more than the offered {self.offer.size} bytes")
        self._hash.update(data)
        self.received_bytes += len(data)
        if self._part is not None:
            self._part.write(data)
        else:
            self._memory += data

    def _on_end(self) -> None:
        assert self.offer is not None
        if self.received_bytes != self.offer.size:
            raise TransferError(f"ended after {self.received_bytes} of {self.offer.size} bytes")
        digest = self._hash.hexdigest()
        if digest != self.offer.sha256:
            raise TransferError(f"SHA-256 mismatch: got {digest}, offered {self.offer.sha256}")
        if self._part is not None:
            self._finish()
        self.done = True

    def _finish(self) -> None:
        assert self._part is not None and self.directory is not None and self.offer
        target = self.directory / self.offer.name
        self._refuse_existing(target)  # it may have appeared during the transfer
        self._part.close()
        os.replace(self._part.name, target)
        self._part = None
        self.path = target

    def _refuse_existing(self, target: Path) -> None:
        if not self.overwrite and (target.exists() or target.is_symlink()):
            raise TransferError(f"{target} exists; not overwriting it")

    def _discard(self) -> None:
        if self._part is not None:
            self._part.close()
            Path(self._part.name).unlink(missing_ok=True)
            self._part = None
