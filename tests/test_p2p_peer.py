"""The peer shell on loopback: real sockets, a real signaling server with its relay."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading

import pytest

from netsprint.p2p.channel import Segment, encode_segment
from netsprint.p2p.command import split_lines
from netsprint.p2p.conversation import Conversation
from netsprint.p2p.gather import gather
from netsprint.p2p.peer import Peer
from netsprint.p2p.relay import RelayLimits
from netsprint.p2p.transfer import TransferError
from netsprint.reactor.loop import EventLoop
from netsprint.signaling.server import serving_in_thread
from netsprint.stun.server import serving_in_thread as stun_serving

pytestmark = pytest.mark.net


@pytest.fixture
def signal_server():
    with serving_in_thread("127.0.0.1", 0, relay_limits=RelayLimits()) as server:
        yield server


def test_gathering_on_loopback_offers_the_host_candidate_once():
    with stun_serving(("127.0.0.1", 0)) as stun:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            found = gather(sock, tuple(stun.core.local_addresses[0]))
            port = sock.getsockname()[1]
    # No NAT on loopback: the server saw the host address, so there is no separate srflx.
    assert [(c.ip, c.port, c.kind) for c in found.candidates] == [
        ("127.0.0.1", port, "host")]


def test_gathering_without_stun_routes_towards_the_signaling_server():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        found = gather(sock, None, towards=("127.0.0.1", 7000))
    assert found.candidates[0].ip == "127.0.0.1"  # never a public interface address
    with pytest.raises(ValueError, match="STUN server or an address"):
        gather(sock, None)


def _run(port: int, peer_id: str, out: dict, *, remote: str | None, ready: threading.Event,
         payload: bytes | None) -> None:
    loop = EventLoop()
    peer = Peer(loop, peer_id, ("127.0.0.1", port))
    try:
        chat = Conversation(peer)
        loop.run_until(lambda: peer.registered, 5)
        if remote is None:
            ready.set()
        else:
            assert ready.wait(5)
            peer.connect(remote)
        loop.run_until(lambda: peer.path_up, 5)
        chat.say(f"hi from {peer_id}")
        if payload is not None:
            chat.send_file(payload, name="blob")
        # The receiver may leave (BYE) before its last ACK arrives: left counts as done.
        loop.run_until(lambda: chat.lines and (peer.all_acknowledged or peer.finished)
                       and (payload is not None or chat.files), 30)
        out[peer_id] = (chat.lines, [(f.name, hashlib.sha256(f.data).hexdigest())
                                     for f in chat.files], peer.session.path_kind,
                        [c.ip for c in peer.gathered.candidates])
    finally:
        peer.close()
        loop.close()


def test_two_peers_chat_and_send_a_mib_directly_on_loopback(signal_server):
    payload = os.urandom(1024 * 1024)
    out: dict = {}
    ready = threading.Event()
    threads = [threading.Thread(target=_run, args=(signal_server.port, "b", out),
                                kwargs=dict(remote=None, ready=ready, payload=None)),
               threading.Thread(target=_run, args=(signal_server.port, "a", out),
                                kwargs=dict(remote="b", ready=ready, payload=payload))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out["a"][0] == ["hi from b"] and out["b"][0] == ["hi from a"]
    assert out["b"][1] == [("blob", hashlib.sha256(payload).hexdigest())]
    assert out["a"][2] == out["b"][2] == "direct"
    assert all(ip == "127.0.0.1" for ip in out["a"][3] + out["b"][3])


def test_a_malformed_segment_is_dropped_and_the_stream_goes_on(signal_server):
    loop = EventLoop()
    peer = Peer(loop, "solo", ("127.0.0.1", signal_server.port))
    try:
        peer.connect("nobody")  # gives the peer a channel; the refused offer does not matter
        peer._segment_received(b"\x01\x02")  # shorter than a segment header
        assert peer.malformed_segments == 1
        peer._segment_received(encode_segment(Segment(0, 0, 256, 0, 0, b"still usable")))
        assert peer.malformed_segments == 1
        assert peer.channel.read() == b"still usable"  # the next valid segment is taken
    finally:
        peer.close()
        loop.close()


def test_stdin_lines_survive_reads_that_stop_anywhere():
    lines, rest = split_lines(b"", b"hel")
    assert (lines, rest) == ([], b"hel")
    lines, rest = split_lines(rest, b"lo\r\n/send a b\n\xc3")  # CRLF; half of an "é"
    assert (lines, rest) == (["hello", "/send a b"], b"\xc3")
    lines, rest = split_lines(rest, b"\xa9t\xc3\xa9\nlast")
    assert (lines, rest) == (["été"], b"last")
    assert split_lines(rest, b"") == (["last"], b"")  # the end: an unterminated line counts


def test_a_record_stream_that_fails_ends_alone(signal_server):
    def changing_file():
        yield b"offer"
        raise TransferError("changed while being sent")

    loop = EventLoop()
    peer = Peer(loop, "solo", ("127.0.0.1", signal_server.port))
    try:
        peer.connect("nobody")  # gives the peer a channel
        free = peer.channel.writable_bytes()
        peer.send_records(changing_file())  # does not raise: the stream ends there
        peer.send_record(b"next")           # ... and later records still go
        assert free - peer.channel.writable_bytes() == len(b"offer") + len(b"next") + 2 * 4
        assert not peer._sources and not peer._outbox
    finally:
        peer.close()
        loop.close()


def test_cli_peers_chat_and_send_a_file(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(300_000))
    received = tmp_path / "recv"
    received.mkdir()
    # alice's stdin is a regular file (epoll refuses it: read whole), its last line
    # unterminated; bob's is a pipe (watched by the loop).
    alice_says = tmp_path / "alice.txt"
    alice_says.write_text("hello bob\nhow are you?")
    with serving_in_thread("127.0.0.1", 0, relay_limits=RelayLimits()) as server:
        signal = f"127.0.0.1:{server.port}"
        cli = [sys.executable, "-m", "netsprint", "peer", "--signal", signal]
        bob = subprocess.Popen([*cli, "--id", "bob", "--receive-dir", str(received),
                                "--wait-files", "1"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            bob.stdin.write("hello alice\n")  # said once the path is up
            bob.stdin.flush()
            with alice_says.open() as stdin:
                alice = subprocess.run([*cli, "--id", "alice", "--connect", "bob", "--send",
                                        str(blob)], stdin=stdin, capture_output=True,
                                       text=True, timeout=30)
            assert alice.returncode == 0, alice.stderr
            bob_out, bob_err = bob.communicate(timeout=15)  # alice's BYE ends bob too
        finally:
            if bob.poll() is None:
                bob.kill()
                bob.wait()
    assert bob.returncode == 0, bob_err
    assert "<alice> hello bob\n<alice> how are you?" in bob_out
    assert (received / "blob.bin").read_bytes() == blob.read_bytes()
