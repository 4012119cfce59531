"""Reading the kernel's BTF: field offsets through anonymous members, tracepoint arguments,
clear errors on a bad blob; and the running kernel's answers checked against bpftool's."""

from __future__ import annotations

import re
import struct
import subprocess

import pytest
from conftest import needs_tool

from netsprint.ebpf import btf
from netsprint.ebpf.btf import BtfError, KernelTypes, kernel_types


class BlobWriter:
    """Builds a small BTF blob the way the kernel lays one out (type ids from 1)."""

    def __init__(self) -> None:
        self.strings = b"\0"
        self.types: list[bytes] = []

    def name(self, text: str) -> int:
        if not text:
            return 0
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(self, kind: int, name: str, size_or_type: int, members=(), tail=b"",
            kind_flag: bool = False) -> int:
        info = kind << 24 | len(members) | (1 << 31 if kind_flag else 0)
        record = struct.pack("<III", self.name(name), info, size_or_type) + tail
        for member in members:
            record += member
        self.types.append(record)
        return len(self.types)

    def member(self, name: str, type_id: int, bit_offset: int, bitfield_size: int = 0) -> bytes:
        return struct.pack("<III", self.name(name), type_id, bitfield_size << 24 | bit_offset)

    def param(self, type_id: int) -> bytes:
        return struct.pack("<II", 0, type_id)

    def blob(self) -> bytes:
        types = b"".join(self.types)
        header = struct.pack("<HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(types), len(types),
                             len(self.strings))
        return header + types + self.strings


def sample_blob() -> bytes:
    """struct outer { int a; union { struct { int x; int y; }; long whole; }; unsigned flags:3;
    int tail[2]; };  typedef void (*btf_trace_ev)(void *, struct outer *, const int);"""
    w = BlobWriter()
    int_id = w.add(btf.INT, "int", 4, tail=struct.pack("<I", 32))
    long_id = w.add(btf.INT, "long", 8, tail=struct.pack("<I", 64))
    pair = w.add(btf.STRUCT, "", 8, [w.member("x", int_id, 0), w.member("y", int_id, 32)])
    either = w.add(btf.UNION, "", 8, [w.member("", pair, 0), w.member("whole", long_id, 0)])
    array = w.add(btf.ARRAY, "", 0, tail=struct.pack("<III", int_id, int_id, 2))
    outer = w.add(btf.STRUCT, "outer", 32, [w.member("a", int_id, 0), w.member("", either, 64),
                                              w.member("flags", int_id, 128, bitfield_size=3),
                                              w.member("tail", array, 160)], kind_flag=True)
    const_int = w.add(btf.CONST, "", int_id)
    outer_ptr = w.add(btf.PTR, "", outer)
    void_ptr = w.add(btf.PTR, "", 0)
    proto = w.add(btf.FUNC_PROTO, "", 0, [w.param(void_ptr), w.param(outer_ptr), w.param(const_int)])
    w.add(btf.TYPEDEF, "btf_trace_ev", w.add(btf.PTR, "", proto))
    return w.blob()


@pytest.mark.unit
def test_fields_are_found_through_anonymous_unions_and_structs():
    types = KernelTypes(sample_blob())
    assert types.field("outer.a") == btf.Field(0, 4)
    assert types.field("outer.x") == btf.Field(8, 4)
    assert types.field("outer.y") == btf.Field(12, 4)
    assert types.field("outer.whole") == btf.Field(8, 8)
    assert types.field("outer.tail") == btf.Field(20, 8)


@pytest.mark.unit
def test_tracepoint_arguments_leave_out_the_private_data_and_qualifiers():
    assert KernelTypes(sample_blob()).tracepoint_args("ev") == ("struct outer *", "int")


@pytest.mark.unit
@pytest.mark.parametrize("ask, says", [
    ("outer.flags", "bit field"),
    ("outer.missing", "no field missing"),
    ("nowhere.a", "no struct nowhere"),
])
def test_a_field_that_cannot_be_read_is_named(ask, says):
    with pytest.raises(BtfError, match=says):
        KernelTypes(sample_blob()).field(ask)


@pytest.mark.unit
def test_an_unknown_tracepoint_is_named():
    with pytest.raises(BtfError, match="tracepoint gone"):
        KernelTypes(sample_blob()).tracepoint_args("gone")


@pytest.mark.unit
@pytest.mark.parametrize("damage, says", [
    (lambda b: b[:10], "too short"),
    (lambda b: b"\0\0" + b[2:], "not BTF"),
    (lambda b: b[:-8], "past the end"),
    (lambda b: b[:24] + b[24:28] + struct.pack("<I", 25 << 24) + b[32:], "unknown BTF kind 25 at type 1"),
])
def test_a_damaged_blob_is_refused_clearly(damage, says):
    with pytest.raises(BtfError, match=says):
        KernelTypes(damage(sample_blob()))


@pytest.mark.unit
def test_a_kernel_without_btf_says_which_option_is_missing(tmp_path):
    with pytest.raises(BtfError, match="CONFIG_DEBUG_INFO_BTF"):
        kernel_types(tmp_path / "vmlinux")


@pytest.fixture(scope="module")
def running_kernel() -> KernelTypes:
    if not btf.VMLINUX.exists():
        pytest.skip(f"{btf.VMLINUX} missing: this kernel has no BTF")
    return kernel_types()


def bpftool_bit_offset(struct_name: str, member: str) -> int:
    """bits_offset of a direct member, from `bpftool btf dump ... format raw`."""
    bpftool = needs_tool("bpftool", "bpftool")
    text = subprocess.run([bpftool, "btf", "dump", "file", str(btf.VMLINUX), "format", "raw"],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    body = re.search(rf"^\[\d+\] STRUCT '{struct_name}' .*\n((?:\t.*\n)*)", text, re.M).group(1)
    return int(re.search(rf"^\t'{member}' type_id=\d+ bits_offset=(\d+)", body, re.M).group(1))


@pytest.mark.unit
@pytest.mark.parametrize("struct_name, member", [
    ("tcp_sock", "srtt_us"), ("sock", "sk_protocol"), ("tcp_sock", "bytes_acked"),
    ("tcp_sock", "bytes_received"), ("tcp_sock", "snd_una"), ("tcp_sock", "write_seq"),
    ("cgroup", "kn"), ("kernfs_node", "id"),
])
def test_the_running_kernel_agrees_with_bpftool(running_kernel, struct_name, member):
    offset = running_kernel.field(f"{struct_name}.{member}").offset
    assert offset * 8 == bpftool_bit_offset(struct_name, member)


@pytest.mark.unit
def test_the_running_kernel_has_the_layouts_every_kernel_has(running_kernel):
    # struct sock_common has begun with the address pair and kept skc_family at byte 16
    # since long before BTF existed (include/net/sock.h)
    assert running_kernel.field("sock.__sk_common.skc_daddr") == btf.Field(0, 4)
    assert running_kernel.field("sock.__sk_common.skc_rcv_saddr") == btf.Field(4, 4)
    assert running_kernel.field("sock.__sk_common.skc_family") == btf.Field(16, 2)
    assert running_kernel.tracepoint_args("sock_send_length") == ("struct sock *", "int", "int")


@pytest.mark.unit
def test_a_tracepoints_type_id_is_its_typedefs_as_bpftool_numbers_it(running_kernel):
    bpftool = needs_tool("bpftool", "bpftool")
    text = subprocess.run([bpftool, "btf", "dump", "file", str(btf.VMLINUX), "format", "raw"],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    listed = int(re.search(r"^\[(\d+)\] TYPEDEF 'btf_trace_tcp_probe' ", text, re.M).group(1))
    assert running_kernel.tracepoint_type_id("tcp_probe") == listed
    with pytest.raises(BtfError, match="tracepoint no_such_event"):
        running_kernel.tracepoint_type_id("no_such_event")
