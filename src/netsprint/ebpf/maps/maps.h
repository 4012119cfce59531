// The record maps.bpf.c sends through its ring buffer AND its perf buffer, once per call.
//
// Only <linux/types.h> types, so gcc can compile it for the ctypes-mirror size test
// (tests/test_ebpf_maps.py) and bcc into the program.
#ifndef NETSPRINT_MAPS_H
#define NETSPRINT_MAPS_H

#include "netsprint_common.h"

struct map_record {
    __u64 seq;      // 0, 1, 2 ... per traced call, from one shared atomic counter: the true order
    __u64 ts_ns;    // bpf_ktime_get_ns(): CLOCK_MONOTONIC, the clock of time.monotonic_ns()
    __u32 tgid;     // process id (the kernel's tgid)
    __u32 cpu;      // bpf_get_smp_processor_id(): which per-CPU perf buffer the record went to
};

#endif
