"""The signaling messages: one frozen dataclass per type, their JSON encoding, validation.

A payload is one UTF-8 JSON object with `"v": 1` and a `"type"` (docs/signaling.md has the
wire format with examples). `decode_message` checks everything a peer could get wrong and
raises `MessageError` with one of the protocol's error codes, so a server can answer with
an `error` message; fields it does not know are ignored (forward compatibility).
`encode_message` writes compact UTF-8 JSON and trusts its input: build messages in code,
decode them from the wire.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Union, get_args

from netsprint.errors import DecodeError

PROTOCOL_VERSION = 1
PEER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
CANDIDATE_KINDS = frozenset({"host", "srflx", "relay"})
MAX_CANDIDATES = 16
MAX_SESSION_CHARS = 64
# An error reply names what was wrong, but never echoes more than this of the input: a
# 60 KB "type" echoed whole would outgrow the frame limit clients read with.
MAX_ECHO_CHARS = 64
# The longest textual IP address: INET6_ADDRSTRLEN (46) less its NUL. ipaddress accepts an
# IPv6 zone id of any length ("fe80::1%..."), which would leave candidate size unbounded.
MAX_IP_CHARS = 45
# Relay sessions (week 5): a session id is the 8-byte id in every p2p packet header
# (p2p/packet.py), as 16 hex digits; a relay token is 16 random bytes, as 32 hex digits.
RELAY_SESSION_PATTERN = re.compile(r"[0-9a-fA-F]{16}")
RELAY_TOKEN_PATTERN = re.compile(r"[0-9a-fA-F]{32}")
# A peer's NAT mapping behaviour (RFC 4787 section 4.1), as Offer/Answer may advertise it.
MAPPING_BEHAVIOURS = frozenset({"endpoint-independent", "address-dependent",
                                "address-and-port-dependent"})

# The error codes (docs/signaling.md says when each is sent).
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
VERSION = "version"
NOT_REGISTERED = "not_registered"
ALREADY_REGISTERED = "already_registered"
PEER_ID_TAKEN = "peer_id_taken"
UNKNOWN_PEER = "unknown_peer"
SPOOFED_FROM = "spoofed_from"
FRAME_TOO_LARGE = "frame_too_large"
SLOW_CONSUMER = "slow_consumer"
RELAY_REFUSED = "relay_refused"
ERROR_CODES = frozenset({BAD_JSON, BAD_MESSAGE, UNKNOWN_TYPE, VERSION, NOT_REGISTERED,
                         ALREADY_REGISTERED, PEER_ID_TAKEN, UNKNOWN_PEER, SPOOFED_FROM,
                         FRAME_TOO_LARGE, SLOW_CONSUMER, RELAY_REFUSED})


class MessageError(DecodeError):
    """A payload that is not a valid message. `code` is the protocol error code to answer
    with; `ref` the message's type when it was readable."""

    def __init__(self, code: str, reason: str, ref: str | None = None, offset: int = 0) -> None:
        super().__init__(reason, offset)
        self.code = code
        self.ref = ref


# -- the messages ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CandidateAddr:
    """One address a peer may be reached at: its own (host), as a STUN server saw it
    (srflx, server reflexive) or on a TURN relay (relay)."""

    ip: str
    port: int
    kind: str


@dataclass(frozen=True)
class Endpoint:
    """An (ip, port) pair: the address the server saw a client connect from."""

    ip: str
    port: int


@dataclass(frozen=True)
class Register:
    TYPE: ClassVar[str] = "register"
    peer_id: str


@dataclass(frozen=True)
class Registered:
    TYPE: ClassVar[str] = "registered"
    peer_id: str
    observed: Endpoint


@dataclass(frozen=True)
class Offer:
    """Sent with `to`; the server forwards it with `from_` (wire: "from") set to the
    sender's registered id. `mapping` optionally advertises the sender's NAT mapping
    behaviour (one of MAPPING_BEHAVIOURS), for birthday-mode punching."""

    TYPE: ClassVar[str] = "offer"
    to: str
    candidates: tuple[CandidateAddr, ...]
    session: str | None = None
    from_: str | None = None
    mapping: str | None = None


@dataclass(frozen=True)
class Answer:
    TYPE: ClassVar[str] = "answer"
    to: str
    candidates: tuple[CandidateAddr, ...]
    session: str | None = None
    from_: str | None = None
    mapping: str | None = None


@dataclass(frozen=True)
class Candidate:
    """One more candidate, sent as soon as it is known (trickle)."""

    TYPE: ClassVar[str] = "candidate"
    to: str
    candidate: CandidateAddr
    session: str | None = None
    from_: str | None = None


@dataclass(frozen=True)
class Heartbeat:
    TYPE: ClassVar[str] = "heartbeat"
    seq: int


@dataclass(frozen=True)
class HeartbeatAck:
    TYPE: ClassVar[str] = "heartbeat_ack"
    seq: int


@dataclass(frozen=True)
class Error:
    TYPE: ClassVar[str] = "error"
    code: str
    reason: str
    ref: str | None = None


@dataclass(frozen=True)
class PeerLeft:
    TYPE: ClassVar[str] = "peer_left"
    peer_id: str


@dataclass(frozen=True)
class RelayRequest:
    """Ask the server to relay `session` (16 hex digits) between the sender and `to`.
    Each of the two peers asks separately and gets its own token."""

    TYPE: ClassVar[str] = "relay_request"
    to: str
    session: str


@dataclass(frozen=True)
class RelayGranted:
    """The answer to a relay_request: send RELAY_BIND with `token` (32 hex digits) to
    `relay` (UDP); the grant lasts `lifetime` seconds at most."""

    TYPE: ClassVar[str] = "relay_granted"
    session: str
    token: str
    relay: Endpoint
    lifetime: float


Message = Union[Register, Registered, Offer, Answer, Candidate, Heartbeat, HeartbeatAck,
                Error, PeerLeft, RelayRequest, RelayGranted]
Forwarded = Union[Offer, Answer, Candidate]
FORWARDED_TYPES = get_args(Forwarded)  # the types the server passes on, for isinstance


# -- encoding -------------------------------------------------------------------------------

def encode_message(msg: Message) -> bytes:
    """The payload (not framed): compact UTF-8 JSON, `v` and `type` first."""
    obj: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": msg.TYPE}
    obj.update(_ENCODERS[type(msg)](msg))
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _endpoint_json(e: Endpoint) -> dict[str, Any]:
    return {"ip": e.ip, "port": e.port}


def _candidate_json(c: CandidateAddr) -> dict[str, Any]:
    return {"ip": c.ip, "port": c.port, "kind": c.kind}


def _encode_candidates(msg: Offer | Answer) -> dict[str, Any]:
    return _with_optional({"to": msg.to,
                           "candidates": [_candidate_json(c) for c in msg.candidates]}, msg)


def _with_optional(obj: dict[str, Any], msg: Forwarded) -> dict[str, Any]:
    if msg.session is not None:
        obj["session"] = msg.session
    if getattr(msg, "mapping", None) is not None:  # Offer and Answer only
        obj["mapping"] = msg.mapping
    if msg.from_ is not None:
        obj["from"] = msg.from_
    return obj


def _encode_error(msg: Error) -> dict[str, Any]:
    obj: dict[str, Any] = {"code": msg.code, "reason": msg.reason}
    if msg.ref is not None:
        obj["ref"] = msg.ref
    return obj


_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {
    Register: lambda m: {"peer_id": m.peer_id},
    Registered: lambda m: {"peer_id": m.peer_id, "observed": _endpoint_json(m.observed)},
    Offer: _encode_candidates,
    Answer: _encode_candidates,
    Candidate: lambda m: _with_optional(
        {"to": m.to, "candidate": _candidate_json(m.candidate)}, m),
    Heartbeat: lambda m: {"seq": m.seq},
    HeartbeatAck: lambda m: {"seq": m.seq},
    Error: _encode_error,
    PeerLeft: lambda m: {"peer_id": m.peer_id},
    RelayRequest: lambda m: {"to": m.to, "session": m.session},
    RelayGranted: lambda m: {"session": m.session, "token": m.token,
                             "relay": _endpoint_json(m.relay),
                             "lifetime": m.lifetime},
}


# -- decoding -------------------------------------------------------------------------------

def decode_message(payload: bytes) -> Message:
    """The message in `payload`, or MessageError with the code to answer with."""
    obj = _parse_json_object(payload)
    msg_type = obj.get("type")
    ref = msg_type[:MAX_ECHO_CHARS] if isinstance(msg_type, str) else None
    version = obj.get("v")
    # `type(...) is int`: JSON true would pass `== 1` (bool is an int), 1.0 would too.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise MessageError(VERSION, f"unsupported protocol version {_echo(version)} "
                                    f"(this server speaks v={PROTOCOL_VERSION})", ref)
    if ref is None:
        raise MessageError(BAD_MESSAGE, "field 'type' is missing or not a string")
    decoder = _DECODERS.get(msg_type)
    if decoder is None:
        raise MessageError(UNKNOWN_TYPE, f"unknown message type {_echo(msg_type)}", ref)
    return decoder(_Fields(obj, msg_type))


def _echo(value: Any) -> str:
    """repr(value) for an error reason, cut to MAX_ECHO_CHARS."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS - 3] + "..."


def _parse_json_object(payload: bytes) -> dict[str, Any]:
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError(BAD_JSON, f"payload is not UTF-8: {exc.reason}",
                           offset=exc.start) from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MessageError(BAD_JSON, f"payload is not JSON: {exc.msg}", offset=exc.pos) from None
    except (ValueError, RecursionError) as exc:
        # NaN/Infinity (not JSON), integers past CPython's digit limit, nesting too deep
        # for the parser's recursion.
        raise MessageError(BAD_JSON, f"payload is not acceptable JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MessageError(BAD_JSON, f"payload is JSON but a {type(obj).__name__}, "
                                     "not an object")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


class _Fields:
    """Typed access to one message's fields; every failure is a bad_message naming the
    field (dotted for nested ones: `candidates[2].port`)."""

    __slots__ = ("obj", "ref")

    def __init__(self, obj: dict[str, Any], ref: str) -> None:
        self.obj = obj
        self.ref = ref

    def fail(self, name: str, why: str) -> MessageError:
        return MessageError(BAD_MESSAGE, f"field '{name}' {why}", self.ref)

    def text(self, name: str, max_chars: int | None = None, *,
             optional: bool = False) -> str | None:
        value = self.obj.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        if max_chars is not None and len(value) > max_chars:
            raise self.fail(name, f"must be at most {max_chars} characters")
        if not _is_utf8_encodable(value):
            raise self.fail(name, "holds an unpaired surrogate (not valid Unicode)")
        return value

    def peer_id(self, name: str, *, optional: bool = False) -> str | None:
        return self.matching(name, PEER_ID_PATTERN,
                             "a peer id: 1-64 characters of A-Z a-z 0-9 _ . -",
                             optional=optional)

    def integer(self, name: str, value: Any, low: int, high: int | None = None) -> int:
        # `type(...) is int`: bool is an int subclass, and JSON true is not a number.
        if type(value) is not int or value < low or (high is not None and value > high):
            span = f"{low}..{high}" if high is not None else f">= {low}"
            raise self.fail(name, f"must be an integer {span}")
        return value

    def ip(self, name: str, value: Any) -> str:
        if not isinstance(value, str):  # ip_address() would also take an int
            raise self.fail(name, "must be an IP address string")
        if len(value) > MAX_IP_CHARS:
            raise self.fail(name, f"is longer than any IP address ({MAX_IP_CHARS} characters)")
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise self.fail(name, "is not an IP address") from None
        return value

    def candidate(self, name: str, value: Any) -> CandidateAddr:
        if not isinstance(value, dict):
            raise self.fail(name, "must be an object with ip, port and kind")
        kind = value.get("kind")
        if not isinstance(kind, str) or kind not in CANDIDATE_KINDS:
            raise self.fail(f"{name}.kind", "must be one of host, srflx, relay")
        return CandidateAddr(ip=self.ip(f"{name}.ip", value.get("ip")),
                             port=self.integer(f"{name}.port", value.get("port"), 1, 65535),
                             kind=kind)

    def matching(self, name: str, pattern: re.Pattern[str], what: str, *,
                 optional: bool = False) -> str | None:
        value = self.obj.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise self.fail(name, f"must be {what}")
        return value

    def endpoint(self, name: str) -> Endpoint:
        value = self.obj.get(name)
        if not isinstance(value, dict):
            raise self.fail(name, "must be an object with ip and port")
        return Endpoint(ip=self.ip(f"{name}.ip", value.get("ip")),
                        port=self.integer(f"{name}.port", value.get("port"), 1, 65535))

    def seconds(self, name: str) -> float:
        value = self.obj.get(name)
        # JSON 1e400 parses to inf: a lifetime must be a finite positive number.
        if (type(value) not in (int, float) or not math.isfinite(value) or value <= 0):
            raise self.fail(name, "must be a finite number of seconds > 0")
        return float(value)

    def mapping(self, name: str) -> str | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or value not in MAPPING_BEHAVIOURS:
            raise self.fail(name, "must be one of " + ", ".join(sorted(MAPPING_BEHAVIOURS)))
        return value

    def candidates(self, name: str) -> tuple[CandidateAddr, ...]:
        value = self.obj.get(name)
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_CANDIDATES:
            raise self.fail(name, f"must be a list of 1..{MAX_CANDIDATES} candidates")
        return tuple(self.candidate(f"{name}[{i}]", c) for i, c in enumerate(value))


def _is_utf8_encodable(text: str) -> bool:
    # JSON's "\ud800" escape gives a lone surrogate, which UTF-8 cannot carry: forwarding
    # it would make the encoder fail later, far from the cause.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _forwarded_fields(f: _Fields) -> dict[str, Any]:
    return {"to": f.peer_id("to"),
            "session": f.text("session", MAX_SESSION_CHARS, optional=True),
            "from_": f.peer_id("from", optional=True)}


def _candidates_decoder(cls: type[Offer] | type[Answer]) -> Callable[[_Fields], Message]:
    """Offer and Answer carry the same fields."""
    return lambda f: cls(candidates=f.candidates("candidates"), mapping=f.mapping("mapping"),
                         **_forwarded_fields(f))


def _decode_registered(f: _Fields) -> Registered:
    return Registered(peer_id=f.peer_id("peer_id"), observed=f.endpoint("observed"))


_SESSION_HEX = "16 hex digits (the 8-byte p2p session id)"
_TOKEN_HEX = "32 hex digits (the 16-byte relay token)"


def _decode_relay_request(f: _Fields) -> RelayRequest:
    return RelayRequest(to=f.peer_id("to"),
                        session=f.matching("session", RELAY_SESSION_PATTERN, _SESSION_HEX))


def _decode_relay_granted(f: _Fields) -> RelayGranted:
    return RelayGranted(session=f.matching("session", RELAY_SESSION_PATTERN, _SESSION_HEX),
                        token=f.matching("token", RELAY_TOKEN_PATTERN, _TOKEN_HEX),
                        relay=f.endpoint("relay"), lifetime=f.seconds("lifetime"))


def _decode_error(f: _Fields) -> Error:
    # Any code string is accepted: a newer server may send codes this client lacks.
    return Error(code=f.text("code"), reason=f.text("reason"), ref=f.text("ref", optional=True))


_DECODERS: dict[str, Callable[[_Fields], Message]] = {
    "register": lambda f: Register(peer_id=f.peer_id("peer_id")),
    "registered": _decode_registered,
    "offer": _candidates_decoder(Offer),
    "answer": _candidates_decoder(Answer),
    "candidate": lambda f: Candidate(candidate=f.candidate("candidate", f.obj.get("candidate")),
                                     **_forwarded_fields(f)),
    "heartbeat": lambda f: Heartbeat(seq=f.integer("seq", f.obj.get("seq"), 0)),
    "heartbeat_ack": lambda f: HeartbeatAck(seq=f.integer("seq", f.obj.get("seq"), 0)),
    "error": _decode_error,
    "peer_left": lambda f: PeerLeft(peer_id=f.peer_id("peer_id")),
    "relay_request": _decode_relay_request,
    "relay_granted": _decode_relay_granted,
}
