"""opensnoop: every openat(2) on the machine (who, which file, which flags, which fd or errno)
through a ring buffer, plus bytes returned by read(2) per process (week 9).

`opensnoop.bpf.c` holds the BPF C, `opensnoop.h` the event struct, `loader.py` the decoder
and `OpenSnoop`.
"""
