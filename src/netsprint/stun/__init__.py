"""Week 3: STUN (RFC 8489/5389) and NAT behaviour discovery (RFC 5780).

    attributes.py   attribute types and value codecs; StunDecodeError
    message.py      header, attribute walk, receive rules: decode, encode, is_stun
    integrity.py    MESSAGE-INTEGRITY(-SHA256), FINGERPRINT, short/long-term keys
    transaction.py  ClientTransaction: the RTO/Rc/Rm retransmission schedule (sans-I/O)
    client.py       binding_request: one transaction on a real socket
    server.py       StunServerCore (sans-I/O decisions) and StunServer (reactor shell)
    nat.py          detect_nat (RFC 5780 §4.3/§4.4) and rfc3489_class (the table)
    command.py      `netsprint stun-server` and `netsprint nat-type`
"""

from netsprint.stun.attributes import (ChangeRequest, ErrorCode, StunDecodeError,
                                       TransportAddress)
from netsprint.stun.client import BindingResult, StunError, binding_request, parse_address
from netsprint.stun.message import Attribute, Message, decode, encode, is_stun
from netsprint.stun.nat import NatReport, detect_nat, rfc3489_class
from netsprint.stun.server import StunServer, StunServerCore
from netsprint.stun.transaction import ClientTransaction, TransactionFailed, Transmit

__all__ = [
    "Attribute", "Message", "decode", "encode", "is_stun", "StunDecodeError",
    "TransportAddress", "ErrorCode", "ChangeRequest",
    "ClientTransaction", "Transmit", "TransactionFailed",
    "BindingResult", "StunError", "binding_request", "parse_address",
    "StunServer", "StunServerCore", "NatReport", "detect_nat", "rfc3489_class",
]
