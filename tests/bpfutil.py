"""Helpers for the eBPF tests: the C layout of an event struct (for ctypes mirrors), records
built field by field, and the BPF programs of ours the kernel still holds (leftover check).

Every BPF function of the workbook is named `ns_<program>_<what>`, so `bpftool prog show`
can tell ours from the system's (names are cut to 15 characters by the kernel).
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import needs_tool

from netsprint.ebpf.loader import INCLUDE_DIR
from netsprint.errors import DecodeError

OUR_PREFIX = "ns_"
# Iterator programs cannot take our prefix: bcc names one after its target (the function
# must be bpf_iter__<target>), and the agent's is the project's only one.
OUR_ITERATORS = {"bpf_map_elem"}
S = TypeVar("S", bound=ctypes.Structure)


def c_layout(header: Path, struct: str, fields: list[str]) -> tuple[int, dict[str, int]]:
    """sizeof(struct `struct`) and offsetof each field, as gcc lays it out for this machine
    (the same x86-64/arm64 ABI that BPF structs follow for these types). Skips without gcc."""
    gcc = needs_tool("gcc", "gcc")
    lines = [f'#include "{header.name}"', "#include <stdio.h>", "#include <stddef.h>",
             "int main(void) {", f'  printf("%zu\\n", sizeof({struct}));']
    lines += [f'  printf("%zu\\n", offsetof({struct}, {f}));' for f in fields]
    lines += ["  return 0;", "}"]
    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp, "layout.c"), Path(tmp, "layout")
        source.write_text("\n".join(lines) + "\n")
        subprocess.run([gcc, f"-I{header.parent}", f"-I{INCLUDE_DIR}", "-o", str(binary), str(source)],
                       check=True, capture_output=True, text=True)
        numbers = [int(n) for n in subprocess.run([str(binary)], check=True, capture_output=True,
                                                  text=True).stdout.split()]
    return numbers[0], dict(zip(fields, numbers[1:]))


def assert_mirror_matches(mirror: type[ctypes.Structure], header: Path, struct: str) -> None:
    """The ctypes class has the C struct's size and every field at the C offset."""
    names = [f[0] for f in mirror._fields_]
    size, offsets = c_layout(header, struct, names)
    assert ctypes.sizeof(mirror) == size, f"{mirror.__name__}: ctypes {ctypes.sizeof(mirror)} B, C {size} B"
    for name in names:
        assert getattr(mirror, name).offset == offsets[name], \
            f"{mirror.__name__}.{name}: ctypes offset {getattr(mirror, name).offset}, C {offsets[name]}"


def assert_refuses_short(decode: Callable[[bytes], object], size: int,
                         error: type[DecodeError]) -> None:
    """A record one byte short of `size` is `error`, a DecodeError (so a ValueError) whose
    offset is the length it got."""
    with pytest.raises(error) as info:
        decode(b"\0" * (size - 1))
    assert isinstance(info.value, DecodeError) and isinstance(info.value, ValueError)
    assert info.value.offset == size - 1


def fill(mirror: type[S], **fields) -> S:
    """A `mirror` record with `fields` set; a bytes value is copied into the start of its
    array field (the rest stays zero, as the kernel's zeroed record would have it)."""
    record = mirror()
    for name, value in fields.items():
        if isinstance(value, bytes):
            field = getattr(mirror, name)
            if len(value) > field.size:
                raise ValueError(f"{len(value)} bytes do not fit {mirror.__name__}.{name} ({field.size})")
            ctypes.memmove(ctypes.addressof(record) + field.offset, value, len(value))
        else:
            setattr(record, name, value)
    return record


def our_programs() -> dict[int, str]:
    """id -> name of every loaded BPF program whose name starts with `ns_`, and of iterators
    named as ours (OUR_ITERATORS). Without bpftool this skips (a failure under REQUIRE_ALL):
    an empty answer would pass every leftover check."""
    bpftool = needs_tool("bpftool", "bpftool")
    out = subprocess.run([bpftool, "prog", "show", "--json"], capture_output=True, text=True,
                         timeout=30).stdout
    return {p["id"]: p.get("name", "") for p in json.loads(out or "[]")
            if p.get("name", "").startswith(OUR_PREFIX)
            or (p.get("type") == "tracing" and p.get("name") in OUR_ITERATORS)}


def still_loaded(programs: set[int], within: float = 3.0) -> set[int]:
    """Those of `programs` still loaded after waiting up to `within` seconds. The kernel frees
    a program a moment after its last reference goes (an RCU grace period for raw tracepoint
    links, a work queue for tc filters and a deleted namespace's devices), so a leftover
    check waits, bounded."""
    deadline = time.monotonic() + within
    while programs & set(our_programs()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return programs & set(our_programs())


def run_unprivileged(code: str) -> subprocess.CompletedProcess:
    """Run Python `code` as `nobody` with every capability gone (what a learner without sudo
    has), from / so no project file is in the way; its output as text."""
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, cwd="/")
