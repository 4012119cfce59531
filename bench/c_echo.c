/*
 * c_echo: the smallest sensible epoll echo server (one thread, level-triggered).
 *
 *   c_echo HOST PORT
 *
 * The benchmark's ceiling: the most a single-threaded server on one core can show in this
 * setup (loopback, and a load generator that does as much work per request on its core).
 * Read what is there, write it back; if the socket buffer is full, keep the rest and stop
 * reading that connection until it drains (backpressure), exactly what a careful reactor
 * does. Stops on SIGTERM (default action).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
    int fd;
    char *pending; /* unsent bytes when the socket buffer was full, else NULL */
    size_t len, off;
};

static char buf[65536];

static void die(const char *what) {
    fprintf(stderr, "c_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void watch(int ep, int op, struct conn *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static void drop(struct conn *c) {
    close(c->fd); /* close() also removes it from the epoll set */
    free(c->pending);
    free(c);
}

static void accept_all(int ep, int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK), one = 1;
        if (fd < 0) {
            if (errno != EAGAIN && errno != ECONNABORTED) perror("c_echo: accept4");
            return;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->fd = fd;
        watch(ep, EPOLL_CTL_ADD, c, EPOLLIN);
    }
}

/* Write pending bytes; returns 0 when all are out, 1 if some remain, -1 on error. */
static int flush_pending(struct conn *c) {
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN ? 1 : -1;
        c->off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    return 0;
}

static void on_readable(int ep, struct conn *c) {
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        drop(c);
        return;
    }
    ssize_t w = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN) {
        drop(c);
        return;
    }
    if (w < 0) w = 0;
    if (w == n) return;
    c->pending = malloc((size_t)(n - w));
    if (!c->pending) die("malloc");
    memcpy(c->pending, buf + w, (size_t)(n - w));
    c->len = (size_t)(n - w);
    c->off = 0;
    watch(ep, EPOLL_CTL_MOD, c, EPOLLOUT); /* stop reading until the peer catches up */
}

static void on_writable(int ep, struct conn *c) {
    int r = flush_pending(c);
    if (r < 0) drop(c);
    else if (r == 0) watch(ep, EPOLL_CTL_MOD, c, EPOLLIN);
}

static int listen_on(const char *host, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        errno = EINVAL;
        die("bad host (IPv4 only)");
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    if (fd < 0) die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: c_echo HOST PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(argv[1], atoi(argv[2]));
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct conn listener = {.fd = lfd};
    watch(ep, EPOLL_CTL_ADD, &listener, EPOLLIN);
    printf("c_echo listening on %s:%s\n", argv[1], argv[2]);
    fflush(stdout);

    struct epoll_event events[1024];
    for (;;) {
        int n = epoll_wait(ep, events, 1024, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == &listener) accept_all(ep, lfd);
            else if (c->pending) on_writable(ep, c);
            else on_readable(ep, c);
        }
    }
}
