"""RFC 5769's four STUN test vectors (and RFC 8489 B.1 as corrected in its errata).

The bytes are RFC 5769 §2.1-2.4 as printed there. 2.1-2.3 pad with spaces (0x20) and their
MAC covers those bytes, so integrity is checked over the received bytes, never a
re-encoding; the zero-padded re-encodings (DERIVED) come from
reference/rfc5769-vectors.txt, where aioice reproduced them independently.
"""

from __future__ import annotations

import hashlib

import pytest

from netsprint.stun import attributes as attrs
from netsprint.stun.integrity import (long_term_key, protect, short_term_key,
                                      verify_fingerprint, verify_message_integrity,
                                      verify_message_integrity_sha256)
from netsprint.stun.message import (BINDING, REQUEST, SUCCESS_RESPONSE, Message, decode,
                                    encode, is_stun)

pytestmark = pytest.mark.unit

PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")

SAMPLE_REQUEST = bytes.fromhex(  # RFC 5769 §2.1
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e7400"
    "2400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aea"
    "a70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf")
IPV4_RESPONSE = bytes.fromhex(  # RFC 5769 §2.2
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f72200020000800"
    "01a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96")
IPV6_RESPONSE = bytes.fromhex(  # RFC 5769 §2.3
    "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f72200020001400"
    "02a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3"
    "ed4180280004c8fb0b4c")
LONG_TERM_REQUEST = bytes.fromhex(  # RFC 5769 §2.4
    "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382"
    "b900000015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578"
    "616d706c652e6f72670000080014f67024656dd64a3e02b8e0712e85c9a28ca89666")
RFC8489_B1_CORRECTED = bytes.fromhex(
    "000100902112a44278ad3433c6ad72c029da412e001e00204a3cf38fef6992bda952c6780417da0f24"
    "819415569e60b205c46e41407f1704001500296f624d61744a6f733241414143662f2f3439396b3935"
    "3464364f4c33346f4c394653547679363473410000000014000b6578616d706c652e6f726700001d00"
    "0400020000001c0020b5c7bf005b6c52a21c51c5e892f81924136296cb927c43149309278cc6518e65")

DERIVED_ZERO_PADDED = {
    "request": bytes.fromhex(
        "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e"
        "74002400046e0001ff80290008932ff9b151263b36000600096576746a3a683676590000000008"
        "00147907c2d2edbfea480e4c76d82962d5c3742af9e380280004e352928d"),
    "ipv4": bytes.fromhex(
        "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7200002000"
        "080001a147e112a643000800145d6b58bead94e07eef0dfc1282a2bd0843141028802800042516"
        "7a15"),
    "ipv6": bytes.fromhex(
        "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7200002000"
        "140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014bd036d6a331750dfe2edc58e6434"
        "55cff5c8e264802800044f260293"),
}
SHORT_TERM_VECTORS = {"request": SAMPLE_REQUEST, "ipv4": IPV4_RESPONSE, "ipv6": IPV6_RESPONSE}

USERNAME_24 = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"  # マトリックス
REALM_24 = "example.org"


def test_sample_request_decodes_with_its_fields():
    message = decode(SAMPLE_REQUEST)
    assert (message.method, message.msg_class) == (BINDING, REQUEST)
    assert message.transaction_id == TID
    assert message.get(attrs.SOFTWARE) == "STUN test client"
    assert message.get(attrs.USERNAME) == "evtj:h6vY"  # the 0x20 padding is not text
    assert message.get(0x0024) == bytes.fromhex("6e0001ff")  # PRIORITY, kept raw
    assert message.get(0x8029) == bytes.fromhex("932ff9b151263b36")  # ICE-CONTROLLED, raw
    assert message.unknown_comprehension_required() == (0x0024,)


@pytest.mark.parametrize("name", SHORT_TERM_VECTORS)
def test_short_term_vectors_verify(name):
    data = SHORT_TERM_VECTORS[name]
    assert is_stun(data)
    decode(data)
    assert verify_message_integrity(data, short_term_key(PASSWORD))
    assert verify_fingerprint(data)


@pytest.mark.parametrize("name", SHORT_TERM_VECTORS)
def test_wrong_password_fails_integrity(name):
    assert not verify_message_integrity(SHORT_TERM_VECTORS[name],
                                        short_term_key("VOkJxbRl1RmTxUk/WvJxBu"))


def test_ipv4_response_mapped_address():
    message = decode(IPV4_RESPONSE)
    assert message.msg_class == SUCCESS_RESPONSE
    assert message.get(attrs.XOR_MAPPED_ADDRESS) == ("192.0.2.1", 32853)
    assert message.get(attrs.SOFTWARE) == "test vector"


def test_ipv6_response_mapped_address_uses_cookie_and_transaction_id():
    message = decode(IPV6_RESPONSE)
    assert message.get(attrs.XOR_MAPPED_ADDRESS) == ("2001:db8:1234:5678:11:2233:4455:6677",
                                                     32853)


def _flip_each_bit_before(data: bytes, end: int):
    for index in range(end):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[index] ^= 1 << bit
            yield bytes(flipped)


@pytest.mark.parametrize("name", SHORT_TERM_VECTORS)
def test_any_flipped_bit_before_integrity_fails_it(name):
    data = SHORT_TERM_VECTORS[name]
    mi_offset = data.index(bytes.fromhex("00080014"), 20)
    key = short_term_key(PASSWORD)
    failures = [not verify_message_integrity(flipped, key)
                for flipped in _flip_each_bit_before(data, mi_offset + 24)]
    assert all(failures)


@pytest.mark.parametrize("name", SHORT_TERM_VECTORS)
def test_any_flipped_bit_fails_fingerprint(name):
    data = SHORT_TERM_VECTORS[name]
    assert not any(verify_fingerprint(flipped) for flipped in _flip_each_bit_before(data, len(data)))


def test_long_term_request_fields():
    message = decode(LONG_TERM_REQUEST)
    assert message.get(attrs.USERNAME) == USERNAME_24
    assert message.get(attrs.NONCE) == "f//499k954d6OL34oL9FSTvy64sA"
    assert message.get(attrs.REALM) == REALM_24
    assert attrs.FINGERPRINT not in message
    assert not verify_fingerprint(LONG_TERM_REQUEST)


def test_long_term_key_is_md5_of_user_realm_password():
    key = long_term_key(USERNAME_24, REALM_24, "TheMatrIX")
    assert key.hex() == "e8ca7ad59d5eb0518e312911d2dab2a9"  # from RFC 5769 §2.4's notes
    assert key == hashlib.md5(f"{USERNAME_24}:{REALM_24}:TheMatrIX".encode()).digest()


@pytest.mark.parametrize("password", ["TheMatrIX", "The\u00adM\u00aatr\u2168"])
def test_long_term_request_verifies_before_and_after_saslprep(password):
    key = long_term_key(USERNAME_24, REALM_24, password)
    assert verify_message_integrity(LONG_TERM_REQUEST, key)


def test_long_term_request_fails_with_another_password():
    assert not verify_message_integrity(LONG_TERM_REQUEST,
                                        long_term_key(USERNAME_24, REALM_24, "TheMatrIx"))


def test_long_term_request_round_trips_exactly():
    # 2.4 is the one vector with zero padding, so our encoder reproduces it byte for byte.
    assert encode(decode(LONG_TERM_REQUEST)) == LONG_TERM_REQUEST


@pytest.mark.parametrize("name", SHORT_TERM_VECTORS)
def test_zero_padded_reencoding_matches_derived_vector(name):
    message = decode(SHORT_TERM_VECTORS[name])
    body = Message(message.method, message.msg_class, message.transaction_id,
                   tuple(a for a in message.attributes
                         if a.type not in (attrs.MESSAGE_INTEGRITY, attrs.FINGERPRINT)))
    data = protect(encode(body), integrity_key=short_term_key(PASSWORD), fingerprint=True)
    assert data == DERIVED_ZERO_PADDED[name]


def test_rfc8489_b1_corrected_sha256_integrity():
    message = decode(RFC8489_B1_CORRECTED)
    assert message.get(attrs.REALM) == REALM_24
    assert message.get(0x001E) == hashlib.sha256(f"{USERNAME_24}:{REALM_24}".encode()).digest()
    key = hashlib.sha256(f"{USERNAME_24}:{REALM_24}:TheMatrIX".encode()).digest()
    assert verify_message_integrity_sha256(RFC8489_B1_CORRECTED, key)
    assert not verify_message_integrity_sha256(RFC8489_B1_CORRECTED, key[::-1])
