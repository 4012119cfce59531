/*
 * bench_common.h: what the two load generators (loadgen.c, stun_loadgen.c) share.
 *
 * The monotonic clock, the two ways to exit on an error, the options every generator takes
 * (-h HOST -p PORT -d SECONDS -w WARMUP_SECONDS), the measured window after the warm-up,
 * and the latency histogram with the figures it prints into the JSON result. Everything is
 * static inline: each generator is one .c file that includes this once, so there is nothing
 * to link. Define BENCH_PROGRAM (the program's name, for its error messages) before the
 * include.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef BENCH_PROGRAM
#error "define BENCH_PROGRAM (the program's name) before including bench_common.h"
#endif

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* A failed system call: errno says why. */
__attribute__((noreturn)) static inline void die(const char *syscall) {
    fprintf(stderr, BENCH_PROGRAM ": %s: %s\n", syscall, strerror(errno));
    exit(1);
}

/* The server misbehaved (or the arguments are wrong): fmt says how. */
__attribute__((format(printf, 1, 2), noreturn)) static inline void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(BENCH_PROGRAM ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* -- options ----------------------------------------------------------------------------- */

struct run_options {
    const char *host;
    int port;
    double duration_s, warmup_s;
};

#define RUN_OPTIONS_DEFAULT {.host = "127.0.0.1", .port = 0, .duration_s = 5, .warmup_s = 1}

/* Takes the options every generator has; 0 for any other letter (the caller's to handle). */
static inline int common_option(int opt, const char *arg, struct run_options *o) {
    switch (opt) {
    case 'h': o->host = arg; return 1;
    case 'p': o->port = atoi(arg); return 1;
    case 'd': o->duration_s = atof(arg); return 1;
    case 'w': o->warmup_s = atof(arg); return 1;
    default: return 0;
    }
}

/* The server's IPv4 address; a host that is not a dotted quad fails the run. */
static inline struct sockaddr_in server_address(const struct run_options *o) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1)
        fail("bad host %s (IPv4 only)", o->host);
    return addr;
}

/* -- the measured window ----------------------------------------------------------------- */

struct window_clock {
    uint64_t measure, end; /* replies in [measure, end) are counted */
};

static inline struct window_clock window_after(uint64_t begin_ns, const struct run_options *o) {
    struct window_clock w = {.measure = begin_ns + (uint64_t)(o->warmup_s * 1e9)};
    w.end = w.measure + (uint64_t)(o->duration_s * 1e9);
    return w;
}

static inline int in_window(const struct window_clock *w, uint64_t t_ns) {
    return t_ns >= w->measure && t_ns < w->end;
}

static inline double window_seconds(const struct window_clock *w) {
    return (double)(w->end - w->measure) / 1e9;
}

/* -- latency ----------------------------------------------------------------------------- */

/* Log-linear histogram in nanoseconds: 64 linear sub-buckets per power of two, so any
 * percentile read from it is within 1/128 of the truth. */
#define SUB_BITS 6
#define SUB_COUNT (1 << SUB_BITS)
#define NBUCKETS (64 * SUB_COUNT)

/* The latencies counted inside the measured window. */
struct latency {
    uint64_t count, sum_ns, max_ns;
    uint64_t hist[NBUCKETS];
};

static inline int bucket_of(uint64_t v) {
    if (v < SUB_COUNT) return (int)v;
    int e = 63 - __builtin_clzll(v); /* e >= SUB_BITS */
    int sub = (int)((v >> (e - SUB_BITS)) & (SUB_COUNT - 1));
    return (e - SUB_BITS + 1) * SUB_COUNT + sub;
}

static inline double bucket_mid(int idx) {
    if (idx < SUB_COUNT) return idx;
    int e = idx / SUB_COUNT + SUB_BITS - 1, sub = idx % SUB_COUNT;
    double width = (double)(1ULL << (e - SUB_BITS));
    return (SUB_COUNT + sub) * width + width / 2;
}

static inline void latency_add(struct latency *l, uint64_t ns) {
    l->hist[bucket_of(ns)]++;
    l->count++;
    l->sum_ns += ns;
    if (ns > l->max_ns) l->max_ns = ns;
}

static inline double percentile_us(const struct latency *l, double p) {
    uint64_t rank = (uint64_t)(p * (double)l->count + 0.999999), seen = 0;
    if (rank == 0) rank = 1;
    for (int i = 0; i < NBUCKETS; i++) {
        seen += l->hist[i];
        if (seen >= rank) return bucket_mid(i) / 1000.0;
    }
    return 0;
}

/* The rate and latency members of the JSON result, in this order:
 * "rps", "p50_us", "p99_us", "p999_us", "mean_us", "max_us" (no braces, no comma around). */
static inline void print_rate_and_latency(const struct latency *l, double measured_s) {
    printf("\"rps\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"mean_us\": %.1f, \"max_us\": %.1f",
           (double)l->count / measured_s, percentile_us(l, 0.50), percentile_us(l, 0.99),
           percentile_us(l, 0.999), l->count ? (double)l->sum_ns / 1000.0 / (double)l->count : 0,
           (double)l->max_ns / 1000.0);
}

#endif /* BENCH_COMMON_H */
