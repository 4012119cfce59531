"""Two peers in a NAT lab that chat and send a file, for the end-to-end P2P tests.

Each peer runs on its own reactor in a thread that entered its node's namespace
(`NatLab.thread`); the test's thread only watches and acts on the lab (loss, a cut).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from netsprint.lab.matrix import LabServices
from netsprint.lab.topology import NatLab
from netsprint.p2p.conversation import Conversation
from netsprint.p2p.peer import Peer
from netsprint.p2p.session import SessionConfig
from netsprint.reactor.loop import EventLoop


@dataclass
class PeerRecord:
    """What one peer saw, filled in by its thread."""

    states: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    files: list[tuple[str, int, str]] = field(default_factory=list)  # name, size, sha256 of data
    final_path: str | None = None
    received_bytes: int = 0
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    registered: threading.Event = field(default_factory=threading.Event)


def _run_peer(services: LabServices, peer_id: str, record: PeerRecord, *,
              remote: str | None, wait_for: threading.Event | None, payload: bytes | None,
              config: SessionConfig, finished: Callable[[Peer, Conversation], bool],
              timeout: float) -> None:
    loop = EventLoop()
    peer = None
    try:
        peer = Peer(loop, peer_id, services.signal, stun=services.stun, stun_alt=services.stun_alt,
                    session_config=config, on_state=lambda c: record.states.append(c.new.name))
        chat = Conversation(peer)
        loop.run_until(lambda: peer.registered, timeout)
        record.registered.set()
        if remote is not None:
            assert wait_for.wait(timeout), "the other peer never registered"
            peer.connect(remote)
        loop.run_until(lambda: peer.path_up or peer.finished, timeout)
        chat.say(f"hello from {peer_id}")
        if payload is not None:
            chat.send_file(payload, name="payload.bin")

        def progress() -> bool:
            incoming = chat.incoming
            if incoming is not None:
                record.received_bytes = incoming.received_bytes
            return finished(peer, chat) or peer.finished

        loop.run_until(progress, timeout)
        record.lines = list(chat.lines)
        record.files = [(f.name, f.size, hashlib.sha256(f.data).hexdigest()) for f in chat.files]
        record.final_path = peer.session.path_kind
    except Exception as exc:  # the test thread reports it
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.registered.set()
        record.done.set()
        if peer is not None:
            peer.close()
        loop.close()


def exchange(lab: NatLab, services: LabServices, payload: bytes, *,
             config: SessionConfig | None = None, cut_after_bytes: int | None = None,
             timeout: float = 90.0) -> tuple[PeerRecord, PeerRecord]:
    """peer-a connects to peer-b, both say hello, a sends `payload` to b as a file.

    With `cut_after_bytes`, the direct path is cut once b has received that much of it."""
    config = config or SessionConfig()
    a, b = PeerRecord(), PeerRecord()
    sender_done = lambda peer, chat: peer.all_acknowledged and len(chat.lines) >= 1  # noqa: E731
    receiver_done = lambda peer, chat: len(chat.files) >= 1 and len(chat.lines) >= 1 \
        and peer.all_acknowledged  # noqa: E731
    threads = [
        lab.thread("peer-b", lambda: _run_peer(services, "b", b, remote=None, wait_for=None,
                                               payload=None, config=config,
                                               finished=receiver_done, timeout=timeout)),
        lab.thread("peer-a", lambda: _run_peer(services, "a", a, remote="b",
                                               wait_for=b.registered, payload=payload,
                                               config=config, finished=sender_done,
                                               timeout=timeout)),
    ]
    for thread in threads:
        thread.start()
    if cut_after_bytes is not None:
        deadline = time.monotonic() + timeout
        while b.received_bytes < cut_after_bytes and not b.done.is_set():
            assert time.monotonic() < deadline, "the transfer never got far enough to cut"
            time.sleep(0.005)
        lab.cut_direct()
    for thread in threads:
        thread.join(timeout + 10.0)
    return a, b
