"""Two peers in a NAT lab that chat and send a file, for the end-to-end P2P tests.

The matrix's runner (`netsprint.lab.matrix.PeerRun`, `run_pair`) runs each peer on its own
reactor in a thread that entered its node's namespace; `ChatRun` only changes what the
peers do once connected. The test's thread watches and acts on the lab (loss, a cut).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Callable

from netsprint.lab.matrix import LabServices, PeerRun, run_pair
from netsprint.lab.topology import NatLab
from netsprint.p2p.conversation import Conversation
from netsprint.p2p.peer import Peer
from netsprint.p2p.session import SessionConfig
from netsprint.reactor.loop import EventLoop

Finished = Callable[[Peer, Conversation], bool]


class ChatRun(PeerRun):
    """One peer that says hello, sends `payload` as a file (if any) and runs until
    `finished(peer, chat)`; keeps the lines and files it received (name, size, SHA-256)."""

    def __init__(self, peer_id: str, services: LabServices, config: SessionConfig,
                 timeout: float, *, payload: bytes | None, finished: Finished) -> None:
        super().__init__(peer_id, services, config, timeout)
        self.payload, self.finished = payload, finished
        self.chat: Conversation | None = None
        self.lines: list[str] = []
        self.files: list[tuple[str, int, str]] = []
        self.final_path: str | None = None
        self.received_bytes = 0  # of the incoming file so far: the test thread watches it
        self.done = threading.Event()

    def run(self, remote: str | None, wait_for: threading.Event | None) -> None:
        try:
            super().run(remote, wait_for)
        finally:
            self.done.set()

    def attach(self, peer: Peer) -> None:
        self.chat = Conversation(peer)  # before any record can arrive

    def exchange(self, loop: EventLoop, peer: Peer, deadline: float) -> None:
        chat = self.chat
        chat.say(f"hello from {self.peer_id}")
        if self.payload is not None:
            chat.send_file(self.payload, name="payload.bin")

        def progress() -> bool:
            if chat.incoming is not None:
                self.received_bytes = chat.incoming.received_bytes
            return self.finished(peer, chat) or peer.finished

        loop.run_until(progress, deadline - time.monotonic())
        self.lines = list(chat.lines)
        self.files = [(f.name, f.size, hashlib.sha256(f.data).hexdigest()) for f in chat.files]
        self.final_path = peer.session.path_kind


def _sender_done(peer: Peer, chat: Conversation) -> bool:
    return peer.all_acknowledged and len(chat.lines) >= 1


def _receiver_done(peer: Peer, chat: Conversation) -> bool:
    return len(chat.files) >= 1 and len(chat.lines) >= 1 and peer.all_acknowledged


def exchange(lab: NatLab, services: LabServices, payload: bytes, *,
             config: SessionConfig | None = None, cut_after_bytes: int | None = None,
             timeout: float = 90.0) -> tuple[ChatRun, ChatRun]:
    """peer-a connects to peer-b, both say hello, a sends `payload` to b as a file.

    With `cut_after_bytes`, the direct path is cut once b has received that much of it."""
    config = config or SessionConfig()
    a = ChatRun("a", services, config, timeout, payload=payload, finished=_sender_done)
    b = ChatRun("b", services, config, timeout, payload=None, finished=_receiver_done)

    def cut_when_far_enough() -> None:
        deadline = time.monotonic() + timeout
        while b.received_bytes < cut_after_bytes and not b.done.is_set():
            assert time.monotonic() < deadline, "the transfer never got far enough to cut"
            time.sleep(0.005)
        lab.cut_direct()

    run_pair(lab, a, b, while_running=None if cut_after_bytes is None else cut_when_far_enough)
    return a, b
