"""The running kernel's own type information (BTF): where a struct field lies, and what a
tracepoint's C arguments are.

Why: the kernel headers on these machines belong to another kernel (docs/ebpf.md), so a
program must not take a struct layout from them. The kernel describes its own types in
/sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF); a program that must read a field (the
agent's raw tracepoints read a few: agent/probes.py FIELDS) gets its offset from here at
load time, as -D flags.

The format (Documentation/bpf/btf.rst): a header, a type section and a string section. Type
ids count from 1 in order (0 is void); each type is 12 bytes (name offset, info, size or
type) followed by a kind-dependent tail. Only what lookups need is decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from netsprint.errors import NetsprintError

VMLINUX = Path("/sys/kernel/btf/vmlinux")
MAGIC = 0xEB9F

# BTF_KIND_* (include/uapi/linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
QUALIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}
TAIL_BYTES = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}   # fixed tails
PER_MEMBER_BYTES = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}


class BtfError(NetsprintError):
    """The kernel's BTF is missing, malformed, or lacks what was asked for."""


@dataclass(frozen=True)
class BtfType:
    kind: int
    name: str
    size_or_type: int  # size for INT/STRUCT/UNION/ENUM, else the type id referred to
    vlen: int
    kind_flag: bool
    tail: bytes


@dataclass(frozen=True)
class Field:
    """Where a struct member lies: byte offset from the start of the outer struct, and size."""

    offset: int
    size: int


class KernelTypes:
    """Decoded BTF: `field("tcp_sock.srtt_us")`, `tracepoint_args("tcp_probe")`."""

    def __init__(self, blob: bytes) -> None:
        self.types, self.strings = parse(blob)
        self._by_name: dict[tuple[int, str], int] = {}
        for type_id, t in enumerate(self.types):
            if t.name:
                self._by_name.setdefault((t.kind, t.name), type_id)

    def struct_id(self, name: str) -> int:
        type_id = self._by_name.get((STRUCT, name))
        if type_id is None:
            raise BtfError(f"the kernel's BTF has no struct {name}")
        return type_id

    def field(self, path: str) -> Field:
        """`"struct.member[.member...]"`: members of anonymous structs and unions are found
        as if they were the outer struct's (as C spells them, e.g. sock_common.skc_daddr)."""
        struct_name, *members = path.split(".")
        if not members:
            raise ValueError(f"{path!r}: give struct.member")
        type_id, offset = self.struct_id(struct_name), 0
        for member in members:
            found = self._find_member(type_id, member)
            if found is None:
                raise BtfError(f"the kernel's struct {struct_name} has no field {path.partition('.')[2]}")
            type_id, bit_offset = found
            if bit_offset % 8:
                raise BtfError(f"{path} is a bit field; a program cannot read it whole")
            offset += bit_offset // 8
        return Field(offset, self.size(type_id))

    def _find_member(self, type_id: int, name: str) -> tuple[int, int] | None:
        """(member type id, bit offset) of `name` in a struct or union, looking into anonymous
        members; None if absent."""
        t = self.types[self.resolve(type_id)]
        if t.kind not in (STRUCT, UNION):
            return None
        for member_name, member_type, raw_offset in self._members(t):
            bitfield_size, bit_offset = (raw_offset >> 24, raw_offset & 0xFFFFFF) if t.kind_flag \
                else (0, raw_offset)
            if member_name == name:
                if bitfield_size:
                    raise BtfError(f"{name} is a bit field; a program cannot read it whole")
                return member_type, bit_offset
            if not member_name:
                inner = self._find_member(member_type, name)
                if inner is not None:
                    return inner[0], bit_offset + inner[1]
        return None

    def _members(self, t: BtfType):
        for i in range(t.vlen):
            name_off, member_type, raw_offset = struct.unpack_from("<III", t.tail, i * 12)
            yield self.name_at(name_off), member_type, raw_offset

    def resolve(self, type_id: int) -> int:
        """Follow typedefs and qualifiers (const, volatile...) to the type they name."""
        for _ in range(64):  # a chain longer than this is a cycle in a broken blob
            t = self.types[type_id]
            if t.kind not in QUALIFIERS:
                return type_id
            type_id = t.size_or_type
        raise BtfError(f"type {type_id}: a typedef chain that does not end")

    def size(self, type_id: int) -> int:
        t = self.types[self.resolve(type_id)]
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT):
            return t.size_or_type
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            element, _index, count = struct.unpack_from("<III", t.tail)
            return self.size(element) * count
        raise BtfError(f"type {type_id} ({t.name or 'anonymous'}) has no size")

    def c_name(self, type_id: int) -> str:
        """A C spelling without qualifiers: "int", "struct sock *", "void *"."""
        if type_id == 0:
            return "void"
        t = self.types[type_id]
        if t.kind in (CONST, VOLATILE, RESTRICT, TYPE_TAG):
            return self.c_name(t.size_or_type)
        if t.kind == PTR:
            return self.c_name(t.size_or_type) + " *"
        prefix = {STRUCT: "struct ", UNION: "union ", ENUM: "enum ", ENUM64: "enum "}.get(t.kind, "")
        return prefix + (t.name or "(anonymous)")

    def tracepoint_args(self, event: str) -> tuple[str, ...]:
        """What a raw tracepoint program receives in ctx->args[], as C types: the event's
        TP_PROTO, read from the kernel's `btf_trace_<event>` typedef (a pointer to a
        function whose first parameter is the tracepoint's private data, left out here)."""
        type_id = self.tracepoint_type_id(event)
        proto = self.types[self.resolve(self.types[self.resolve(type_id)].size_or_type)]
        if proto.kind != FUNC_PROTO:
            raise BtfError(f"btf_trace_{event} is not a function pointer")
        params = [struct.unpack_from("<II", proto.tail, i * 8)[1] for i in range(proto.vlen)]
        return tuple(self.c_name(p) for p in params[1:])

    def tracepoint_type_id(self, event: str) -> int:
        """The id of the `btf_trace_<event>` typedef: what a BTF-typed raw tracepoint program
        (tp_btf) names as its attach_btf_id when it is loaded."""
        type_id = self._by_name.get((TYPEDEF, f"btf_trace_{event}"))
        if type_id is None:
            raise BtfError(f"the kernel's BTF does not describe tracepoint {event}")
        return type_id

    def name_at(self, offset: int) -> str:
        return c_string(self.strings, offset)


def c_string(strings: bytes, offset: int) -> str:
    """The NUL-terminated name at `offset`; offset 0 is the empty name (anonymous)."""
    if not offset:
        return ""
    if offset >= len(strings):
        raise BtfError(f"a name offset ({offset}) past the string section")
    end = strings.find(b"\0", offset)
    return strings[offset: end if end >= 0 else len(strings)].decode("ascii", "replace")


def parse(blob: bytes) -> tuple[list[BtfType], bytes]:
    """Every type (index = type id, 0 = void), and the string section members name into."""
    if len(blob) < 24:
        raise BtfError(f"BTF too short ({len(blob)} bytes)")
    magic, _version, _flags, header_len = struct.unpack_from("<HBBI", blob)
    if magic != MAGIC:
        raise BtfError(f"not BTF: magic {magic:#x}, expected {MAGIC:#x}")
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
    base = header_len
    if base + max(type_off + type_len, str_off + str_len) > len(blob):
        raise BtfError("BTF sections run past the end of the data")
    strings = blob[base + str_off: base + str_off + str_len]
    types = [BtfType(0, "void", 0, 0, False, b"")]
    pos, end = base + type_off, base + type_off + type_len
    while pos < end:
        name_off, info, size_or_type = struct.unpack_from("<III", blob, pos)
        kind, vlen = info >> 24 & 0x1F, info & 0xFFFF
        tail_len = TAIL_BYTES.get(kind, 0) + PER_MEMBER_BYTES.get(kind, 0) * vlen
        if kind == 0 or kind > ENUM64:
            raise BtfError(f"unknown BTF kind {kind} at type {len(types)}")
        tail = blob[pos + 12: pos + 12 + tail_len]
        if len(tail) < tail_len or pos + 12 + tail_len > end:
            raise BtfError(f"type {len(types)} runs past the type section")
        types.append(BtfType(kind, c_string(strings, name_off), size_or_type, vlen,
                             bool(info >> 31), tail))
        pos += 12 + tail_len
    return types, strings


@lru_cache(maxsize=2)
def kernel_types(path: Path = VMLINUX) -> KernelTypes:
    """The running kernel's types (read once per process)."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise BtfError(f"{path} is missing: this kernel was built without "
                       "CONFIG_DEBUG_INFO_BTF, so field offsets cannot be read from it") from None
    except OSError as exc:
        raise BtfError(f"cannot read {path}: {exc.strerror}") from exc
    return KernelTypes(blob)
