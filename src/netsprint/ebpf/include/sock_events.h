// The other socket tracepoints tcpbytes takes, as the running kernel lays them out (field for
// field from /sys/kernel/tracing/events/<category>/<event>/format), like
// inet_sock_set_state.h. Types only: nothing here touches a map.
#ifndef NETSPRINT_SOCK_EVENTS_H
#define NETSPRINT_SOCK_EVENTS_H

#include <linux/types.h>

#define MSG_PEEK_FLAG   2     // linux/socket.h MSG_PEEK

// sock:sock_send_length (kernel >= 6.3); sock:sock_recv_length is the same
struct length_args {
    __u64 common;           // common_type, flags, preempt_count, pid
    __u64 sk;
    __u16 family;
    __u16 protocol;
    int ret;                // bytes moved, or -errno
    int flags;              // recv flags (MSG_PEEK ...); 0 for send
};

// tcp:tcp_destroy_sock (only the field we need)
struct destroy_args {
    __u64 common;
    __u64 skaddr;
};

#endif
