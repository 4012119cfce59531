/*
 * pingpong.c: one thread, one loopback TCP connection, 64-byte request and reply written
 * and read by the same thread: the kernel's whole cost of a request-reply with no
 * scheduler or server in it, so a few hundred nanoseconds of probes show above the noise.
 *
 *     pingpong ROUND_TRIPS BATCHES
 *
 * Sets up the connection, prints "ready", then per line read from stdin runs ROUND_TRIPS
 * round trips and prints the nanoseconds per round trip (bench/hooks.py attaches and
 * detaches probes between batches).
 */
#define BENCH_PROGRAM "pingpong"
#include "bench_common.h"

#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define MESSAGE_BYTES 64

static void move_exactly(int from, int to, char *buf) {
    if (write(from, buf, MESSAGE_BYTES) != MESSAGE_BYTES)
        die("write");
    ssize_t got = 0;
    while (got < MESSAGE_BYTES) {
        ssize_t n = read(to, buf + got, MESSAGE_BYTES - got);
        if (n <= 0)
            n < 0 ? die("read") : fail("peer closed");
        got += n;
    }
}

static void connected_pair(int *client, int *server) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0
        || listen(listener, 1) < 0 || getsockname(listener, (struct sockaddr *)&addr, &len) < 0)
        die("listen");
    *client = socket(AF_INET, SOCK_STREAM, 0);
    if (*client < 0 || connect(*client, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("connect");
    if ((*server = accept(listener, NULL, NULL)) < 0)
        die("accept");
    close(listener);
    // Each 64-byte write is its own segment, as in a request-reply protocol.
    setsockopt(*client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(*server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int main(int argc, char **argv) {
    if (argc != 3)
        fail("usage: pingpong ROUND_TRIPS BATCHES");
    long round_trips = atol(argv[1]), batches = atol(argv[2]);
    if (round_trips < 1 || batches < 1)
        fail("ROUND_TRIPS and BATCHES must be positive");
    int client, server;
    char buf[MESSAGE_BYTES] = {0}, line[16];
    connected_pair(&client, &server);
    printf("ready\n");
    fflush(stdout);
    for (long b = 0; b < batches && fgets(line, sizeof line, stdin); b++) {
        uint64_t start = now_ns();
        for (long i = 0; i < round_trips; i++) {
            move_exactly(client, server, buf);
            move_exactly(server, client, buf);
        }
        printf("%.1f\n", (double)(now_ns() - start) / round_trips);
        fflush(stdout);
    }
    return 0;
}
