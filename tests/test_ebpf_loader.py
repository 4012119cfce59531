"""The BPF loader: what a learner sees when a program does not compile, the verifier refuses
it, or the process may not load BPF at all; and that everything detaches."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from bpfutil import our_programs, run_unprivileged, still_loaded

from netsprint.ebpf.btf import kernel_types
from netsprint.ebpf.loader import (BpfLoadError, BpfProgram, captured_stderr, has_bpf_privileges,
                                   program_fdinfo, require_tracefs, tracefs_path)

COUNTER = """
BPF_ARRAY(hits, u64, 1);
int ns_loader_count(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != NETSPRINT_TGID)
        return 0;
    u32 key = 0;
    u64 *value = hits.lookup(&key);
    if (value)
        __sync_fetch_and_add(value, 1);
    return 0;
}
"""
NO_NULL_CHECK = """
BPF_HASH(counts, u32, u64);
int ns_loader_bad(void *ctx)
{
    u32 key = 0;
    u64 *value = counts.lookup(&key);
    *value += 1;  /* the verifier: the lookup may return NULL */
    return 0;
}
"""


@pytest.mark.unit
def test_the_error_shows_message_hint_and_the_end_of_the_log():
    error = BpfLoadError("it broke", "do this", "\n".join(f"line {i}" for i in range(100)))
    text = str(error)
    assert text.startswith("it broke\n  what to do: do this")
    assert "line 99" in text and "line 74" not in text  # the last 25 lines only


@pytest.mark.unit
def test_capabilities_decide_whether_bpf_may_load():
    def status(caps: int) -> str:
        return f"Name:\tx\nCapEff:\t{caps:016x}\n"

    bpf, perfmon, net_admin, sys_admin = 1 << 39, 1 << 38, 1 << 12, 1 << 21
    assert has_bpf_privileges(status_text=status(sys_admin))
    assert has_bpf_privileges(status_text=status(bpf | perfmon))
    assert not has_bpf_privileges(status_text=status(bpf))
    assert not has_bpf_privileges(net_admin=True, status_text=status(bpf | perfmon))
    assert has_bpf_privileges(net_admin=True, status_text=status(bpf | perfmon | net_admin))
    assert not has_bpf_privileges(status_text=status(0))


@pytest.mark.unit
def test_captured_stderr_keeps_c_level_writes_off_fd_2():
    with captured_stderr() as err:
        os.write(2, b"clang: warning: something\n")
    assert err.text == "clang: warning: something\n"


@pytest.mark.bpf
def test_a_program_loads_counts_and_detaches(needs_bcc):
    def counters() -> set[int]:
        return {pid for pid, name in our_programs().items() if name == "ns_loader_count"}

    before = counters()
    with BpfProgram(text=COUNTER, cflags=[f"-DNETSPRINT_TGID={os.getpid()}"]) as prog:
        prog.attach_tracepoint("syscalls:sys_enter_getppid", "ns_loader_count")
        for _ in range(7):
            os.getppid()
        assert prog["hits"][0].value == 7
        assert counters() - before, "bpftool should see the loaded program"
        # what the agent reads its skipped runs from (recursion_misses), as bpftool numbers it
        info = program_fdinfo(prog.bpf.funcs[b"ns_loader_count"].fd)
        assert info["prog_id"] in counters() - before and info["recursion_misses"] == 0, info
    assert not counters() - before
    prog.close()  # idempotent


@pytest.mark.bpf
def test_a_compile_error_names_the_first_clang_error(needs_bcc):
    with pytest.raises(BpfLoadError) as caught:
        BpfProgram(text="int ns_loader_bad(void *ctx) { return undeclared_thing; }")
    assert "does not compile" in caught.value.message
    assert "undeclared_thing" in caught.value.message
    assert "1 error generated" in caught.value.log


@pytest.mark.bpf
def test_a_verifier_refusal_carries_the_verifier_log_and_a_hint(needs_bcc):
    with BpfProgram(text=NO_NULL_CHECK) as prog:
        with pytest.raises(BpfLoadError) as caught:
            prog.attach_tracepoint("syscalls:sys_enter_getppid", "ns_loader_bad")
    error = caught.value
    assert "verifier refused" in error.message
    assert "map_value_or_null" in error.log  # the verifier's own words for the missing check
    assert "NULL check" in error.hint


@pytest.mark.bpf
def test_a_missing_tracepoint_is_named(needs_bcc):
    with BpfProgram(text=COUNTER, cflags=["-DNETSPRINT_TGID=1"]) as prog:
        with pytest.raises(BpfLoadError, match="no tracepoint sock:no_such_event"):
            prog.attach_tracepoint("sock:no_such_event", "ns_loader_count")


@pytest.mark.bpf
def test_without_privileges_the_error_says_to_run_as_root(needs_bcc):
    code = ("from netsprint.ebpf.loader import BpfProgram, BpfLoadError\n"
            "try:\n    BpfProgram(text='int ns_x(void *c) { return 0; }')\n"
            "except BpfLoadError as e:\n    print(e)\n")
    proc = run_unprivileged(code)
    assert "lacks them" in proc.stdout and "sudo" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.bpf
def test_tracefs_alone_needs_root_not_bcc(needs_root):
    if tracefs_path() is None:
        pytest.skip("tracefs is not mounted: `sudo .venv/bin/netsprint doctor --fix` mounts it")
    assert require_tracefs() == tracefs_path()
    code = ("from netsprint.ebpf.loader import require_tracefs, BpfLoadError\n"
            "try:\n    require_tracefs(run_as='use sudo')\n"
            "except BpfLoadError as e:\n    print(e)\n")
    proc = run_unprivileged(code)
    assert "needs root" in proc.stdout and "use sudo" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.bpf
def test_a_stack_over_512_bytes_is_an_error_not_a_dead_process(needs_bcc):
    # bcc's LLVM calls exit() on this one; compiled in-process it would end the test run.
    big_stack = """
    int ns_loader_stack(void *ctx)
    {
        char buffer[1024];
        bpf_probe_read_kernel(buffer, sizeof(buffer), ctx);
        return buffer[0] + buffer[1023];
    }
    """
    with pytest.raises(BpfLoadError) as caught:
        BpfProgram(text=big_stack)
    assert "aborted" in caught.value.message and "512 bytes" in caught.value.hint
    assert "stack" in caught.value.log.lower()


# --- program types bcc does not attach itself: BTF-typed tracepoints, map iterators ----------

SRTT_PLAIN_LOAD = """
BPF_ARRAY(last_srtt_us8, u32, 1);
int ns_loader_srtt(unsigned long long *ctx)
{
    if (*(u16 *)((char *)ctx[0] + NUM_OFFSET) != PORT)  /* sock_common.skc_num: ours only */
        return 0;
    struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)ctx[0]);
    if (!tp)
        return 0;
    u32 key = 0;
    u32 *value = last_srtt_us8.lookup(&key);
    if (value)
        *value = *(u32 *)((char *)tp + SRTT_OFFSET);
    return 0;
}
"""
BEYOND_STRUCT_SOCK = """
int ns_loader_beyond(unsigned long long *ctx)
{
    return *(u32 *)((char *)ctx[0] + 100000);  /* struct sock is not that long */
}
"""
ELEMENTS = """
BPF_HASH(squares, u64, u64, 256);
struct bpf_iter_meta { void *seq; u64 session_id; u64 seq_num; };
struct bpf_iter__bpf_map_elem { struct bpf_iter_meta *meta; void *map; void *key; void *value; };
int bpf_iter__bpf_map_elem(struct bpf_iter__bpf_map_elem *ctx)
{
    u64 *key = ctx->key, *value = ctx->value;
    if (!key || !value)
        return 0;
    u64 pair[2] = {*key, *value};
    bpf_seq_write(ctx->meta->seq, pair, sizeof(pair));
    return 0;
}
"""
PROBE_READ_KERNEL = 113  # enum bpf_func_id: BPF_FUNC_probe_read_kernel


def helper_calls(insns: bytes) -> set[int]:
    """The helper ids a program's instructions call (BPF_JMP | BPF_CALL, src_reg 0)."""
    return {imm for op, regs, _off, imm in struct.iter_unpack("<BBhi", insns)
            if op == 0x85 and regs >> 4 == 0}


@pytest.mark.bpf
def test_a_btf_tracepoint_reads_a_kernel_struct_with_a_plain_load(needs_bcc):
    types = kernel_types()
    with socket.create_server(("127.0.0.1", 0)) as server:
        # only the accepted socket (local port = the server's) on a machine with other traffic
        cflags = [f"-DSRTT_OFFSET={types.field('tcp_sock.srtt_us').offset}",
                  f"-DNUM_OFFSET={types.field('sock.__sk_common.skc_num').offset}",
                  f"-DPORT={server.getsockname()[1]}"]
        with BpfProgram(text=SRTT_PLAIN_LOAD, cflags=cflags) as prog:
            assert PROBE_READ_KERNEL not in helper_calls(prog.bpf.dump_func(b"ns_loader_srtt"))
            prog.attach_btf_tracepoint("tcp:tcp_probe", "ns_loader_srtt", types.tracepoint_type_id("tcp_probe"))
            loaded = {pid for pid, name in our_programs().items() if name == "ns_loader_srtt"}
            assert loaded, "bpftool should see the loaded program"
            with socket.create_connection(server.getsockname()) as client:
                accepted, _ = server.accept()
                with accepted:
                    for _ in range(20):
                        client.sendall(b"q")
                        accepted.recv(1)
                        accepted.sendall(b"a")
                        client.recv(1)
                    info = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
                    rtt_us = struct.unpack_from("I", info, 68)[0]
            srtt_us = prog["last_srtt_us8"][0].value >> 3
            assert srtt_us > 0 and abs(srtt_us - rtt_us) <= max(50, rtt_us), (srtt_us, rtt_us)
    assert not still_loaded(loaded), "close() should unload it"


@pytest.mark.bpf
def test_a_btf_tracepoint_the_verifier_refuses_carries_its_log(needs_bcc):
    types = kernel_types()
    with BpfProgram(text=BEYOND_STRUCT_SOCK) as prog:
        with pytest.raises(BpfLoadError) as caught:
            prog.attach_btf_tracepoint("tcp:tcp_probe", "ns_loader_beyond", types.tracepoint_type_id("tcp_probe"))
    assert "BTF-typed tracepoint" in caught.value.message
    assert "struct sock" in caught.value.log  # the verifier's words for the bad load
    assert "verifier log" in caught.value.hint


@pytest.mark.bpf
def test_a_map_iterator_reads_every_element_and_closes(needs_bcc):
    with BpfProgram(text=ELEMENTS) as prog:
        table = prog["squares"]
        for n in range(200):
            table[table.Key(n)] = table.Leaf(n * n)
        iterator = prog.map_iterator("squares")
        pairs = dict(struct.iter_unpack("=QQ", iterator.read()))
        assert pairs == {n: n * n for n in range(200)}
        iterator.close()
        with pytest.raises(BpfLoadError, match="closed"):
            iterator.read()
