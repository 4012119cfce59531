"""Map types side by side: hash, per-CPU, LRU, ring buffer and perf buffer (week 11).

`maps.bpf.c` counts one process's getsid(2) calls in four hash-map types, with bcc's
`map.increment()` and with the pattern that works everywhere; `loader.MapDemo` loads it and
reads back what each map really holds.
"""
