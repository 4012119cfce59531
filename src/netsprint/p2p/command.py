"""`netsprint peer`: chat and file transfer with another peer, direct or through the relay.

Lines typed on stdin are chat; `/send PATH` sends a file, `/quit` leaves. Received lines go
to stdout, everything else (state changes, progress bars, logs) to stderr, so the output
can be piped. The peer leaves by itself when the other side leaves, or after stdin ends once
everything it sent has been acknowledged and `--wait-files` files have arrived.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from netsprint.config import load_config
from netsprint.errors import NetsprintError
from netsprint.log import setup_logging_from
from netsprint.p2p.conversation import Conversation, ReceivedFile
from netsprint.p2p.peer import PATH_UP, Peer
from netsprint.p2p.session import State, StateChanged
from netsprint.reactor.loop import EventLoop
from netsprint.reactor.poller import READABLE
from netsprint.reactor.signals import StopOnSignals
from netsprint.reactor.timers import Timer
from netsprint.stun.client import parse_address


PROGRESS_INTERVAL = 0.1  # how often progress bars and the exit rule are looked at
CONNECT_RETRY_INTERVAL = 0.5  # asking again for a peer that is not registered yet


class PeerArgumentError(NetsprintError, ValueError):
    """A `netsprint peer` argument that cannot work."""


def split_lines(partial: bytes, data: bytes) -> tuple[list[str], bytes]:
    """The lines `partial + data` completes, and the unfinished rest: a read from a pipe
    or a file may stop anywhere, even inside a UTF-8 character. `data == b""` is the end
    of input, where an unfinished last line counts as a line."""
    lines = (partial + data).split(b"\n")
    rest = lines.pop() if data else b""
    return [line.decode(errors="replace").rstrip("\r") for line in lines], rest


class _Cli:
    """Owns the terminal side of one `netsprint peer` run: stdin, progress bars, exit rule."""

    def __init__(self, loop: EventLoop, args: argparse.Namespace) -> None:
        config = load_config(args.config)
        setup_logging_from(config.log)
        self.loop = loop
        self.args = args
        self.err = Console(stderr=True)
        self.stdin_done = False
        self.stdin_partial = b""  # a line not yet ended: a read may stop mid-line
        self.reconnect_timer: Timer | None = None  # set while waiting to ask again
        self.announced_wait = False
        self.connect_deadline = loop.time() + args.timeout
        self.progress = Progress("[progress.description]{task.description}", BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), console=self.err,
                                 transient=False)
        self.sending: dict[object, int] = {}    # FileSender -> progress task
        self.receiving: dict[object, int] = {}  # FileReceiver -> progress task
        # Typed (or given with --send) before the path was up: a session that fails
        # takes its channel with it, so nothing is queued until one works.
        self.waiting_lines = [f"/send {path}" for path in args.send]
        stun_alt = parse_address(args.stun_alt) if args.stun_alt else None
        self.peer = Peer(loop, args.id, parse_address(args.signal),
                         stun=parse_address(args.stun) if args.stun else None, stun_alt=stun_alt,
                         session_config=config.p2p, channel_config=config.channel,
                         on_state=self.state_changed)
        self.chat = Conversation(self.peer, receive_dir=args.receive_dir,
                                 on_line=self.line_received, on_file=self.file_received)

    # -- events ---------------------------------------------------------------------------

    def state_changed(self, change: StateChanged) -> None:
        # The session logs every transition with its reason; here only what follows from it.
        if change.new is State.FAILED and self.remote_offline():
            self.retry_connect()
        if change.new in PATH_UP:
            lines, self.waiting_lines = self.waiting_lines, []
            for line in lines:
                self.command(line)

    def remote_offline(self) -> bool:
        error = self.peer.signal_error
        return bool(self.args.connect) and error is not None and error.code == "unknown_peer"

    def retry_connect(self) -> None:
        """The other peer is not registered yet: ask again until --timeout runs out."""
        if self.loop.time() >= self.connect_deadline:
            self.err.print(f"[red]{self.args.connect} did not come online within "
                           f"{self.args.timeout:.0f} s[/]")
            return
        if not self.announced_wait:
            self.announced_wait = True
            self.err.print(f"waiting for {self.args.connect} to come online...")
        self.peer.signal_error = None
        self.reconnect_timer = self.loop.call_later(CONNECT_RETRY_INTERVAL, self.reconnect)

    def reconnect(self) -> None:
        self.reconnect_timer = None
        self.peer.connect(self.args.connect)

    def line_received(self, text: str) -> None:
        print(f"<{self.peer.session.remote_id}> {text}", flush=True)

    def file_received(self, received: ReceivedFile) -> None:
        self.err.print(f"received {received.name}: {received.size} bytes, SHA-256 "
                       f"{received.sha256[:16]}... verified, saved as {received.path}")

    def send_file(self, path: str) -> None:
        try:
            sender = self.chat.send_file(path)
        except (OSError, NetsprintError) as exc:
            self.err.print(f"[red]cannot send {path}: {exc}[/]")
            return
        self.sending[sender] = self.progress.add_task(f"send {sender.offer.name}",
                                                    total=sender.offer.size)

    def watch_stdin(self) -> None:
        if sys.stdin is None or sys.stdin.closed:
            self.stdin_done = True
            return
        fd = sys.stdin.fileno()
        try:
            self.loop.register(fd, READABLE, self.stdin_readable)  # a pipe or a terminal
        except PermissionError:
            # epoll(7) refuses regular files and /dev/null (EPERM): they are always
            # readable, so read them whole now; the lines wait for the path.
            while self.read_stdin(fd):
                pass

    def stdin_readable(self, fd: int, events: int) -> None:
        if not self.read_stdin(fd):
            self.loop.unregister(fd)

    def read_stdin(self, fd: int) -> bool:
        """Handle the lines stdin has completed; False at its end."""
        data = os.read(fd, 65536)
        lines, self.stdin_partial = split_lines(self.stdin_partial, data)
        for line in lines:
            self.command(line)
        if not data:
            self.stdin_done = True
        return bool(data)

    def command(self, line: str) -> None:
        if line.strip() == "/quit":
            self.stdin_done = True
            self.peer.close()
        elif not line.strip():
            return
        elif not self.peer.path_up:
            self.waiting_lines.append(line)  # carried out once the path is up
        elif line.startswith("/send "):
            self.send_file(line[6:].strip())
        else:
            self.chat.say(line)

    # -- the loop -------------------------------------------------------------------------

    def finished(self) -> bool:
        """The exit rule: the session ended, or stdin did and all our work is done."""
        if self.reconnect_timer is not None:
            return False
        if self.peer.finished:
            return True
        connected_once = self.peer.time_to_connect is not None
        return (self.stdin_done and connected_once and not self.waiting_lines
                and self.peer.all_acknowledged
                and len(self.chat.files) >= self.args.wait_files)

    def check_finished(self) -> None:
        self.update_progress()
        if self.finished():
            self.loop.stop()
        else:
            self.loop.call_later(PROGRESS_INTERVAL, self.check_finished)

    def update_progress(self) -> None:
        for sender, task in self.sending.items():
            self.progress.update(task, completed=sender.sent_bytes)
        incoming = self.chat.incoming
        if incoming is not None and incoming.offer is not None:
            task = self.receiving.get(incoming)
            if task is None:
                task = self.receiving[incoming] = self.progress.add_task(
                    f"receive {incoming.offer.name}", total=incoming.offer.size)
            self.progress.update(task, completed=incoming.received_bytes)
        for receiver, task in self.receiving.items():
            if receiver.done:
                self.progress.update(task, completed=receiver.offer.size)

    def run(self) -> int:
        if self.args.connect:
            self.loop.run_until(lambda: self.peer.registered, self.args.timeout)
            self.peer.connect(self.args.connect)
        self.watch_stdin()
        self.loop.call_soon(self.check_finished)
        with self.progress, StopOnSignals(self.loop):  # Ctrl-C stops the loop too
            self.loop.run_forever()
        self.peer.close()
        state = self.peer.state
        return 0 if state not in (None, State.FAILED) else 1


def run_peer(args: argparse.Namespace) -> int:
    if args.wait_files < 0:
        raise PeerArgumentError("--wait-files must be >= 0")
    if args.receive_dir is not None and not Path(args.receive_dir).is_dir():
        raise PeerArgumentError(f"--receive-dir {args.receive_dir} is not a directory")
    with EventLoop() as loop:
        return _Cli(loop, args).run()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--id", required=True, help="this peer's id on the signaling server")
    p.add_argument("--signal", required=True, metavar="HOST:PORT",
                   help="the signaling server (start one with signal-server --relay)")
    p.add_argument("--stun", default=None, metavar="IP:PORT",
                   help="a STUN server for the server-reflexive candidate")
    p.add_argument("--stun-alt", default=None, metavar="IP:PORT",
                   help="a second STUN address: tells whether the NAT is symmetric")
    p.add_argument("--connect", default=None, metavar="PEER",
                   help="start the session (the other side just waits)")
    p.add_argument("--send", action="append", default=[], metavar="FILE",
                   help="send this file once connected (repeatable)")
    p.add_argument("--receive-dir", default=".", metavar="DIR",
                   help="where received files are saved (default: here)")
    p.add_argument("--wait-files", type=int, default=0, metavar="N",
                   help="after stdin ends, stay until N files have arrived")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for registration and for --connect's peer")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="JSON or TOML config (docs/config.md)")
