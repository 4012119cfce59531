"""The TCP lifecycle tracer (week 10): the record decoder, its ctypes mirror, and ground truth
from loopback connections this test makes itself (known ports, known pid, latency bounds it
measured around connect()).

Other processes make TCP connections too, so every check filters by this test's own ports.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from dataclasses import dataclass, field

import pytest
from bpfutil import assert_mirror_matches, assert_refuses_short, fill

from netsprint.ebpf.tcplife.loader import (FLAG_ACTIVE, FLAG_ESTABLISHED, FLAG_OWNER_KNOWN, HEADER,
                                           RECORD_SIZE, EventKind, TcpEvent, TcpLifeDecodeError,
                                           TcpLifeRecord, decode)
from netsprint.ebpf.tcplife.lifecycle import Lifecycle, LifecycleTracker, classify

N_CONNECTIONS = 20
N_REFUSED = 5
COLLECT_TIMEOUT = 5.0  # seconds to wait for every expected event


# --- pure: the record and its decoder --------------------------------------------------------

def record(kind: int, family: int, saddr: str, sport: int, daddr: str, dport: int, *, pid=4242,
           comm=b"curl", latency_ns=0, lifetime_ns=0, flags=FLAG_ACTIVE | FLAG_OWNER_KNOWN,
           oldstate=2, newstate=1, ts_ns=5_000_000_000, skaddr=0xFFFF888001234000) -> bytes:
    return bytes(fill(TcpLifeRecord, ts_ns=ts_ns, skaddr=skaddr, latency_ns=latency_ns,
                      lifetime_ns=lifetime_ns, pid=pid, family=family, sport=sport, dport=dport,
                      kind=kind, flags=flags, oldstate=oldstate, newstate=newstate,
                      saddr=ipaddress.ip_address(saddr).packed,
                      daddr=ipaddress.ip_address(daddr).packed, comm=comm))


@pytest.mark.unit
def test_mirror_matches_the_c_struct():
    assert_mirror_matches(TcpLifeRecord, HEADER, "struct tcplife_event")
    assert RECORD_SIZE % 8 == 0, "no tail padding: a multiple of the largest member"


@pytest.mark.unit
def test_decode_ipv4_connect():
    raw = record(1, socket.AF_INET, "10.0.0.2", 40000, "192.0.2.7", 443, latency_ns=1_500_000)
    event = decode(raw)
    assert event == TcpEvent(kind=EventKind.CONNECT, timestamp=5.0, pid=4242, comm="curl",
                             family=socket.AF_INET, saddr=ipaddress.IPv4Address("10.0.0.2"), sport=40000,
                             daddr=ipaddress.IPv4Address("192.0.2.7"), dport=443, latency=0.0015,
                             lifetime=None, active=True, owner_known=True, oldstate="SYN_SENT",
                             sock_id=0xFFFF888001234000)


@pytest.mark.unit
def test_decode_ipv6_close_and_flags():
    raw = record(4, socket.AF_INET6, "2001:db8::1", 8080, "2001:db8::2", 51000, lifetime_ns=2_250_000_000,
                 latency_ns=999, flags=FLAG_ESTABLISHED, oldstate=9, newstate=7, comm=b"x" * 16)
    event = decode(raw)
    assert (event.kind, event.family, str(event.saddr), str(event.daddr)) == \
        (EventKind.CLOSE, socket.AF_INET6, "2001:db8::1", "2001:db8::2")
    assert event.lifetime == 2.25 and event.latency is None, "CLOSE carries a lifetime, no latency"
    assert not event.active and not event.owner_known
    assert event.comm == "x" * 16, "a full 16-byte comm has no NUL"
    assert event.oldstate == "LAST_ACK"


@pytest.mark.unit
def test_decode_refuses_bad_records():
    assert_refuses_short(decode, RECORD_SIZE, TcpLifeDecodeError)
    good = record(2, socket.AF_INET, "127.0.0.1", 1, "127.0.0.1", 2)
    with pytest.raises(TcpLifeDecodeError, match="kind 9"):
        decode(record(9, socket.AF_INET, "127.0.0.1", 1, "127.0.0.1", 2))
    with pytest.raises(TcpLifeDecodeError, match="family 7"):
        decode(record(1, 7, "127.0.0.1", 1, "127.0.0.1", 2))
    assert decode(good + b"\0" * 8).kind == EventKind.CONNECT_FAILED, "trailing ring-buffer bytes are ignored"


# --- pure: the rules, on fake timestamps -------------------------------------------------------

CLIENT = [(1.0, "c", "CLOSE", "SYN_SENT"), (1.25, "c", "SYN_SENT", "ESTABLISHED"),
          (3.0, "c", "ESTABLISHED", "FIN_WAIT1"), (3.5, "c", "FIN_WAIT1", "FIN_WAIT2"),
          (4.0, "c", "FIN_WAIT2", "CLOSE")]
SERVER = [(0.0, "l", "CLOSE", "LISTEN"), (1.5, "s", "LISTEN", "SYN_RECV"),
          (1.5, "s", "SYN_RECV", "ESTABLISHED"), (3.5, "s", "ESTABLISHED", "CLOSE_WAIT"),
          (4.0, "s", "CLOSE_WAIT", "LAST_ACK"), (4.5, "s", "LAST_ACK", "CLOSE"), (9.0, "l", "LISTEN", "CLOSE")]


@pytest.mark.unit
def test_classify_both_sides_of_one_connection():
    assert classify(sorted(CLIENT + SERVER)) == [
        Lifecycle("CONNECT", "c", 1.25, 0.25), Lifecycle("ACCEPT", "s", 1.5, 0.0),
        Lifecycle("CLOSE", "c", 4.0, 2.75), Lifecycle("CLOSE", "s", 4.5, 3.0)]


@pytest.mark.unit
def test_classify_failures_and_what_is_not_a_connection():
    assert classify([(0.0, "r", "CLOSE", "SYN_SENT"), (0.5, "r", "SYN_SENT", "CLOSE")]) == \
        [Lifecycle("CONNECT_FAILED", "r", 0.5, 0.5)]
    assert classify([(0.0, "x", "ESTABLISHED", "FIN_WAIT1"), (1.0, "x", "FIN_WAIT2", "CLOSE")]) == [], \
        "a socket that began before we looked is unknown"
    assert classify([(0.0, "h", "LISTEN", "SYN_RECV"), (1.0, "h", "SYN_RECV", "CLOSE")]) == [], \
        "a passive child that never got established is no connection"
    simultaneous = [(0.0, "p", "CLOSE", "SYN_SENT"), (0.1, "p", "SYN_SENT", "SYN_RECV"),
                    (0.3, "p", "SYN_RECV", "ESTABLISHED")]
    assert classify(simultaneous) == [Lifecycle("CONNECT", "p", 0.3, 0.3)], "simultaneous open stays active"
    tracker = LifecycleTracker()
    for t in CLIENT + SERVER:
        tracker.on_transition(*t)
    assert len(tracker) == 0, "every socket is forgotten at CLOSE; listeners are never kept"


# --- bpf: ground truth on loopback -------------------------------------------------------------

@pytest.fixture(scope="module")
def tracer():
    """One loaded tracer for the module (a bcc compile takes a second or two)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (run `sudo make test`)")
    pytest.importorskip("bcc", reason="bcc is not importable: scripts/provision.sh installs python3-bpfcc")
    from netsprint.ebpf.tcplife.loader import TcpLifeTracer

    with TcpLifeTracer() as loaded:
        yield loaded


@dataclass
class Truth:
    """What the test did: client port -> connect() duration bound, and the server's port."""

    server_port: int = 0
    connected: dict[int, float] = field(default_factory=dict)
    refused: dict[int, float] = field(default_factory=dict)
    refused_port: int = 0


def make_connections(family: int, host: str) -> Truth:
    truth = Truth()
    with socket.socket(family) as server, socket.socket(family) as closed:
        server.bind((host, 0))
        server.listen(N_CONNECTIONS)
        truth.server_port = server.getsockname()[1]
        closed.bind((host, 0))  # bound, never listening: a SYN to it is answered with RST
        truth.refused_port = closed.getsockname()[1]
        for _ in range(N_CONNECTIONS):
            started = time.monotonic()
            client = socket.create_connection((host, truth.server_port), timeout=5)
            truth.connected[client.getsockname()[1]] = time.monotonic() - started
            accepted, _ = server.accept()
            client.close()      # the client closes first: FIN_WAIT1 -> FIN_WAIT2 -> CLOSE
            accepted.close()    # the server: CLOSE_WAIT -> LAST_ACK -> CLOSE
        for _ in range(N_REFUSED):
            with socket.socket(family) as client:
                client.bind((host, 0))  # the ephemeral port known before connect()
                port = client.getsockname()[1]
                started = time.monotonic()
                with pytest.raises(ConnectionRefusedError):
                    client.connect((host, truth.refused_port))
                truth.refused[port] = time.monotonic() - started
    return truth


def ours(events: list[TcpEvent], truth: Truth) -> list[TcpEvent]:
    ports = {truth.server_port, truth.refused_port}
    return [e for e in events if e.sport in ports or e.dport in ports]


def wanted_count(truth: Truth) -> int:
    return len(truth.connected) * 4 + len(truth.refused)  # CONNECT, ACCEPT, 2x CLOSE; FAILED


@pytest.mark.bpf
@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
                         ids=["ipv4", "ipv6"])
def test_every_connect_accept_close_and_refusal_is_reported(tracer, family, host):
    tracer.poll(0)  # drop what earlier tests left
    truth = make_connections(family, host)
    events = ours(tracer.collect(COLLECT_TIMEOUT,
                                 until=lambda got: len(ours(got, truth)) >= wanted_count(truth)), truth)
    loopback = ipaddress.ip_address(host)
    by_kind: dict[EventKind, list[TcpEvent]] = {kind: [] for kind in EventKind}
    for event in events:
        assert event.family == family and event.saddr == loopback and event.daddr == loopback, event
        by_kind[event.kind].append(event)
    me = os.getpid()

    connects = {e.sport: e for e in by_kind[EventKind.CONNECT]}
    assert len(by_kind[EventKind.CONNECT]) == len(connects) == N_CONNECTIONS, by_kind[EventKind.CONNECT]
    for port, bound in truth.connected.items():
        event = connects.get(port)
        assert event is not None, f"no CONNECT from client port {port}"
        assert event.dport == truth.server_port and event.active and event.owner_known
        assert event.pid == me, f"CONNECT pid {event.pid}: the task in connect() is this test ({me})"
        assert 0 < event.latency < bound, f"latency {event.latency} s not in (0, {bound}) measured around connect()"

    accepts = {e.dport: e for e in by_kind[EventKind.ACCEPT]}
    assert len(by_kind[EventKind.ACCEPT]) == N_CONNECTIONS and set(accepts) == set(truth.connected), \
        "one ACCEPT per client port, on the server's socket"
    assert all(e.sport == truth.server_port and not e.active for e in accepts.values())

    closes = by_kind[EventKind.CLOSE]
    client_closes = {e.sport: e for e in closes if e.active}
    server_closes = {e.dport: e for e in closes if not e.active}
    assert len(closes) == 2 * N_CONNECTIONS, f"{len(closes)} CLOSE events, want one per socket"
    assert set(client_closes) == set(server_closes) == set(truth.connected)
    assert all(e.dport == truth.server_port and e.pid == me and e.lifetime > 0 for e in client_closes.values())
    assert all(e.sport == truth.server_port and e.lifetime > 0 for e in server_closes.values())
    assert {e.oldstate for e in client_closes.values()} <= {"FIN_WAIT1", "FIN_WAIT2", "CLOSING"}, \
        "the client closed first, so it leaves through FIN_WAIT"
    for port, close in client_closes.items():
        assert close.sock_id == connects[port].sock_id and close.timestamp >= connects[port].timestamp

    failures = {e.sport: e for e in by_kind[EventKind.CONNECT_FAILED]}
    assert len(by_kind[EventKind.CONNECT_FAILED]) == len(failures) == N_REFUSED
    assert set(failures) == set(truth.refused), "one CONNECT_FAILED per refused client port"
    for port, bound in truth.refused.items():
        event = failures[port]
        assert event.dport == truth.refused_port and event.pid == me
        assert 0 < event.latency < bound, f"refusal after {event.latency} s, not in (0, {bound})"
    assert not [e for e in events if e.dport == 0], "the listener's own LISTEN transitions are ignored"


@pytest.mark.bpf
def test_udp_and_listeners_alone_make_no_events(tracer):
    tracer.poll(0)
    with socket.socket() as listener, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        udp.sendto(b"x", ("127.0.0.1", port))
        udp_port = udp.getsockname()[1]
    # a TCP connection afterwards proves the tracer was listening all along
    truth = Truth()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        truth.server_port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", truth.server_port)):
            pass
    events = tracer.collect(COLLECT_TIMEOUT, until=lambda got: any(e.dport == truth.server_port for e in got))
    assert any(e.dport == truth.server_port and e.kind == EventKind.CONNECT for e in events)
    assert not [e for e in events if {e.sport, e.dport} & {port, udp_port}], \
        "a listen()/close() and a UDP datagram are not TCP connections"


@pytest.mark.bpf
def test_kprobe_path_is_optional_and_the_tracepoint_still_works(needs_bcc):
    from netsprint.ebpf.tcplife.loader import TcpLifeTracer, kprobe_check

    check = kprobe_check()
    with TcpLifeTracer(kprobes=True) as traced:
        assert traced.using_kprobes == check.available, (traced.kprobe_status, check)
        assert traced.kprobe_status, "the feature probe says why"
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            port = server.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port)) as client:
                client_port = client.getsockname()[1]
        events = traced.collect(COLLECT_TIMEOUT, until=lambda got: any(
            e.sport == client_port and e.kind == EventKind.CLOSE for e in got))
    kinds = [e.kind for e in events if e.sport == client_port]
    assert kinds == [EventKind.CONNECT, EventKind.CLOSE], kinds


@pytest.mark.bpf
def test_an_mptcp_connection_is_reported_once_by_its_tcp_subflow(tracer):
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_MPTCP)
    except OSError as exc:
        pytest.skip(f"this kernel has no MPTCP sockets ({exc}; sysctl net.mptcp.enabled)")
    probe.close()
    tracer.poll(0)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_MPTCP) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_MPTCP) as client:
            client.settimeout(5)
            client.connect(("127.0.0.1", port))
            client_port = client.getsockname()[1]
            server.accept()[0].close()
    # the MPTCP socket fires the tracepoint too (protocol 262): only the TCP subflow counts
    events = [e for e in tracer.collect(
        COLLECT_TIMEOUT, until=lambda got: sum(port in (e.sport, e.dport) for e in got) >= 4) if port in (e.sport, e.dport)]
    kinds = sorted((e.kind.name, e.sport) for e in events)
    assert kinds == sorted([("CONNECT", client_port), ("ACCEPT", port), ("CLOSE", client_port), ("CLOSE", port)]), kinds


def test_a_full_ring_would_be_counted_not_silent(tracer):
    # Nothing floods the 256 KiB ring in these tests: the counter exists and reads zero.
    assert tracer.lost_events == 0
