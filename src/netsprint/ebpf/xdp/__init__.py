"""XDP source blocklist (week 10): an LPM trie of CIDR prefixes, checked on receive.

`xdp_blocklist.bpf.c` is the program, `xdp_blocklist.h` its shared structs, `loader.py` the
pure key encoding (`lpm_key`, `longest_match`) and `XdpBlocklist`, which owns the attachment.
"""
