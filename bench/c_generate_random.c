/* C_GenerateRandom benchmark: µs per call and MB/s for a PKCS#11 module, getrandom(2) and OpenSSL
 * RAND_bytes, measured in the same process run. Usage: c_generate_random MODULE [module|getrandom|openssl [SIZE]]
 * Prints one row per request size: min over 7 repetitions of the mean time per call. */
#include "qrng-pkcs11.h"
#include <dlfcn.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

typedef int (*gen_fn)(unsigned char *, size_t);
static CK_FUNCTION_LIST *f;
static CK_SESSION_HANDLE h;
static int p11(unsigned char *b, size_t n) { return f->C_GenerateRandom(h, b, n) == 0 ? 0 : -1; }
static int grnd(unsigned char *b, size_t n) {
    size_t d = 0;
    while (d < n) { ssize_t r = getrandom(b + d, n - d, 0); if (r < 0) return -1; d += (size_t)r; }
    return 0;
}
static int ossl(unsigned char *b, size_t n) { return RAND_bytes(b, (int)n) == 1 ? 0 : -1; }

static double bench(gen_fn g, unsigned char *buf, size_t n) {
    long iters = n <= 1024 ? 200000 : n <= 65536 ? 4000 : 50;
    double best = 1e9;
    for (int rep = 0; rep < 7; rep++) {
        double t = now();
        for (long i = 0; i < iters; i++) if (g(buf, n)) { fprintf(stderr, "generate failed\n"); exit(1); }
        double per = (now() - t) / iters;
        if (per < best) best = per;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODULE\n", argv[0]); return 2; }
    const char *which = argc > 2 ? argv[2] : "module";
    unsigned char *buf = malloc(1 << 20);
    size_t sizes[] = {32, 1024, 65536, 1 << 20};
    gen_fn g = p11;
    if (!strcmp(which, "getrandom")) g = grnd;
    else if (!strcmp(which, "openssl")) g = ossl;
    else {
        double t0 = now();
        void *dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!dl) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        CK_RV (*gfl)(CK_FUNCTION_LIST **) = (CK_RV (*)(CK_FUNCTION_LIST **))dlsym(dl, "C_GetFunctionList");
        gfl(&f);
        if (f->C_Initialize(NULL)) { fprintf(stderr, "C_Initialize failed\n"); return 1; }
        CK_SLOT_ID slots[8]; CK_ULONG n = 8;
        f->C_GetSlotList(1, slots, &n);
        if (f->C_OpenSession(slots[0], 0x4, NULL, NULL, &h)) { fprintf(stderr, "C_OpenSession failed\n"); return 1; }
        fprintf(stderr, "%s: initialise + open session %.1f ms\n", argv[1], (now() - t0) * 1e3);
    }
    size_t only = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : 0;  /* one request size only */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (only && sizes[i] != only) continue;
        double t = bench(g, buf, sizes[i]);
        printf("%zu %.4f %.1f\n", sizes[i], t * 1e6, sizes[i] / t / 1e6);
    }
    return 0;
}
