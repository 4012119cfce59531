"""TC egress classifier (week 10): per-port packet/byte counters and a token-bucket limit.

`tc_egress.bpf.c` is the program, `tc_egress.h` its shared structs, `clsact.py` attaches a
loaded program to a clsact qdisc through netlink, `loader.py` has `TcEgress`, which owns it all.
"""
