/* qrngd load client for bench/bench_daemon.py: the PKCS#11 module's own protocol code (csrc/qrngd_client/conn.c)
 * asking for 48-byte seeds (one DRBG reseed each) in a loop for a given time.
 * Usage: qrngd_seed_client SOCKET NAME SECONDS
 * Prints one line: the number of requests, then the latency of each in nanoseconds (sorted), space separated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"

static long long ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s SOCKET NAME SECONDS\n", argv[0]); return 2; }
    qrngd_conn c;
    memset(&c, 0, sizeof c);
    c.fd = -1;
    c.timeout_ms = 5000;
    snprintf(c.path, sizeof c.path, "%s", argv[1]);
    snprintf(c.name, sizeof c.name, "%s", argv[2]);
    double seconds = atof(argv[3]);
    size_t cap = 1 << 20, n = 0;
    long long *lat = malloc(cap * sizeof *lat);
    unsigned char seed[48];
    char err[320];
    if (!lat || qrngd_seed(&c, seed, 48, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    long long end = ns() + (long long)(seconds * 1e9);
    while (ns() < end && n < cap) {
        long long t = ns();
        if (qrngd_seed(&c, seed, 48, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        lat[n++] = ns() - t;
    }
    qsort(lat, n, sizeof *lat, cmp);
    printf("%zu", n);
    for (size_t i = 0; i < n; i++) printf(" %lld", lat[i]);
    printf("\n");
    qrngd_close(&c);
    free(lat);
    return 0;
}
