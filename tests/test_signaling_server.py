"""The signaling server over real TCP on 127.0.0.1, its clients, and its command.

Misbehaving clients are raw sockets; the well-behaved pair (alice and bob) are
SignalingClients on the same loop, checked after every misbehaviour. Waiting is always
`loop.run_until(condition, timeout)`: no sleeps.
"""

from __future__ import annotations

import itertools
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from netsprint.errors import DecodeError, NetsprintError
from netsprint.p2p import packet
from netsprint.p2p.relay import RelayLimits
from netsprint.reactor import EventLoop
from netsprint.signaling import (Answer, BlockingSignalingClient, Candidate, CandidateAddr,
                                 Error, FrameDecoder, Heartbeat, HeartbeatAck, Offer, PeerLeft,
                                 Register, Registered, SignalingClient, SignalingRejected,
                                 SignalingServer, SignalingTimeout, decode_message,
                                 encode_frame, encode_message)
from netsprint.signaling.command import (SignalServerArgumentError, parse_listen,
                                        run_signal_server, summary)
from netsprint.signaling.protocol import Endpoint, RelayGranted, RelayRequest
from netsprint.signaling.server import serving_in_thread

pytestmark = pytest.mark.net

HOST = "127.0.0.1"
SRFLX = CandidateAddr("203.0.113.5", 40000, "srflx")
HOST_CAND = CandidateAddr("192.0.2.10", 5000, "host")
WAIT = 10.0  # seconds: generous upper bounds for run_until, never expected to be reached


class RawClient:
    """A non-blocking socket that speaks frames by hand (to misbehave on purpose)."""

    def __init__(self, port: int, rcvbuf_bytes: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf_bytes is not None:  # before connect: it caps the advertised window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        self.sock.connect((HOST, port))
        self.sock.setblocking(False)
        self.decoder = FrameDecoder()
        self.messages: list = []
        self.eof = False
        self.reset = False

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)  # small writes: the socket buffer always has room

    def send(self, msg) -> None:
        self.send_raw(encode_frame(encode_message(msg)))

    def pump(self) -> None:
        """Read whatever has arrived (non-blocking)."""
        while not (self.eof or self.reset):
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except ConnectionResetError:
                self.reset = True
                return
            if not data:
                self.eof = True
                return
            self.messages += [decode_message(f) for f in self.decoder.feed(data)]

    def wait(self, loop: EventLoop, predicate) -> None:
        def check():
            self.pump()
            return predicate()
        loop.run_until(check, timeout=WAIT)

    def wait_messages(self, loop: EventLoop, count: int) -> list:
        self.wait(loop, lambda: len(self.messages) >= count or self.eof or self.reset)
        return self.messages

    def close_with_rst(self) -> None:
        # SO_LINGER on with a zero timeout: close() sends RST instead of FIN (socket(7)).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


class Peer:
    """A SignalingClient and what it received."""

    def __init__(self, loop: EventLoop, port: int, peer_id: str, **kwargs) -> None:
        self.messages: list = []
        self.closes: list = []
        self.client = SignalingClient(loop, HOST, port, on_message=self.messages.append,
                                      on_close=self.closes.append, **kwargs)
        self.client.register(peer_id)
        loop.run_until(lambda: self.messages or self.closes, timeout=WAIT)
        assert isinstance(self.messages[0], Registered), self.messages
        self.messages.clear()

    def next_message(self, loop: EventLoop, kind=object):
        loop.run_until(lambda: any(isinstance(m, kind) for m in self.messages), timeout=WAIT)
        for i, m in enumerate(self.messages):
            if isinstance(m, kind):
                return self.messages.pop(i)


@pytest.fixture
def loop():
    with EventLoop() as lp:
        yield lp


@pytest.fixture
def make_server(loop):
    servers = []

    def make(**kwargs):
        server = SignalingServer(loop, HOST, 0, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
    loop.run_once(0)


@pytest.fixture
def clients():
    """Raw sockets made by a test, closed whatever happens."""
    made: list[RawClient] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def world(loop, make_server):
    """A server with alice and bob registered and talking."""
    server = make_server(max_output_bytes=64 * 1024, close_grace=0.5)
    alice = Peer(loop, server.port, "alice")
    bob = Peer(loop, server.port, "bob")
    yield SimpleNamespace(server=server, alice=alice, bob=bob)
    alice.client.close()
    bob.client.close()


_checks = itertools.count(1)


def still_served(loop, world) -> None:
    """alice and bob keep getting correct answers."""
    n = next(_checks)
    world.alice.client.send(Offer("bob", (SRFLX,), session=f"s{n}"))
    assert world.bob.next_message(loop, Offer) == Offer("bob", (SRFLX,), session=f"s{n}",
                                                        from_="alice")
    world.bob.client.send(Heartbeat(n))
    assert world.bob.next_message(loop, HeartbeatAck) == HeartbeatAck(n)


def raw(clients, server, **kwargs) -> RawClient:
    client = RawClient(server.port, **kwargs)
    clients.append(client)
    return client


# -- the happy path -------------------------------------------------------------------------

def test_two_clients_exchange_offer_answer_and_candidates(loop, make_server):
    server = make_server()
    alice = Peer(loop, server.port, "alice")
    bob = Peer(loop, server.port, "bob")
    assert alice.client.peer_id == "alice"
    assert alice.client.observed.ip == HOST
    assert alice.client.observed.port == alice.client._conn.sockname[1]

    alice.client.send(Offer("bob", (SRFLX, HOST_CAND), session="call-1"))
    assert bob.next_message(loop) == Offer("bob", (SRFLX, HOST_CAND), session="call-1",
                                           from_="alice")
    bob.client.send(Answer("alice", (HOST_CAND,), session="call-1"))
    assert alice.next_message(loop) == Answer("alice", (HOST_CAND,), session="call-1",
                                              from_="bob")
    for cand in (SRFLX, HOST_CAND):
        alice.client.send(Candidate("bob", cand, from_="alice"))
    bob_got = [bob.next_message(loop, Candidate) for _ in range(2)]
    assert bob_got == [Candidate("bob", SRFLX, from_="alice"),
                       Candidate("bob", HOST_CAND, from_="alice")]
    assert server.stats["forwarded"] == 4
    assert server.core.peer_ids() == ["alice", "bob"]

    alice.client.close()
    assert bob.next_message(loop, PeerLeft) == PeerLeft("alice")
    loop.run_until(lambda: alice.closes, timeout=WAIT)
    assert alice.closes == [None]
    assert server.core.peer_ids() == ["bob"]
    bob.client.close()


def test_the_reactor_client_sends_heartbeats_and_outlives_a_silent_one(loop, make_server,
                                                                        clients):
    server = make_server(heartbeat_timeout=0.3)
    talker = Peer(loop, server.port, "talker", heartbeat_interval=0.05)
    silent = raw(clients, server)  # connected after talker: it expires after talker would
    silent.wait(loop, lambda: silent.eof)  # closed after 0.3 s of silence
    assert not talker.closes  # so talker lived > 0.3 s: its heartbeats kept it
    assert server.core.peer_ids() == ["talker"]
    assert server.stats["expired"] == 1
    assert server.stats["heartbeats"] >= 1
    assert any(isinstance(m, HeartbeatAck) for m in talker.messages)
    talker.client.close()


# -- misbehaviour: each is answered and counted; alice and bob do not notice -------------------

def test_garbage_gets_bad_json_and_the_connection_stays(loop, world, clients):
    still_served(loop, world)
    mallory = raw(clients, world.server)
    mallory.send_raw(encode_frame(b"\x00\xffnot json at all"))
    mallory.send(Heartbeat(1))
    error, ack = mallory.wait_messages(loop, 2)
    assert (error.code, ack) == ("bad_json", HeartbeatAck(1))
    assert world.server.stats["errors.bad_json"] == 1
    still_served(loop, world)


def test_unknown_type_and_wrong_version(loop, world, clients):
    mallory = raw(clients, world.server)
    mallory.send_raw(encode_frame(b'{"v":1,"type":"teleport"}'))
    mallory.send_raw(encode_frame(b'{"v":2,"type":"register","peer_id":"m"}'))
    first, second = mallory.wait_messages(loop, 2)
    assert (first.code, first.ref) == ("unknown_type", "teleport")
    assert (second.code, second.ref) == ("version", "register")
    assert world.server.stats["errors"] == 2
    still_served(loop, world)


def test_wrong_peer_ids(loop, world, clients):
    mallory = raw(clients, world.server)
    mallory.send_raw(encode_frame(b'{"v":1,"type":"register","peer_id":"not ok!"}'))
    mallory.send(Register("alice"))
    mallory.send(Register("mallory"))
    mallory.send(Offer("bob", (SRFLX,), from_="alice"))
    mallory.send(Offer("nobody", (SRFLX,)))
    msgs = mallory.wait_messages(loop, 5)
    assert [getattr(m, "code", type(m).__name__) for m in msgs] == [
        "bad_message", "peer_id_taken", "Registered", "spoofed_from", "unknown_peer"]
    assert "peer_id" in msgs[0].reason
    assert not any(isinstance(m, Offer) and m.from_ == "mallory" for m in world.bob.messages)
    still_served(loop, world)
    assert world.server.core.peer_ids() == ["alice", "bob", "mallory"]


def test_oversized_frame_gets_frame_too_large_then_close(loop, world, clients):
    mallory = raw(clients, world.server)
    mallory.send(Heartbeat(5))  # answered: it came before the bad header
    mallory.send_raw(struct.pack(">I", world.server.max_frame_bytes + 1) + b"{")
    mallory.wait(loop, lambda: mallory.eof or mallory.reset)
    assert [type(m) for m in mallory.messages] == [HeartbeatAck, Error]
    assert mallory.messages[1].code == "frame_too_large"
    assert mallory.eof  # a clean close after the error, not a reset
    assert world.server.stats["closed_frame_too_large"] == 1
    still_served(loop, world)


def test_a_small_frame_limit_bounds_what_clients_send_not_what_they_are_told(loop, world,
                                                                            make_server,
                                                                            clients):
    """The limit is on frames the server reads. Its answers (an error with its reason, a
    forwarded offer with `from` stamped) may be larger; framing them with the same limit
    would raise inside the sender's callback and cost the sender its connection."""
    server = make_server(max_frame_bytes=100)
    mallory = raw(clients, server)
    mallory.send_raw(encode_frame(b"{not json"))
    mallory.send(Register("mallory"))
    error, registered = mallory.wait_messages(loop, 2)
    assert error.code == "bad_json" and len(encode_message(error)) > 100
    assert isinstance(registered, Registered) and not mallory.eof and not mallory.reset
    carol = raw(clients, server)
    carol.send(Register("carol"))
    carol.wait_messages(loop, 1)
    offer = Offer("carol", (CandidateAddr("192.0.2.1", 1, "host"),))
    assert len(encode_message(offer)) <= 100 < len(encode_message(
        Offer("carol", offer.candidates, from_="mallory")))
    mallory.send(offer)
    assert carol.wait_messages(loop, 2)[1] == Offer("carol", offer.candidates, from_="mallory")
    still_served(loop, world)


def test_a_client_that_vanishes_with_rst_frees_its_id_and_its_contacts_hear(loop, world,
                                                                           clients):
    dave = raw(clients, world.server)
    dave.send(Register("dave"))
    dave.wait_messages(loop, 1)
    world.alice.client.send(Offer("dave", (SRFLX,)))
    dave.wait_messages(loop, 2)
    closed_before = world.server.stats["connections_closed"]
    dave.close_with_rst()
    assert world.alice.next_message(loop, PeerLeft) == PeerLeft("dave")
    assert world.server.core.peer_ids() == ["alice", "bob"]
    assert world.server.stats["connections_closed"] == closed_before + 1
    assert not world.bob.messages  # bob never talked to dave
    still_served(loop, world)
    again = raw(clients, world.server)  # the id is free
    again.send(Register("dave"))
    assert isinstance(again.wait_messages(loop, 1)[0], Registered)


def flood_until_slow(loop, world, target: str) -> int:
    """alice sends big offers to `target` until the server gives up on it; how many."""
    return flood_until(loop, world, target, lambda: world.server.stats["closed_slow"])


def flood_until(loop, world, target: str, done) -> int:
    """alice sends big offers to `target` until `done()`; returns how many she sent."""
    cands = tuple(CandidateAddr(f"2001:db8::{i:x}", 60000 + i, "host") for i in range(16))
    sent = 0

    def flood():
        nonlocal sent
        if done():
            return True
        assert sent < 50_000, "flooding never got there"
        for _ in range(50):
            world.alice.client.send(Offer(target, cands))
            sent += 1
        return False

    loop.run_until(flood, timeout=60)
    return sent


def test_a_client_that_never_reads_is_closed_without_hurting_others(loop, world, clients):
    slow = raw(clients, world.server, rcvbuf_bytes=4096)
    slow.send(Register("slow"))
    slow.wait_messages(loop, 1)
    sent = flood_until_slow(loop, world, "slow")
    assert sent > 1
    # The slow client is aborted after close_grace, its id freed, and alice told.
    loop.run_until(lambda: world.server.connection_count == 2, timeout=WAIT)
    assert world.server.core.peer_ids() == ["alice", "bob"]
    assert world.alice.next_message(loop, PeerLeft) == PeerLeft("slow")
    assert world.server.stats["closed_slow"] == 1
    still_served(loop, world)


def test_a_slow_consumer_that_reads_at_last_finds_the_error_before_eof(loop, make_server,
                                                                       clients):
    server = make_server(max_output_bytes=64 * 1024, close_grace=60.0)
    world = SimpleNamespace(server=server, alice=Peer(loop, server.port, "alice"))
    slow = raw(clients, server, rcvbuf_bytes=4096)
    slow.send(Register("slow"))
    slow.wait_messages(loop, 1)
    flood_until_slow(loop, world, "slow")
    slow.wait(loop, lambda: slow.eof or slow.reset)
    assert slow.eof
    last = slow.messages[-1]
    assert isinstance(last, Error) and last.code == "slow_consumer"
    assert all(isinstance(m, Offer) for m in slow.messages[1:-1])
    world.alice.client.close()


def test_a_half_closed_client_with_unsent_output_leaves_at_once(loop, make_server, clients):
    """FIN from a client the server still owes bytes: the transport closes it once the
    bytes drain, and a forward to it in the meantime must not write to a closing
    connection (that would raise inside the *sender's* callback and cost the sender)."""
    server = make_server(max_output_bytes=64 * 1024 * 1024, close_grace=0.3)
    world = SimpleNamespace(server=server, alice=Peer(loop, server.port, "alice"))
    xavier = raw(clients, server, rcvbuf_bytes=4096)
    xavier.send(Register("xavier"))
    xavier.wait_messages(loop, 1)
    flood_until(loop, world, "xavier",
                lambda: any(c.buffered_bytes for c in server._listener.connections))
    xavier.sock.shutdown(socket.SHUT_WR)
    assert world.alice.next_message(loop, PeerLeft) == PeerLeft("xavier")
    world.alice.client.send(Offer("xavier", (SRFLX,)))
    error = world.alice.next_message(loop, Error)
    assert error.code == "unknown_peer"
    assert world.alice.closes == []
    loop.run_until(lambda: server.connection_count == 1, timeout=WAIT)  # grace, then abort
    world.alice.client.close()


def test_the_reactor_client_hangs_up_on_a_server_that_sends_garbage(loop):
    with socket.create_server((HOST, 0)) as fake_server:
        closes: list = []
        client = SignalingClient(loop, HOST, fake_server.getsockname()[1],
                                 on_close=closes.append, heartbeat_interval=None)
        client.register("alice")
        conn, _ = fake_server.accept()  # the kernel completed the handshake already
        with conn:
            conn.sendall(encode_frame(b"<html>not signaling</html>"))
            loop.run_until(lambda: closes, timeout=WAIT)
    assert isinstance(closes[0], DecodeError) and closes[0].code == "bad_json"
    assert client.closed


def test_server_close_aborts_everyone(loop, make_server):
    server = make_server()
    alice = Peer(loop, server.port, "alice")
    server.close()
    loop.run_until(lambda: alice.closes, timeout=WAIT)
    assert server.closed


# -- the blocking client (server on its own thread) -------------------------------------------

@pytest.fixture
def threaded_server():
    with serving_in_thread(HOST, 0) as server:
        yield server


def test_blocking_clients_exchange_addresses(threaded_server):
    port = threaded_server.port
    with BlockingSignalingClient(HOST, port) as alice, BlockingSignalingClient(HOST, port) as bob:
        reg = alice.register("alice")
        assert reg.peer_id == "alice" and reg.observed.ip == HOST
        bob.register("bob")
        alice.send(Offer("bob", (CandidateAddr(reg.observed.ip, reg.observed.port, "srflx"),)))
        offer = bob.receive()
        assert offer.from_ == "alice" and offer.candidates[0].port == reg.observed.port
        bob.send(Answer("alice", (HOST_CAND,)))
        assert alice.receive() == Answer("alice", (HOST_CAND,), from_="bob")
        alice.send(Heartbeat(3))
        assert alice.receive() == HeartbeatAck(3)


def test_blocking_register_refused_and_receive_timeout(threaded_server):
    port = threaded_server.port
    with BlockingSignalingClient(HOST, port) as first, \
            BlockingSignalingClient(HOST, port, timeout=0.05) as second:
        first.register("carol")
        with pytest.raises(SignalingRejected) as info:
            second.register("carol")
        assert info.value.code == "peer_id_taken"
        with pytest.raises(SignalingTimeout):
            second.receive()


def test_blocking_register_keeps_what_came_before_the_answer_in_order(threaded_server):
    with BlockingSignalingClient(HOST, threaded_server.port, timeout=WAIT) as client:
        client.send(Heartbeat(1))
        client.send(Heartbeat(2))
        assert client.register("dave").peer_id == "dave"
        assert [client.receive(), client.receive()] == [HeartbeatAck(1), HeartbeatAck(2)]


# -- the relay (week 5) -----------------------------------------------------------------------

SESSION = bytes.fromhex("5e55105e55105e55")


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(WAIT)
    return sock


def request_relay(client: BlockingSignalingClient, to: str) -> RelayGranted:
    client.send(RelayRequest(to, SESSION.hex()))
    granted = client.receive()
    assert isinstance(granted, RelayGranted), granted
    return granted


def bind_to_relay(sock: socket.socket, granted: RelayGranted) -> tuple[str, int]:
    relay = (granted.relay.ip, granted.relay.port)
    sock.sendto(packet.relay_bind(SESSION, bytes.fromhex(granted.token)), relay)
    reply, source = sock.recvfrom(2048)
    bound = packet.decode_packet(reply)
    assert (bound.type, source) == (packet.PacketType.RELAY_BOUND, relay)
    assert 0 < packet.u32(bound.body) <= granted.lifetime
    return relay


@pytest.fixture
def relay_server():
    with serving_in_thread(HOST, 0, relay_limits=RelayLimits()) as server:
        yield server


def test_two_peers_talk_through_the_relay_and_a_stranger_gets_nothing(relay_server):
    port = relay_server.port
    with BlockingSignalingClient(HOST, port) as alice, \
            BlockingSignalingClient(HOST, port) as bob, \
            udp_socket() as alice_udp, udp_socket() as bob_udp, udp_socket() as mallory:
        alice.register("alice")
        bob.register("bob")
        alice_grant, bob_grant = request_relay(alice, "bob"), request_relay(bob, "alice")
        assert alice_grant.relay == bob_grant.relay == Endpoint(HOST, port)  # same port as TCP
        assert alice_grant.token != bob_grant.token
        relay = bind_to_relay(alice_udp, alice_grant)
        bind_to_relay(bob_udp, bob_grant)

        hello = packet.data(SESSION, b"hello through the relay")
        alice_udp.sendto(hello, relay)
        assert bob_udp.recvfrom(2048) == (hello, relay)  # unchanged, from the relay
        reply = packet.data(SESSION, b"and back")
        bob_udp.sendto(reply, relay)
        assert alice_udp.recvfrom(2048) == (reply, relay)

        # mallory: a guessed token, no token at all, and plain noise
        mallory.sendto(packet.relay_bind(SESSION, b"\x00" * 16), relay)
        mallory.sendto(packet.data(SESSION, b"let me in"), relay)
        mallory.sendto(b"GET / HTTP/1.0\r\n\r\n", relay)
        # Loopback delivers in order: once this arrives, mallory's datagrams were handled.
        marker = packet.data(SESSION, b"marker")
        alice_udp.sendto(marker, relay)
        assert bob_udp.recvfrom(2048) == (marker, relay)
        mallory.setblocking(False)
        with pytest.raises(BlockingIOError):
            mallory.recvfrom(2048)
        stats = relay_server.stats
        assert stats["relay.dropped_bad_token"] == 1
        assert stats["relay.dropped_unbound"] == 1
        assert stats["relay.dropped_non_p2p"] == 1
        assert stats["relay.relayed_packets"] == 3 and stats["relay_granted"] == 2


def test_relay_requests_from_strangers_are_refused(relay_server):
    port = relay_server.port
    with BlockingSignalingClient(HOST, port) as alice, \
            BlockingSignalingClient(HOST, port) as stranger:
        alice.register("alice")
        stranger.send(RelayRequest("alice", SESSION.hex()))
        error = stranger.receive()
        assert (error.code, error.ref) == ("not_registered", "relay_request")
        alice.send(RelayRequest("nobody", SESSION.hex()))
        error = alice.receive()
        assert (error.code, error.ref) == ("unknown_peer", "relay_request")
    assert relay_server.relay.allocation_count == 0


def test_the_relay_timer_frees_idle_allocations_before_any_heartbeat_deadline(loop,
                                                                            make_server):
    server = make_server(relay_limits=RelayLimits(idle_timeout=0.2), heartbeat_timeout=30.0)
    assert server.relay_port == server.port
    alice = Peer(loop, server.port, "alice")
    bob = Peer(loop, server.port, "bob")
    alice.client.send(RelayRequest("bob", SESSION.hex()))
    assert isinstance(alice.next_message(loop, RelayGranted), RelayGranted)
    assert server.relay.allocation_count == 1
    loop.run_until(lambda: server.relay.allocation_count == 0, timeout=WAIT)
    assert server.stats["relay.expired_idle"] == 1
    assert server.core.peer_ids() == ["alice", "bob"]  # the connections live on
    alice.client.close()
    bob.client.close()
    server.close()
    assert server.relay_port is None


def test_a_server_without_relay_has_no_udp_socket(loop, make_server):
    server = make_server()
    assert server.relay is None and server.relay_port is None
    assert "relay.relayed_packets" not in server.stats


# -- the command ---------------------------------------------------------------------------

@pytest.mark.parametrize("listen", ["7001", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000",
                                    ":7001", "::1:7001", "[nonsense]:7001"])
def test_a_bad_listen_address_is_a_netsprint_error(listen):
    args = SimpleNamespace(listen=listen, heartbeat_timeout=30.0, max_frame_bytes=65536)
    with pytest.raises(NetsprintError, match="--listen"):
        run_signal_server(args)


def test_parse_listen_accepts_names_v4_and_bracketed_v6():
    assert parse_listen("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:7001") == ("localhost", 7001)


def test_bad_limits_are_refused():
    args = SimpleNamespace(listen="127.0.0.1:0", heartbeat_timeout=0.0, max_frame_bytes=65536)
    with pytest.raises(SignalServerArgumentError):
        run_signal_server(args)


def test_the_summary_names_the_relay_counters_only_with_a_relay():
    stats = {"registered": 2, "relay_granted": 2, "relay.relayed_packets": 7,
             "relay.dropped_bad_token": 1}
    plain, relayed = summary(stats).split(), summary(stats, relay=True).split()
    assert "registered=2" in plain and not any(w.startswith("relay") for w in plain)
    assert {"relay_granted=2", "relay.relayed_packets=7", "relay.dropped_bad_token=1",
            "relay.relayed_bytes=0"} <= set(relayed)


def test_the_cli_serves_until_sigint_and_prints_a_summary():
    env = dict(os.environ, COLUMNS="400")  # one log record per line in rich's output
    proc = subprocess.Popen([sys.executable, "-m", "netsprint", "signal-server",
                             "--listen", f"{HOST}:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        port = _listening_port(proc)
        with BlockingSignalingClient(HOST, port) as client:
            client.register("cli-test")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert b"registered=1" in out and b"connections_opened=1" in out


def _listening_port(proc: subprocess.Popen) -> int:
    """The port from the server's log line, read with a deadline (never hangs the run)."""
    seen = ""
    deadline = time.monotonic() + WAIT
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                continue
            chunk = os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
            if not chunk:
                break  # the process died
            seen += chunk
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", seen)
            if match:
                return int(match.group(1))
    raise AssertionError(f"the server never said where it listens; stderr: {seen!r}")


def test_serving_in_thread_answers_and_closes_even_when_the_block_raises():
    with pytest.raises(RuntimeError, match="the caller failed"):
        with serving_in_thread(heartbeat_timeout=5.0) as server:
            port = server.port
            with BlockingSignalingClient("127.0.0.1", port) as client:
                assert client.register("alice").peer_id == "alice"
            raise RuntimeError("the caller failed")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2.0)
