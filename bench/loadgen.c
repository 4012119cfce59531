/*
 * loadgen: closed-loop TCP echo load generator (one thread, epoll, level-triggered).
 *
 *   loadgen -h HOST -p PORT [-c CONNS] [-s SIZE] [-d SECONDS] [-w WARMUP_SECONDS]
 *
 * Each of CONNS connections does ping-pong: send SIZE bytes, wait until exactly SIZE bytes
 * have come back, compare them with what was sent, repeat. Requests completed during the
 * warm-up are not counted. Every reply is checked byte for byte (memcmp of SIZE bytes is
 * cheap next to the syscalls), so a server that drops, reorders or corrupts bytes fails the
 * run instead of producing a number.
 *
 * Latency (send start -> last reply byte) goes into a log-linear histogram in nanoseconds:
 * 64 linear sub-buckets per power of two, so any percentile is within 1/128 of the truth.
 *
 * Prints one JSON object on stdout. Exit 0 on success; on error a message on stderr, exit 1
 * (2 for bad usage).
 * Written in C so that the generator costs far less per request than a Python server does.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BENCH_PROGRAM "loadgen"
#include "bench_common.h"

#define STALL_NS 5000000000ULL /* no reply anywhere for 5 s: the server is stuck */

struct conn {
    int fd;
    int id;
    uint32_t seq;
    uint64_t measured; /* requests completed inside the measured window */
    size_t sent, rcvd;
    uint64_t t0;
    int want_out;
    unsigned char *tx, *rx;
};

static struct latency latency;

/* The first 8 bytes carry (connection, request number), so with SIZE >= 8 no two requests
 * of a run share a payload: a reply from the wrong connection or a stale one cannot match
 * by accident. Adding i keeps the bytes from repeating. */
static void fill_payload(struct conn *c, size_t size) {
    uint64_t tag = (uint64_t)c->id << 32 | c->seq;
    for (size_t i = 0; i < size; i++) c->tx[i] = (unsigned char)((tag >> (8 * (i % 8))) + i);
}

static void set_events(int ep, struct conn *c, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = want_out;
}

static void push(int ep, struct conn *c, size_t size) {
    while (c->sent < size) {
        ssize_t n = send(c->fd, c->tx + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) break;
        if (n < 0) die("send");
        c->sent += (size_t)n;
    }
    int pending = c->sent < size;
    if (pending != c->want_out) set_events(ep, c, pending);
}

static void start_request(int ep, struct conn *c, size_t size) {
    c->seq++;
    c->sent = c->rcvd = 0;
    fill_payload(c, size);
    c->t0 = now_ns();
    push(ep, c, size);
}

static int open_conn(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) die("socket");
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) die("fcntl");
    return fd;
}

int main(int argc, char **argv) {
    struct run_options o = RUN_OPTIONS_DEFAULT;
    int nconn = 100, opt;
    size_t size = 64;
    while ((opt = getopt(argc, argv, "h:p:c:s:d:w:")) != -1) {
        if (common_option(opt, optarg, &o)) continue;
        switch (opt) {
        case 'c': nconn = atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        default:
            fprintf(stderr, "usage: loadgen -h HOST -p PORT [-c N] [-s BYTES] [-d S] [-w S]\n");
            return 2;
        }
    }
    if (o.port <= 0 || nconn <= 0 || size == 0 || o.duration_s <= 0) {
        fprintf(stderr, "loadgen: need -p PORT and positive -c, -s, -d\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_in addr = server_address(&o);
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct conn *conns = calloc((size_t)nconn, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < nconn; i++) {
        struct conn *c = &conns[i];
        c->id = i;
        c->fd = open_conn(&addr);
        c->tx = malloc(size);
        c->rx = malloc(size);
        if (!c->tx || !c->rx) die("malloc");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }

    uint64_t t_begin = now_ns();
    struct window_clock w = window_after(t_begin, &o);
    uint64_t verified = 0, last_progress = t_begin;
    for (int i = 0; i < nconn; i++) start_request(ep, &conns[i], size);

    struct epoll_event events[1024];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= w.end) break;
        if (now - last_progress > STALL_NS) fail("no reply for 5 s (server stuck or not echoing)");
        int n = epoll_wait(ep, events, 1024, 100);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int k = 0; k < n; k++) {
            struct conn *c = events[k].data.ptr;
            if (events[k].events & EPOLLOUT) push(ep, c, size);
            if (!(events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            ssize_t r = recv(c->fd, c->rx + c->rcvd, size - c->rcvd, 0);
            if (r < 0 && errno == EAGAIN) continue;
            if (r < 0) die("recv");
            if (r == 0) fail("server closed connection %d", c->id);
            c->rcvd += (size_t)r;
            if (c->rcvd < size) continue;
            uint64_t done = now_ns();
            if (c->sent < size || memcmp(c->tx, c->rx, size) != 0)
                fail("conn %d request %u: reply differs from request", c->id, c->seq);
            verified++;
            last_progress = done;
            if (in_window(&w, done)) {
                latency_add(&latency, done - c->t0);
                c->measured++;
            }
            start_request(ep, c, size);
        }
    }
    double measured = window_seconds(&w);
    for (int i = 0; i < nconn; i++) /* a fair, correct server never starves a connection */
        if (conns[i].measured == 0)
            fail("conn %d got no complete reply in the %.1f s measured (%zu of %zu bytes "
                 "back): the server lost bytes or starves connections",
                 i, o.duration_s, conns[i].rcvd, size);
    for (int i = 0; i < nconn; i++) close(conns[i].fd);

    printf("{\"connections\": %d, \"size\": %zu, \"warmup_s\": %.3f, \"duration_s\": %.6f, "
           "\"requests\": %llu, ", nconn, size, o.warmup_s, measured,
           (unsigned long long)latency.count);
    print_rate_and_latency(&latency, measured);
    printf(", \"verified_replies\": %llu}\n", (unsigned long long)verified);
    return 0;
}
