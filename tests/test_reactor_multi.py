"""Main/sub multi-reactor echo: the main loop accepts, sub-reactor threads serve."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from netutil import echo

from netsprint.errors import ReactorError
from netsprint.reactor import EventLoop, MultiReactorServer
from netsprint.reactor.background import serving_in_thread
from netsprint.reactor.echo import EchoProtocol

pytestmark = pytest.mark.net

HOST = "127.0.0.1"


@pytest.fixture
def multi_server():
    """A 3-sub-reactor echo server whose main loop runs in a thread; always torn down."""
    with serving_in_thread(lambda loop: MultiReactorServer(loop, HOST, 0, EchoProtocol,
                                                           sub_reactors=3),
                           name="main-reactor") as server:
        yield server


def test_clients_are_spread_round_robin_and_all_get_echoes(multi_server):
    clients = [socket.create_connection((HOST, multi_server.port), timeout=5)
               for _ in range(12)]
    try:
        for round_ in range(3):
            for i, sock in enumerate(clients):
                message = b"client %d round %d " % (i, round_) * 50
                assert echo(sock, message) == message
        # Every connection echoed, so every hand-off has happened: 12 over 3 loops.
        assert [sub.adopted_connections for sub in multi_server.sub_reactors] == [4, 4, 4]
        assert [sub.connection_count for sub in multi_server.sub_reactors] == [4, 4, 4]
        assert multi_server.accepted_connections == 12
    finally:
        for sock in clients:
            sock.close()


def test_concurrent_clients_in_threads(multi_server):
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with socket.create_connection((HOST, multi_server.port), timeout=5) as sock:
                for k in range(20):
                    message = b"%d:%d|" % (n, k) * 100
                    assert echo(sock, message) == message
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    assert not any(t.is_alive() for t in threads)


def test_close_stops_sub_reactors_and_closes_their_connections():
    loop = EventLoop()
    server = MultiReactorServer(loop, HOST, 0, EchoProtocol, sub_reactors=2)
    try:
        with socket.create_connection((HOST, server.port), timeout=5) as sock:
            loop.run_until(lambda: server.accepted_connections == 1, timeout=5)
            assert echo(sock, b"ping") == b"ping"
            server.close()
            assert sock.recv(10) == b""  # the sub-reactor closed its connection
        assert all(sub.loop.is_closed for sub in server.sub_reactors)
    finally:
        server.close()
        loop.close()


def test_needs_at_least_one_sub_reactor():
    with EventLoop() as loop:
        with pytest.raises(ReactorError, match="at least one"):
            MultiReactorServer(loop, HOST, 0, EchoProtocol, sub_reactors=0)


def test_edge_without_epoll_is_refused_up_front_and_leaks_nothing():
    """Sub-reactors share the main loop's backend: edge-triggering on poll fails at once,
    not on every hand-off, and the sub-reactor loops already made are closed."""
    before = set(os.listdir("/proc/self/fd"))
    with EventLoop("poll") as loop:
        with pytest.raises(ReactorError, match="epoll"):
            MultiReactorServer(loop, HOST, 0, EchoProtocol, sub_reactors=2, edge=True)
    assert set(os.listdir("/proc/self/fd")) <= before
