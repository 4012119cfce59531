/*
 * stun_loadgen: STUN Binding load generator over UDP (RFC 8489), the same for every server.
 *
 *   stun_loadgen -h HOST -p PORT [-n WINDOW] [-s SOCKETS] [-d SECONDS] [-w WARMUP_SECONDS]
 *                [-r RESEND_MS]
 *
 * A fixed window of WINDOW Binding requests is kept outstanding at all times, spread over
 * SOCKETS connected UDP sockets (slot i uses socket i % SOCKETS). Each request carries a
 * transaction id that is unique in the run (a per-run nonce, the slot number and the slot's
 * request number), so an answer can be matched to exactly one outstanding request. As soon
 * as a slot's request is answered, the slot sends its next request: requests leave in
 * sendmmsg() batches, answers are read in recvmmsg() batches.
 *
 * An answer is counted only if it is a Binding success response (type 0x0101) with the
 * magic cookie, a length field that matches the datagram, the transaction id of a request
 * that is still outstanding on that socket, and an XOR-MAPPED-ADDRESS equal to the socket's
 * own address (on loopback there is no NAT: the server must reflect exactly that).
 * Anything else is not counted: a well-formed answer to no outstanding request (a late
 * duplicate after a resend) counts as "unmatched", everything else as "invalid".
 *
 * UDP may drop datagrams (a full socket buffer on either side), so a request not answered
 * within RESEND_MS is sent again with the same transaction id, as RFC 8489 §6.2.1 wants for
 * retransmissions; the window therefore never drains. No answer at all for 5 s fails the run.
 *
 * Latency (first send of a transaction -> its counted answer) goes into a log-linear
 * histogram in nanoseconds, 64 sub-buckets per power of two (within 1/128 of the truth).
 * Answers arriving during the warm-up are not counted. The run stops by itself after
 * warm-up + duration; both, the window and the socket count are bounded.
 *
 * Prints one JSON object on stdout. Exit 0 on success; on error a message on stderr, exit 1
 * (2 for bad usage). Written in C so that the generator costs far less per request than
 * any server under test does.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define BENCH_PROGRAM "stun_loadgen"
#include "bench_common.h"

#define STUN_HEADER_BYTES 20
#define STUN_MAGIC_COOKIE 0x2112A442U /* RFC 8489 §5 */
#define BINDING_REQUEST 0x0001
#define BINDING_SUCCESS 0x0101
#define ATTR_XOR_MAPPED_ADDRESS 0x0020 /* RFC 8489 §14.2 */
#define FAMILY_IPV4 0x01

#define MAX_WINDOW 4096
#define MAX_SOCKETS 64
#define MAX_DURATION_S 3600.0
#define MAX_WARMUP_S 60.0
#define RECV_BATCH 64
#define ANSWER_MAX_BYTES 1500 /* a Binding answer is ~100 bytes; MSG_TRUNC flags bigger */
#define STALL_NS 5000000000ULL /* no answer at all for 5 s: the server is stuck or gone */
#define SOCKET_BUFFER_BYTES (1 << 20)

struct slot {
    int sock;             /* index into socks[] */
    uint32_t seq;         /* this slot's request number: part of the transaction id */
    int outstanding;      /* 1 while the request waits for its answer */
    uint64_t t_first;     /* first send of this transaction (latency start) */
    uint64_t t_sent;      /* last (re)send (resend timer) */
    unsigned char request[STUN_HEADER_BYTES];
};

struct sock {
    int fd;
    struct sockaddr_in local; /* what XOR-MAPPED-ADDRESS must say */
    int nqueued;              /* slots waiting in `queue` to be sent */
    int *queue;               /* slot indexes, up to the window */
    struct mmsghdr *tx;
    struct iovec *tx_iov;
};

struct counters {
    uint64_t sent, resent, send_errors, answered, unmatched, invalid, refused;
};

static struct latency latency; /* of the answers counted */
static uint32_t run_nonce;

static void put16(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}
static void put32(unsigned char *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v); }
static uint32_t get16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t get32(const unsigned char *p) { return get16(p) << 16 | get16(p + 2); }

/* Transaction id (RFC 8489 §5, 96 bits): run nonce | slot index | slot request number. */
static void new_transaction(struct slot *s, uint32_t index, uint64_t now) {
    s->seq++;
    put16(s->request, BINDING_REQUEST);
    put16(s->request + 2, 0); /* no attributes: the bare request most clients send */
    put32(s->request + 4, STUN_MAGIC_COOKIE);
    put32(s->request + 8, run_nonce);
    put32(s->request + 12, index);
    put32(s->request + 16, s->seq);
    s->outstanding = 1;
    s->t_first = now;
}

static void queue_send(struct sock *k, struct slot *slots, int index, uint64_t now) {
    k->queue[k->nqueued++] = index;
    slots[index].t_sent = now;
}

/* sendmmsg the queued requests. A request the kernel does not take (full buffer, or an
 * ICMP error of an earlier datagram reported on this call) stays outstanding: the resend
 * timer sends it again, so nothing is lost for good. */
static void flush(struct sock *k, struct slot *slots, struct counters *c) {
    int done = 0;
    for (int i = 0; i < k->nqueued; i++) {
        k->tx_iov[i].iov_base = slots[k->queue[i]].request;
        k->tx_iov[i].iov_len = STUN_HEADER_BYTES;
        memset(&k->tx[i].msg_hdr, 0, sizeof k->tx[i].msg_hdr);
        k->tx[i].msg_hdr.msg_iov = &k->tx_iov[i];
        k->tx[i].msg_hdr.msg_iovlen = 1;
    }
    while (done < k->nqueued) {
        int n = sendmmsg(k->fd, k->tx + done, (unsigned)(k->nqueued - done), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != ECONNREFUSED) die("sendmmsg");
            c->send_errors++;
            break;
        }
        done += n;
        c->sent += (uint64_t)n;
    }
    k->nqueued = 0;
}

/* 1 if the answer's XOR-MAPPED-ADDRESS (RFC 8489 §14.2) is this socket's own address. */
static int reflects(const unsigned char *b, size_t len, const struct sockaddr_in *local) {
    size_t at = STUN_HEADER_BYTES;
    while (at + 4 <= len) {
        uint32_t type = get16(b + at), alen = get16(b + at + 2);
        if (at + 4 + alen > len) return 0;
        if (type == ATTR_XOR_MAPPED_ADDRESS) {
            if (alen != 8 || b[at + 5] != FAMILY_IPV4) return 0;
            uint32_t port = get16(b + at + 6) ^ (STUN_MAGIC_COOKIE >> 16);
            uint32_t ip = get32(b + at + 8) ^ STUN_MAGIC_COOKIE;
            return port == ntohs(local->sin_port) && ip == ntohl(local->sin_addr.s_addr);
        }
        at += 4 + ((alen + 3) & ~3U); /* attributes are padded to 4 bytes (§14) */
    }
    return 0;
}

/* The slot this datagram answers, or -1 (with the reason counted). */
static int match(const unsigned char *b, size_t len, int flags, int sock_index,
                 const struct sock *k, struct slot *slots, int window, struct counters *c) {
    if ((flags & MSG_TRUNC) || len < STUN_HEADER_BYTES || get16(b) != BINDING_SUCCESS ||
        get32(b + 4) != STUN_MAGIC_COOKIE || get16(b + 2) + STUN_HEADER_BYTES != len ||
        get32(b + 8) != run_nonce) {
        c->invalid++;
        return -1;
    }
    uint32_t index = get32(b + 12);
    if (index >= (uint32_t)window) {
        c->invalid++;
        return -1;
    }
    struct slot *s = &slots[index];
    if (!s->outstanding || s->sock != sock_index || get32(b + 16) != s->seq) {
        c->unmatched++; /* a late duplicate: its transaction was answered already */
        return -1;
    }
    if (!reflects(b, len, &k->local)) {
        c->invalid++;
        return -1;
    }
    return (int)index;
}

struct rx {
    struct mmsghdr msgs[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    unsigned char buf[RECV_BATCH][ANSWER_MAX_BYTES];
};

static void answered(struct slot *s, uint64_t now, const struct window_clock *w,
                     struct counters *c) {
    s->outstanding = 0;
    c->answered++;
    if (in_window(w, now)) latency_add(&latency, now - s->t_first);
}

/* Read every waiting answer on socket k; each answered slot starts its next transaction.
 * Returns how many answers were counted. Bounded: at most 16 batches per call, so one
 * busy socket cannot starve the others or the resend timer. */
static uint64_t drain(struct sock *socks, int ki, struct slot *slots, int window,
                      struct rx *rx, const struct window_clock *w, struct counters *c) {
    struct sock *k = &socks[ki];
    uint64_t got = 0;
    for (int round = 0; round < 16; round++) {
        for (int i = 0; i < RECV_BATCH; i++) {
            rx->iov[i].iov_base = rx->buf[i];
            rx->iov[i].iov_len = ANSWER_MAX_BYTES;
            memset(&rx->msgs[i].msg_hdr, 0, sizeof rx->msgs[i].msg_hdr);
            rx->msgs[i].msg_hdr.msg_iov = &rx->iov[i];
            rx->msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(k->fd, rx->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            if (errno == ECONNREFUSED) { /* ICMP port unreachable: the server is not up */
                c->refused++;
                break;
            }
            die("recvmmsg");
        }
        uint64_t now = now_ns();
        for (int i = 0; i < n; i++) {
            int idx = match(rx->buf[i], rx->msgs[i].msg_len, rx->msgs[i].msg_hdr.msg_flags,
                            ki, k, slots, window, c);
            if (idx < 0) continue;
            answered(&slots[idx], now, w, c);
            got++;
            new_transaction(&slots[idx], (uint32_t)idx, now);
            queue_send(k, slots, idx, now);
        }
        flush(k, slots, c);
        if (n < RECV_BATCH) break;
    }
    return got;
}

static void resend_overdue(struct sock *socks, int nsock, struct slot *slots, int window,
                           uint64_t now, uint64_t resend_ns, struct counters *c) {
    for (int i = 0; i < window; i++) {
        struct slot *s = &slots[i];
        if (s->outstanding && now - s->t_sent >= resend_ns) {
            queue_send(&socks[s->sock], slots, i, now);
            c->resent++;
        }
    }
    for (int k = 0; k < nsock; k++)
        if (socks[k].nqueued) flush(&socks[k], slots, c);
}

static void open_socket(struct sock *k, const struct sockaddr_in *server, int window) {
    int size = SOCKET_BUFFER_BYTES;
    memset(k, 0, sizeof *k);
    k->fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (k->fd < 0) die("socket");
    /* Room for bursts, so the client side is never where datagrams get dropped. */
    setsockopt(k->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(k->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    /* Connected: the kernel drops datagrams from anyone but the server, and sendmmsg
     * needs no addresses. connect() also binds the ephemeral port we read back here. */
    if (connect(k->fd, (const struct sockaddr *)server, sizeof *server) < 0) die("connect");
    socklen_t len = sizeof k->local;
    if (getsockname(k->fd, (struct sockaddr *)&k->local, &len) < 0) die("getsockname");
    k->queue = calloc((size_t)window, sizeof *k->queue);
    k->tx = calloc((size_t)window, sizeof *k->tx);
    k->tx_iov = calloc((size_t)window, sizeof *k->tx_iov);
    if (!k->queue || !k->tx || !k->tx_iov) die("calloc");
}

static void usage(void) {
    fprintf(stderr, "usage: stun_loadgen -h HOST -p PORT [-n WINDOW] [-s SOCKETS] [-d S] "
                    "[-w S] [-r RESEND_MS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    struct run_options o = RUN_OPTIONS_DEFAULT;
    int window = 64, nsock = 1, resend_ms = 200, opt;
    while ((opt = getopt(argc, argv, "h:p:n:s:d:w:r:")) != -1) {
        if (common_option(opt, optarg, &o)) continue;
        switch (opt) {
        case 'n': window = atoi(optarg); break;
        case 's': nsock = atoi(optarg); break;
        case 'r': resend_ms = atoi(optarg); break;
        default: usage();
        }
    }
    if (o.port <= 0 || o.port > 65535 || window < 1 || window > MAX_WINDOW || nsock < 1 ||
        nsock > MAX_SOCKETS || nsock > window || o.duration_s <= 0 ||
        o.duration_s > MAX_DURATION_S || o.warmup_s < 0 || o.warmup_s > MAX_WARMUP_S ||
        resend_ms < 1) {
        fprintf(stderr, "stun_loadgen: need -p PORT, 1 <= -n <= %d, 1 <= -s <= min(%d, -n), "
                        "0 < -d <= %.0f, 0 <= -w <= %.0f, -r >= 1\n",
                MAX_WINDOW, MAX_SOCKETS, MAX_DURATION_S, MAX_WARMUP_S);
        usage();
    }
    struct sockaddr_in server = server_address(&o);
    if (getrandom(&run_nonce, sizeof run_nonce, 0) != sizeof run_nonce) die("getrandom");

    struct sock socks[MAX_SOCKETS];
    struct pollfd pfds[MAX_SOCKETS];
    for (int k = 0; k < nsock; k++) {
        open_socket(&socks[k], &server, window);
        pfds[k] = (struct pollfd){.fd = socks[k].fd, .events = POLLIN};
    }
    struct slot *slots = calloc((size_t)window, sizeof *slots);
    struct rx *rx = malloc(sizeof *rx);
    if (!slots || !rx) die("calloc");

    struct counters c = {0};
    uint64_t t_begin = now_ns(), resend_ns = (uint64_t)resend_ms * 1000000ULL;
    struct window_clock w = window_after(t_begin, &o);
    for (int i = 0; i < window; i++) {
        slots[i].sock = i % nsock;
        new_transaction(&slots[i], (uint32_t)i, t_begin);
        queue_send(&socks[slots[i].sock], slots, i, t_begin);
    }
    for (int k = 0; k < nsock; k++) flush(&socks[k], slots, &c);

    uint64_t last_answer = t_begin, next_resend_check = t_begin + resend_ns / 4;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= w.end) break;
        if (now - last_answer > STALL_NS) fail("no answer for 5 s (server stuck, gone, or "
                                               "not answering Binding requests)");
        if (now >= next_resend_check) {
            resend_overdue(socks, nsock, slots, window, now, resend_ns, &c);
            next_resend_check = now + resend_ns / 4;
        }
        int n = poll(pfds, (nfds_t)nsock, 10);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("poll");
        for (int k = 0; k < nsock && n > 0; k++) {
            if (!pfds[k].revents) continue;
            if (drain(socks, k, slots, window, rx, &w, &c)) last_answer = now_ns();
        }
    }
    for (int k = 0; k < nsock; k++) {
        close(socks[k].fd);
        free(socks[k].queue);
        free(socks[k].tx);
        free(socks[k].tx_iov);
    }
    free(rx);

    double measured_s = window_seconds(&w);
    printf("{\"window\": %d, \"sockets\": %d, \"warmup_s\": %.3f, \"duration_s\": %.6f, "
           "\"resend_ms\": %d, \"responses\": %llu, ", window, nsock, o.warmup_s, measured_s,
           resend_ms, (unsigned long long)latency.count);
    print_rate_and_latency(&latency, measured_s);
    printf(", \"answered_total\": %llu, \"sent\": %llu, \"resent\": %llu, "
           "\"send_errors\": %llu, \"unmatched\": %llu, \"invalid\": %llu, \"refused\": %llu}\n",
           (unsigned long long)c.answered, (unsigned long long)c.sent,
           (unsigned long long)c.resent, (unsigned long long)c.send_errors,
           (unsigned long long)c.unmatched, (unsigned long long)c.invalid,
           (unsigned long long)c.refused);
    free(slots);
    return 0;
}
