"""File transfer and chat records: the codec, the receiver's refusals (unsafe names,
existing files, wrong size or hash), and a 1 MiB file through a lossy simulated channel."""

from __future__ import annotations

import hashlib
import os
import random
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_p2p_channel import delivered, make_sim

from netsprint.p2p.channel import ChannelConfig
from netsprint.p2p.chat import ChatLine, chat_record, decode_record
from netsprint.p2p.conversation import Conversation
from netsprint.p2p.transfer import (DEFAULT_CHUNK_BYTES, FileChunk, FileEnd, FileOffer,
                                    FileReceiver, FileSender, RecordError, TransferError,
                                    chunk_record, end_record, offer_record, safe_name)
from netsprint.signaling.framing import FrameDecoder, encode_frame

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def feed_all(receiver: FileReceiver, sender: FileSender) -> list[float]:
    """Every record through the codec into the receiver; the progress after each."""
    progress = []
    for record in sender.records():
        receiver.feed(decode_record(record))
        progress.append(receiver.progress)
    return progress


def leftovers(directory) -> list[str]:
    return sorted(os.listdir(directory))


# -- end to end ---------------------------------------------------------------------------------

def test_one_mib_file_crosses_a_lossy_channel_intact(tmp_path):
    content = random.Random(11).randbytes(MIB)
    source = tmp_path / "out" / "photo.jpg"
    source.parent.mkdir()
    source.write_bytes(content)
    inbox = tmp_path / "in"
    inbox.mkdir()

    sender = FileSender("photo.jpg", source)
    stream = b"".join(encode_frame(record) for record in sender.records())
    assert sender.progress == 1.0
    sim = make_sim(stream, loss=0.05, duplicate=0.02, jitter=0.01, seed=4)
    sim.run_until(delivered)
    assert sim.a.stats["retransmits"] > 0

    receiver = FileReceiver(inbox)
    progress = []
    for frame in FrameDecoder().feed(bytes(sim.received)):
        receiver.feed(decode_record(frame))
        progress.append(receiver.progress)
    assert receiver.done
    assert progress == sorted(progress) and progress[-1] == 1.0 and progress[0] == 0.0
    assert receiver.path == inbox / "photo.jpg"
    assert sha256(receiver.path.read_bytes()) == sha256(content) == receiver.offer.sha256
    assert leftovers(inbox) == ["photo.jpg"]  # the .part file became the file


def test_framed_chunks_fit_one_segment():
    sender = FileSender("f.bin", bytes(5 * DEFAULT_CHUNK_BYTES + 17))
    records = list(sender.records())
    chunks = [r for r in records if r[:1] == b"D"]
    assert len(chunks) == 6
    sizes = {len(encode_frame(r)) for r in chunks[:-1]}
    assert sizes == {ChannelConfig().segment_bytes}  # full chunks fill a segment exactly
    assert len(encode_frame(chunks[-1])) == 4 + 1 + 17


def test_in_memory_receive():
    content = b"hello, peer\n" * 1000
    receiver = FileReceiver()
    progress = feed_all(receiver, FileSender("notes.txt", content))
    assert receiver.done and receiver.data == content
    assert progress[-1] == 1.0 and 0 < progress[1] < 1


def test_empty_file():
    receiver = FileReceiver()
    feed_all(receiver, FileSender("empty", b""))
    assert receiver.done and receiver.data == b"" and receiver.progress == 1.0


# -- refusals ---------------------------------------------------------------------------------

def test_hash_mismatch_raises_and_leaves_nothing(tmp_path):
    content = random.Random(2).randbytes(10_000)
    receiver = FileReceiver(tmp_path)
    records = list(FileSender("data.bin", content).records())
    tampered = bytearray(records[3])
    tampered[5] ^= 0x01  # one bit of one chunk flips on the way
    records[3] = bytes(tampered)
    for record in records[:-1]:
        receiver.feed(decode_record(record))
    with pytest.raises(TransferError, match="SHA-256 mismatch"):
        receiver.feed(decode_record(records[-1]))
    assert not receiver.done
    assert leftovers(tmp_path) == []


def test_more_or_fewer_bytes_than_offered_raise(tmp_path):
    offer = FileOffer("x.bin", 10, sha256(bytes(10)))
    receiver = FileReceiver(tmp_path)
    receiver.feed(offer)
    with pytest.raises(TransferError, match="more than the offered"):
        receiver.feed(FileChunk(bytes(11)))
    assert leftovers(tmp_path) == []
    with pytest.raises(TransferError, match="already failed"):
        receiver.feed(FileEnd())  # a failed transfer stays failed
    short = FileReceiver()
    short.feed(offer)
    short.feed(FileChunk(bytes(9)))
    with pytest.raises(TransferError, match="9 of 10"):
        short.feed(FileEnd())


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", ".", "", "dir\\file",
                                  "nul\x00byte", "line\nbreak", "x" * 256])
def test_unsafe_names_are_refused(tmp_path, name):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with pytest.raises(TransferError):
        safe_name(name)
    receiver = FileReceiver(inbox)
    with pytest.raises(TransferError):
        receiver.feed(decode_record(offer_record(FileOffer(name, 1, sha256(b"x")))))
    with pytest.raises(TransferError):
        FileSender(name, b"x")
    assert leftovers(tmp_path) == ["inbox"] and leftovers(inbox) == []


@pytest.mark.parametrize("name", ["report.pdf", ".hidden", "名字.txt", "a..b", "x" * 255])
def test_plain_names_are_accepted(name):
    assert safe_name(name) == name


def test_an_existing_file_is_not_overwritten_unless_told(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"old")
    sender = FileSender("a.txt", b"new content")
    with pytest.raises(TransferError, match="exists"):
        feed_all(FileReceiver(tmp_path), sender)
    assert (tmp_path / "a.txt").read_bytes() == b"old"
    assert leftovers(tmp_path) == ["a.txt"]
    receiver = FileReceiver(tmp_path, overwrite=True)
    feed_all(receiver, FileSender("a.txt", b"new content"))
    assert receiver.done and (tmp_path / "a.txt").read_bytes() == b"new content"


def test_a_file_appearing_during_the_transfer_is_not_overwritten(tmp_path):
    records = list(FileSender("late.txt", b"payload").records())
    receiver = FileReceiver(tmp_path)
    for record in records[:-1]:
        receiver.feed(decode_record(record))
    (tmp_path / "late.txt").write_bytes(b"someone else's")
    with pytest.raises(TransferError, match="exists"):
        receiver.feed(decode_record(records[-1]))
    assert (tmp_path / "late.txt").read_bytes() == b"someone else's"
    assert leftovers(tmp_path) == ["late.txt"]


def test_records_out_of_place_raise():
    with pytest.raises(TransferError, match="before any offer"):
        FileReceiver().feed(FileChunk(b"x"))
    receiver = FileReceiver()
    receiver.feed(FileOffer("a", 1, sha256(b"x")))
    with pytest.raises(TransferError, match="second offer"):
        receiver.feed(FileOffer("b", 1, sha256(b"x")))
    done = FileReceiver()
    feed_all(done, FileSender("c", b"x"))
    with pytest.raises(TransferError, match="already complete"):
        done.feed(FileEnd())


def test_a_file_that_changes_while_sent_is_caught(tmp_path):
    path = tmp_path / "growing.log"
    path.write_bytes(b"a" * 100)
    sender = FileSender("growing.log", path, chunk_bytes=10)
    records = sender.records()
    next(records)  # the offer: size 100
    with path.open("ab") as log:
        log.write(b"b" * 5)
    with pytest.raises(TransferError, match="changed"):
        list(records)


def test_a_file_given_up_by_its_sender_leaves_no_part_file(tmp_path):
    # The sender's records stop without an end (the file changed while being sent) and
    # the next file's offer follows on the same stream.
    chat = Conversation(SimpleNamespace(), receive_dir=tmp_path)  # only records are fed
    first, second = FileSender("first", bytes(3000)), FileSender("second", b"whole")
    for record in list(first.records())[:2]:  # the offer and one chunk
        chat.record_received(record)
    assert len(leftovers(tmp_path)) == 1  # first's hidden .part file
    for record in second.records():
        chat.record_received(record)
    assert leftovers(tmp_path) == ["second"]
    assert [f.name for f in chat.files] == ["second"]
    assert len(chat.errors) == 1 and "first" in chat.errors[0]


# -- the record codec ------------------------------------------------------------------------

@pytest.mark.parametrize("record, decoded", [
    (chat_record("héllo 👋"), ChatLine("héllo 👋")),
    (chat_record(""), ChatLine("")),
    (offer_record(FileOffer("f", 3, "ab" * 32)), FileOffer("f", 3, "ab" * 32)),
    (chunk_record(b"\x00\xff"), FileChunk(b"\x00\xff")),
    (end_record(), FileEnd()),
])
def test_records_round_trip(record, decoded):
    assert decode_record(record) == decoded


@pytest.mark.parametrize("record, offset", [
    (b"", 0),
    (b"Z", 0),
    (b"C" + "ok".encode() + b"\xff", 3),
    (b"E!", 1),
    (b"F{not json", 2),
    (b'F{"name":"a","size":1}', 1),
    (b'F{"name":"a","size":-1,"sha256":"' + b"0" * 64 + b'"}', 1),
    (b'F{"name":"a","size":true,"sha256":"' + b"0" * 64 + b'"}', 1),
    (b'F{"name":"a","size":1,"sha256":"' + b"G" * 64 + b'"}', 1),
    (b'F{"name":5,"size":1,"sha256":"' + b"0" * 64 + b'"}', 1),
    (b"F\xc3", 1),
])
def test_malformed_records_raise_record_error_with_offset(record, offset):
    with pytest.raises(RecordError) as caught:
        decode_record(record)
    assert caught.value.offset == offset
    assert isinstance(caught.value, ValueError)


def test_chat_lines_are_bounded_by_the_frame_limit():
    with pytest.raises(ValueError):
        chat_record("x" * 65536)
    assert len(encode_frame(chat_record("x" * 65535))) == 4 + 65536


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_record_error(record):
    try:
        decoded = decode_record(record)
    except RecordError as exc:
        assert 0 <= exc.offset <= len(record)
    else:
        assert isinstance(decoded, (ChatLine, FileOffer, FileChunk, FileEnd))
