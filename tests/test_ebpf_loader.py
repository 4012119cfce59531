"""The BPF loader: what a learner sees when a program does not compile, the verifier refuses
it, or the process may not load BPF at all; and that everything detaches."""

from __future__ import annotations

import os

import pytest
from bpfutil import our_programs, run_unprivileged

from netsprint.ebpf.loader import (BpfLoadError, BpfProgram, captured_stderr, has_bpf_privileges,
                                   require_tracefs, tracefs_path)

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
