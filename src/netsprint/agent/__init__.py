"""The eBPF observability agent (weeks 12-19): tracepoint programs, pod attribution,
Prometheus collectors and the /metrics server. `model.py` holds what the parts share."""
