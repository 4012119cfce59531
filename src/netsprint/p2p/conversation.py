"""Chat lines and files over one peer's channel: the application of weeks 6-7.

`Conversation` decodes the records a `Peer` delivers (`netsprint.p2p.chat.decode_record`),
keeps the lines, and runs one `FileReceiver` per incoming file; outgoing files are handed
to the peer as a lazy stream of records, so a large file is read as it is sent. Whether the
path is direct or relayed makes no difference here: both carry the same reliable stream.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from netsprint.p2p.chat import ChatLine, chat_record, decode_record
from netsprint.p2p.peer import Peer
from netsprint.p2p.transfer import (FileChunk, FileEnd, FileOffer, FileReceiver, FileSender,
                                    RecordError, TransferError)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedFile:
    name: str
    size: int
    sha256: str
    path: Path | None   # None in memory mode
    data: bytes | None  # the bytes in memory mode


class Conversation:
    """Owns the chat history and the file receivers of one peer; does not own the peer.

    `receive_dir=None` keeps received files in memory (tests, notebooks)."""

    def __init__(self, peer: Peer, *, receive_dir: str | os.PathLike | None = None,
                 on_line: Callable[[str], Any] | None = None,
                 on_file: Callable[[ReceivedFile], Any] | None = None) -> None:
        self.peer = peer
        self.receive_dir = receive_dir
        self.on_line = on_line or (lambda text: None)
        self.on_file = on_file or (lambda received: None)
        self.lines: list[str] = []
        self.files: list[ReceivedFile] = []
        self.errors: list[str] = []
        self.incoming: FileReceiver | None = None
        peer.on_record = self.record_received

    # -- sending ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.peer.send_record(chat_record(text))

    def send_file(self, source: bytes | str | os.PathLike, name: str | None = None) -> FileSender:
        """Queue a file (a path, or bytes with a `name`); returns its sender for progress."""
        if name is None:
            if isinstance(source, (bytes, bytearray)):
                raise ValueError("sending bytes needs a name")
            name = Path(source).name
        sender = FileSender(name, source)
        self.peer.send_records(sender.records())
        return sender

    # -- receiving --------------------------------------------------------------------------

    def record_received(self, raw: bytes) -> None:
        try:
            record = decode_record(raw)
            if isinstance(record, ChatLine):
                self.lines.append(record.text)
                self.on_line(record.text)
            else:
                self._file_record(record)
        except (RecordError, TransferError) as exc:
            # The stream stays usable: a bad record or a refused file loses that file only.
            self.errors.append(str(exc))
            log.warning("record refused: %s", exc)

    def _file_record(self, record: FileOffer | FileChunk | FileEnd) -> None:
        if isinstance(record, FileOffer) or self.incoming is None:
            if self.incoming is not None:
                # The sender gave up on that file (e.g. it changed while being sent) and
                # offers the next one: the unfinished one must not leave its .part behind.
                reason = f"{self.incoming.offer.name}: a new offer came before its end"
                self.incoming.abandon(reason)
                self.errors.append(reason)
                log.warning("file abandoned: %s", reason)
            self.incoming = FileReceiver(self.receive_dir)
        receiver = self.incoming
        try:
            receiver.feed(record)
        except TransferError:
            self.incoming = None
            raise
        if receiver.done:
            self.incoming = None
            offer = receiver.offer
            received = ReceivedFile(offer.name, offer.size, offer.sha256, receiver.path,
                                    receiver.data if self.receive_dir is None else None)
            self.files.append(received)
            self.on_file(received)
