"""Chat lines on the reliable stream, and the one dispatcher for every record kind.

A record is the payload of one frame on the channel's byte stream (4-byte length frames,
`netsprint.signaling.framing`); its first byte is its kind. This module owns kind b"C", a
chat line (UTF-8 text), and `decode_record`, which also hands the file-transfer kinds
(b"F", b"D", b"E") to `netsprint.p2p.transfer`.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsprint.p2p.transfer import (FILE_KINDS, KIND_BYTES, FileChunk, FileEnd, FileOffer,
                                    RecordError, decode_file_record)
from netsprint.signaling.framing import MAX_FRAME_BYTES

CHAT = b"C"
MAX_CHAT_BYTES = MAX_FRAME_BYTES - KIND_BYTES


@dataclass(frozen=True)
class ChatLine:
    text: str


Record = ChatLine | FileOffer | FileChunk | FileEnd


def chat_record(text: str) -> bytes:
    """The (unframed) record carrying one chat line."""
    encoded = text.encode()
    if len(encoded) > MAX_CHAT_BYTES:
        raise ValueError(f"a chat line is at most {MAX_CHAT_BYTES} bytes of UTF-8, "
                         f"not {len(encoded)}")
    return CHAT + encoded


def decode_record(record: bytes) -> Record:
    """Parse one record (a frame payload) of any kind; raises RecordError."""
    if not record:
        raise RecordError("empty record: no kind byte", 0)
    kind = record[:KIND_BYTES]
    if kind == CHAT:
        return ChatLine(_decode_text(record[KIND_BYTES:]))
    if kind in FILE_KINDS:
        return decode_file_record(record)
    raise RecordError(f"unknown record kind {bytes(kind)!r}", 0)


def _decode_text(body: bytes) -> str:
    try:
        return bytes(body).decode()
    except UnicodeDecodeError as exc:
        raise RecordError(f"chat line is not UTF-8: {exc.reason}", KIND_BYTES + exc.start) \
            from None
