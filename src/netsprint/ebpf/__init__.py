"""eBPF programs (weeks 8-11) loaded through bcc.

Each program's BPF C lives in a `.bpf.c` file next to the Python loader that compiles it.
"""
