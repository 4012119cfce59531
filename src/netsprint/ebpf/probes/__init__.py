"""Tiny eBPF programs that prove a program type really loads on this machine.

`netsprint doctor` runs them (see `feature_probe.py`); nothing else depends on them.
"""
