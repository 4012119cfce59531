"""Length-prefixed framing: half packets, sticky packets, the size limit."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netsprint.errors import DecodeError
from netsprint.signaling.framing import (MAX_FRAME_BYTES, FrameDecoder, FrameError,
                                         encode_frame)

pytestmark = pytest.mark.unit

PAYLOADS = [b'{"v":1,"type":"heartbeat","seq":1}', b"", b"x" * 1000, bytes(range(256))]


def test_encode_frame_is_a_big_endian_length_then_the_payload():
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


def test_one_frame_in_one_feed():
    assert FrameDecoder().feed(encode_frame(b"hello")) == [b"hello"]


def test_byte_by_byte_gives_each_frame_exactly_when_its_last_byte_arrives():
    decoder = FrameDecoder()
    stream = b"".join(encode_frame(p) for p in PAYLOADS)
    ends = set()
    offset = 0
    for payload in PAYLOADS:
        offset += 4 + len(payload)
        ends.add(offset - 1)
    got = []
    for i, byte in enumerate(stream):
        frames = decoder.feed(bytes([byte]))
        assert bool(frames) == (i in ends), f"byte {i}"
        got += frames
    assert got == PAYLOADS
    assert decoder.buffered_bytes == 0


def test_sticky_frames_in_one_chunk_and_a_partial_tail_is_kept():
    decoder = FrameDecoder()
    stream = b"".join(encode_frame(p) for p in PAYLOADS)
    tail = encode_frame(b"tail")
    assert decoder.feed(stream + tail[:6]) == PAYLOADS
    assert decoder.buffered_bytes == 6
    assert decoder.feed(tail[6:]) == [b"tail"]
    assert decoder.buffered_bytes == 0


def test_zero_length_frames_are_frames():
    assert FrameDecoder().feed(encode_frame(b"") * 3) == [b"", b"", b""]


@given(payloads=st.lists(st.binary(max_size=300), max_size=20), data=st.data())
def test_any_split_of_the_stream_gives_the_same_frames(payloads, data):
    stream = b"".join(encode_frame(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    decoder = FrameDecoder()
    got = []
    start = 0
    for cut in cuts + [len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    assert got == payloads
    assert decoder.buffered_bytes == 0


def test_a_frame_of_exactly_the_limit_is_accepted():
    decoder = FrameDecoder(max_frame_bytes=100)
    assert decoder.feed(encode_frame(b"a" * 100, 100)) == [b"a" * 100]
    assert len(FrameDecoder().feed(encode_frame(b"b" * MAX_FRAME_BYTES))[0]) == MAX_FRAME_BYTES


def test_one_byte_over_the_limit_is_refused_on_the_header_alone():
    decoder = FrameDecoder(max_frame_bytes=100)
    good = encode_frame(b"ok", 100)
    with pytest.raises(FrameError) as info:
        decoder.feed(good + struct.pack(">I", 101))  # no body sent: none is waited for
    assert info.value.offset == len(good)  # the offending length prefix
    assert info.value.frames == [b"ok"]  # the frame before it is not lost
    assert "101" in info.value.reason
    assert isinstance(info.value, DecodeError) and isinstance(info.value, ValueError)
    assert decoder.buffered_bytes == 0  # nothing of the stream is kept


def test_a_huge_length_does_not_allocate_its_body():
    decoder = FrameDecoder()
    with pytest.raises(FrameError):
        decoder.feed(b"\xff\xff\xff\xff" + b"x" * 10)
    assert decoder.buffered_bytes == 0


def test_after_a_frame_error_the_decoder_stays_failed():
    decoder = FrameDecoder(max_frame_bytes=10)
    with pytest.raises(FrameError):
        decoder.feed(struct.pack(">I", 11))
    assert decoder.failed
    with pytest.raises(FrameError) as again:
        decoder.feed(encode_frame(b"fine"))
    assert again.value.offset == 0


def test_error_offsets_count_from_the_start_of_the_stream():
    decoder = FrameDecoder(max_frame_bytes=10)
    first = encode_frame(b"12345")
    decoder.feed(first)
    decoder.feed(encode_frame(b"6")[:2])
    with pytest.raises(FrameError) as info:
        decoder.feed(encode_frame(b"6")[2:] + struct.pack(">I", 99))
    assert info.value.offset == len(first) + 5


def test_encode_frame_refuses_a_payload_over_the_limit():
    with pytest.raises(FrameError):
        encode_frame(b"x" * 11, max_frame_bytes=10)


def test_feeding_a_big_frame_byte_by_byte_does_not_copy_the_buffer_each_time():
    """O(n): 64 KiB fed a byte at a time stays fast because nothing is re-copied; checked
    by counting, not timing: the buffer is one bytearray that only grows."""
    decoder = FrameDecoder()
    frame = encode_frame(b"z" * MAX_FRAME_BYTES)
    buf_ids = set()
    for i in range(len(frame) - 1):
        assert decoder.feed(frame[i:i + 1]) == []
        buf_ids.add(id(decoder._buf))
    assert len(buf_ids) == 1
    assert decoder.buffered_bytes == len(frame) - 1
    assert decoder.feed(frame[-1:]) == [b"z" * MAX_FRAME_BYTES]
