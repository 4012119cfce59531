"""The STUN server: the sans-I/O core's decisions (unit) and the reactor shell on loopback
(net), 2 IPs x 2 ports on 127.0.0.1 and 127.0.0.2 (all of 127/8 is loopback on Linux)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from netsprint.lab.coturn import free_port_pair, wait_until_answering
from netsprint.stun import attributes as attrs
from netsprint.stun.attributes import ChangeRequest, ErrorCode
from netsprint.stun.client import binding_request
from netsprint.stun.integrity import add_fingerprint, verify_fingerprint
from netsprint.stun.message import (BINDING, ERROR_RESPONSE, INDICATION, REQUEST,
                                    SUCCESS_RESPONSE, Attribute, Message, decode, encode)
from netsprint.stun.server import StunServerCore, serving_in_thread

PRIMARY = ("192.0.2.10", 3478)
ALT_IP = "192.0.2.11"
CLIENT = ("198.51.100.7", 40000)
TID = bytes(range(12))


def request(*attributes: Attribute, method: int = BINDING, msg_class: int = REQUEST) -> bytes:
    return encode(Message(method, msg_class, TID, tuple(attributes)))


def change(ip: bool, port: bool) -> Attribute:
    return Attribute(attrs.CHANGE_REQUEST, ChangeRequest(ip, port))


@pytest.fixture
def core() -> StunServerCore:
    return StunServerCore(PRIMARY, ALT_IP)


# -- the core (no sockets) -------------------------------------------------------------------

@pytest.mark.unit
def test_address_set_is_two_ips_by_two_ports(core):
    assert core.local_addresses == [("192.0.2.10", 3478), ("192.0.2.10", 3479),
                                    ("192.0.2.11", 3478), ("192.0.2.11", 3479)]


@pytest.mark.unit
@pytest.mark.parametrize("local", [PRIMARY, ("192.0.2.11", 3479), ("192.0.2.10", 3479)])
def test_fast_path_equals_the_general_encoding(core, local):
    data, sender, destination = core.handle(request(), CLIENT, local)
    other = core.other_address(local)
    expected = encode(Message(BINDING, SUCCESS_RESPONSE, TID, (
        Attribute(attrs.XOR_MAPPED_ADDRESS, CLIENT),
        Attribute(attrs.MAPPED_ADDRESS, CLIENT),
        Attribute(attrs.RESPONSE_ORIGIN, local),
        Attribute(attrs.OTHER_ADDRESS, other))))
    assert data == expected
    assert (sender, destination) == (local, CLIENT)
    assert other[0] != local[0] and other[1] != local[1]  # RFC 5780 §7.4: differs in both


@pytest.mark.unit
@pytest.mark.parametrize("flags, sender", [
    ((False, False), ("192.0.2.10", 3478)), ((True, False), ("192.0.2.11", 3478)),
    ((False, True), ("192.0.2.10", 3479)), ((True, True), ("192.0.2.11", 3479))])
def test_change_request_picks_the_sending_socket(core, flags, sender):
    data, got_sender, destination = core.handle(request(change(*flags)), CLIENT, PRIMARY)
    response = decode(data)
    assert got_sender == sender
    assert response.get(attrs.RESPONSE_ORIGIN) == sender
    assert response.get(attrs.OTHER_ADDRESS) == ("192.0.2.11", 3479)
    assert response.get(attrs.XOR_MAPPED_ADDRESS) == CLIENT
    assert destination == CLIENT


@pytest.mark.unit
def test_change_request_from_the_alternate_socket_flips_back(core):
    _, sender, _ = core.handle(request(change(True, True)), CLIENT, ("192.0.2.11", 3479))
    assert sender == PRIMARY


@pytest.mark.unit
def test_response_port_redirects_to_the_client_ip(core):
    data, _, destination = core.handle(request(Attribute(attrs.RESPONSE_PORT, 5555)),
                                       CLIENT, PRIMARY)
    assert destination == (CLIENT[0], 5555)
    assert decode(data).get(attrs.XOR_MAPPED_ADDRESS) == CLIENT  # the request's real source


@pytest.mark.unit
@pytest.mark.parametrize("data", [request(), request(change(True, True)),
                                  request(Attribute(attrs.SOFTWARE, "client"))],
                         ids=["bare", "change-request", "software"])
def test_success_carries_both_mapped_addresses(core, data):
    # RFC 5780 §6.1: "The server MUST include both MAPPED-ADDRESS and XOR-MAPPED-ADDRESS".
    response = decode(core.handle(data, CLIENT, PRIMARY)[0])
    assert response.get(attrs.XOR_MAPPED_ADDRESS) == CLIENT
    assert response.get(attrs.MAPPED_ADDRESS) == CLIENT


@pytest.mark.unit
def test_padding_with_response_port_gets_400(core):
    # RFC 5780 §6.1 / §7.5: such a request MUST NOT be processed; it gets a 400.
    data = request(Attribute(attrs.RESPONSE_PORT, 5555), Attribute(attrs.PADDING, bytes(200)))
    response, sender, destination = core.handle(data, CLIENT, PRIMARY)
    decoded = decode(response)
    assert decoded.msg_class == ERROR_RESPONSE
    assert decoded.get(attrs.ERROR_CODE).code == 400
    assert (sender, destination) == (PRIMARY, CLIENT)  # not redirected to RESPONSE-PORT
    assert core.errors_400 == 1


@pytest.mark.unit
def test_unknown_comprehension_required_gets_420(core):
    data, sender, destination = core.handle(
        request(Attribute(0x7F01, b"x"), Attribute(0xC0DE, b"optional")), CLIENT, PRIMARY)
    response = decode(data)
    assert response.msg_class == ERROR_RESPONSE and response.transaction_id == TID
    assert response.get(attrs.ERROR_CODE) == ErrorCode(420, "Unknown Attribute")
    assert response.get(attrs.UNKNOWN_ATTRIBUTES) == (0x7F01,)
    assert (sender, destination) == (PRIMARY, CLIENT)
    assert core.errors_420 == 1


@pytest.mark.unit
def test_change_request_without_alternate_address_gets_420():
    single = StunServerCore(PRIMARY)
    response = decode(single.handle(request(change(True, False)), CLIENT, PRIMARY)[0])
    assert response.get(attrs.ERROR_CODE).code == 420
    assert response.get(attrs.UNKNOWN_ATTRIBUTES) == (attrs.CHANGE_REQUEST,)
    plain = decode(single.handle(request(), CLIENT, PRIMARY)[0])
    assert attrs.OTHER_ADDRESS not in plain
    assert plain.get(attrs.RESPONSE_ORIGIN) == PRIMARY


@pytest.mark.unit
def test_unknown_method_gets_400(core):
    response = decode(core.handle(request(method=0x003), CLIENT, PRIMARY)[0])
    assert response.get(attrs.ERROR_CODE).code == 400 and response.method == 0x003


@pytest.mark.unit
@pytest.mark.parametrize("data, counter", [
    (b"hello, not STUN at all", "dropped_not_stun"),
    (bytes(20), "dropped_not_stun"),
    (request()[:2] + b"\x00\x04" + request()[4:] + b"\x00\x20\x00\x09", "dropped_malformed"),
    (request() + b"\x00\x00\x00\x00", "dropped_not_stun"),  # length field says 0
    (request(Attribute(attrs.XOR_MAPPED_ADDRESS, CLIENT))[:-8] + b"\x00\x09\x00\x00"
     + bytes(4), "dropped_malformed"),
    (request(msg_class=INDICATION), "dropped_not_request"),
    (request(msg_class=SUCCESS_RESPONSE), "dropped_not_request"),
])
def test_silent_drops_are_counted(core, data, counter):
    assert core.handle(data, CLIENT, PRIMARY) is None
    assert core.counters()[counter] == 1
    assert core.responses == 0


@pytest.mark.unit
def test_bad_fingerprint_is_dropped_and_good_one_answered_in_kind(core):
    good = add_fingerprint(request(Attribute(attrs.SOFTWARE, "x")))
    bad = good[:-1] + bytes([good[-1] ^ 1])
    assert core.handle(bad, CLIENT, PRIMARY) is None
    assert core.dropped_malformed == 1
    data = core.handle(good, CLIENT, PRIMARY)[0]
    assert verify_fingerprint(data)


@pytest.mark.unit
@pytest.mark.parametrize("source", [CLIENT, ("2001:db8::7", 40000)])
def test_bare_request_gets_at_most_80_bytes(core, source):
    data = core.handle(request(), source, PRIMARY)[0]
    assert len(data) <= 80
    assert decode(data).get(attrs.XOR_MAPPED_ADDRESS) == source


@pytest.mark.unit
@pytest.mark.parametrize("pad_bytes", [0, 4, 40, 400, 1500])
def test_padding_never_makes_the_response_larger_than_the_request(core, pad_bytes):
    data = request(Attribute(attrs.PADDING, bytes(pad_bytes)))
    response = core.handle(data, CLIENT, PRIMARY)[0]
    assert len(response) <= max(80, len(data))
    decoded = decode(response)
    assert decoded.get(attrs.XOR_MAPPED_ADDRESS) == CLIENT
    # RFC 5780 §6.1: a request with PADDING MUST get PADDING back; it fills the answer up to
    # the request's size when there is room (§7.6), and is as short as fits otherwise.
    assert attrs.PADDING in decoded
    if pad_bytes >= 40:
        assert len(response) > len(data) - 8


# -- the shell on loopback -------------------------------------------------------------------

@pytest.fixture
def rfc5780_server():
    with serving_in_thread(("127.0.0.1", 0), "127.0.0.2") as server:
        yield server


@pytest.fixture
def udp_client():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    try:
        yield sock
    finally:
        sock.close()


@pytest.mark.net
def test_binding_over_loopback(rfc5780_server):
    result = binding_request(rfc5780_server.primary, local_addr=("127.0.0.1", 0), timeout=3)
    assert result is not None and result.ok
    assert result.mapped_address == result.local_address
    assert result.source_address == rfc5780_server.primary
    assert result.response_origin == rfc5780_server.primary
    assert result.other_address == ("127.0.0.2", rfc5780_server.primary[1] + 1)


@pytest.fixture
def ipv6_server():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with serving_in_thread(("::1", 0)) as server:
        yield server


@pytest.mark.net
def test_binding_to_an_ipv6_server_without_naming_a_local_address(ipv6_server):
    # The default local address follows the server's family: an IPv4 socket cannot send
    # to ::1, which made every IPv6 server look broken ("cannot send").
    result = binding_request(ipv6_server.primary, timeout=3)
    assert result is not None and result.ok
    assert result.mapped_address == ("::1", result.local_address.port)


@pytest.mark.net
@pytest.mark.parametrize("change_ip, change_port", [(True, False), (False, True), (True, True)])
def test_change_request_replies_come_from_the_right_socket(rfc5780_server, change_ip,
                                                           change_port):
    ip, port = rfc5780_server.primary
    expected = ("127.0.0.2" if change_ip else ip, port + 1 if change_port else port)
    result = binding_request(rfc5780_server.primary, local_addr=("127.0.0.1", 0),
                             change_ip=change_ip, change_port=change_port, timeout=3)
    assert result is not None
    assert result.source_address == expected  # the kernel's view, not just the attribute
    assert result.response_origin == expected


@pytest.mark.net
def test_response_port_over_loopback(rfc5780_server, udp_client):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        other.settimeout(2.0)
        data = encode(Message(BINDING, REQUEST, TID, (
            Attribute(attrs.RESPONSE_PORT, other.getsockname()[1]),)))
        udp_client.sendto(data, rfc5780_server.primary)
        reply, source = other.recvfrom(2048)
    response = decode(reply)
    assert response.get(attrs.XOR_MAPPED_ADDRESS) == udp_client.getsockname()
    assert source == rfc5780_server.primary


@pytest.mark.net
def test_420_over_loopback(rfc5780_server, udp_client):
    udp_client.sendto(request(Attribute(0x0031, b"?")), rfc5780_server.primary)
    response = decode(udp_client.recvfrom(2048)[0])
    assert response.get(attrs.ERROR_CODE).code == 420
    assert response.get(attrs.UNKNOWN_ATTRIBUTES) == (0x0031,)


@pytest.mark.net
def test_bare_request_amplification_over_loopback(rfc5780_server, udp_client):
    udp_client.sendto(encode(Message(BINDING, REQUEST, os.urandom(12))), rfc5780_server.primary)
    reply = udp_client.recvfrom(2048)[0]
    assert len(reply) <= 80


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def _garbage(index: int) -> bytes:
    """Three kinds in turn: not STUN, an attribute overrunning the message, a CHANGE-REQUEST
    of the wrong length (both malformed STUN)."""
    header = request()[:2] + b"\x00\x08" + request()[4:20]
    kinds = [os.urandom(1 + index % 64),
             header + b"\x80\x22\x00\x10" + bytes(4),
             header + b"\x00\x03\x00\x00" + b"\x80\x22\x00\x00"]  # CHANGE-REQUEST, 0 bytes
    return kinds[index % len(kinds)]


@pytest.mark.net
def test_keeps_answering_during_and_after_a_malformed_burst(rfc5780_server, udp_client):
    counters = rfc5780_server.counters
    sent, chunk, answered = 0, 100, 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        for _ in range(50):  # 5,000 bad datagrams in chunks the socket buffer can hold
            for _ in range(chunk):
                attacker.sendto(_garbage(sent), rfc5780_server.primary)
                sent += 1
            result = binding_request(rfc5780_server.primary, local_addr=("127.0.0.1", 0),
                                     timeout=3)
            answered += result is not None and result.ok
            assert _wait_for(lambda: counters()["dropped_malformed"]
                             + counters()["dropped_not_stun"] == sent)
    assert answered == 50
    after = binding_request(rfc5780_server.primary, local_addr=("127.0.0.1", 0), timeout=3)
    assert after is not None and after.ok
    final = counters()
    assert final["dropped_malformed"] > 0 and final["dropped_not_stun"] > 0
    assert final["requests"] == final["responses"] == 51


@pytest.mark.net
def test_stun_server_command_serves_and_prints_counters_on_ctrl_c():
    port = free_port_pair(["127.0.0.1", "127.0.0.2"])
    proc = subprocess.Popen([sys.executable, "-m", "netsprint", "stun-server", "--listen",
                             f"127.0.0.1:{port}", "--alt", "127.0.0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_answering(("127.0.0.1", port), proc, timeout=20, name="netsprint stun-server")
        result = binding_request(("127.0.0.1", port), local_addr=("127.0.0.1", 0),
                                 change_ip=True, change_port=True, timeout=3)
        assert result is not None and result.source_address == ("127.0.0.2", port + 1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    both = out + err  # the log line goes wherever netsprint.log sends it
    assert "RFC 5780" in both and f"127.0.0.2:{port + 1}" in both
    assert "requests" in err and "dropped_not_stun" in err
