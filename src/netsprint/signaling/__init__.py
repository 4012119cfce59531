"""Weeks 2-3: the signaling protocol, server and clients (peers find each other here);
week 5 adds relay_request/relay_granted and the server's UDP relay (netsprint.p2p.relay).

    framing.py   4-byte length-prefixed frames that survive half and sticky packets
    protocol.py  the JSON messages as frozen dataclasses; validation and error codes
    core.py      SignalingCore: the server's logic, sans-I/O (frames and `now` in, actions out)
    server.py    SignalingServer: the core on the week-1 reactor
    client.py    SignalingClient (reactor, callbacks) and BlockingSignalingClient
    command.py   `netsprint signal-server`

The wire format is in docs/signaling.md.
"""

from netsprint.signaling.client import (BlockingSignalingClient, SignalingClient,
                                        SignalingClosed, SignalingRejected, SignalingTimeout)
from netsprint.signaling.core import Action, Close, Send, SignalingCore
from netsprint.signaling.framing import MAX_FRAME_BYTES, FrameDecoder, FrameError, encode_frame
from netsprint.signaling.protocol import (PROTOCOL_VERSION, Answer, Candidate, CandidateAddr,
                                          Endpoint, Error, Heartbeat, HeartbeatAck, Message,
                                          MessageError, Offer, PeerLeft, Register, Registered,
                                          RelayGranted, RelayRequest, decode_message,
                                          encode_message)
from netsprint.signaling.server import SignalingServer

__all__ = [
    "MAX_FRAME_BYTES", "FrameDecoder", "FrameError", "encode_frame",
    "PROTOCOL_VERSION", "Message", "MessageError", "decode_message", "encode_message",
    "Register", "Registered", "Offer", "Answer", "Candidate", "CandidateAddr", "Endpoint",
    "Heartbeat", "HeartbeatAck", "Error", "PeerLeft", "RelayRequest", "RelayGranted",
    "SignalingCore", "Send", "Close", "Action", "SignalingServer",
    "SignalingClient", "BlockingSignalingClient", "SignalingClosed", "SignalingRejected",
    "SignalingTimeout",
]
