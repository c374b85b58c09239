"""Builds qrng._native: the Toeplitz kernel on gf2x (GF(2)[x] multiplication, Debian libgf2x).

Run by set-up (``python -m qrng._native_build``). The Toeplitz product T x over GF(2) equals the
middle m coefficients of the carry-less product s(x) * x(x), so a field-grade polynomial multiplier
does the heavy lifting; this file only packs words and shifts the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cffi import FFI

CDEF = """
int qrng_multimcw(const unsigned char *s, long n, int k, long *correct, long *max_run);
long qrng_collision_pairs(const unsigned char *b, long n, long *threes);
void qrng_iid_stats(const unsigned char *raw, long n, const unsigned char *dir, long nd,
                    const unsigned char *med, long nm, double mean, double median, double *out);
int qrng_lag(const unsigned char *s, long n, int k, long *correct, long *max_run);
int qrng_multimmc(const unsigned char *s, long n, int k, long *correct, long *max_run);
int qrng_lz78y(const unsigned char *s, long n, int k, long *correct, long *max_run);
int qrng_ctr_drbg_update(unsigned char *state, const unsigned char *provided);
int qrng_ctr_drbg_generate(unsigned char *state, const unsigned char *add, unsigned char *out, size_t n);
typedef struct qrng_tplan qrng_tplan;
qrng_tplan *qrng_toeplitz_plan(const unsigned char *seed, size_t seed_bits, size_t n_bits);
int qrng_toeplitz_apply(qrng_tplan *plan, const unsigned char *in, unsigned char *out);
void qrng_toeplitz_plan_free(qrng_tplan *plan);
int qrng_toeplitz_uses_fft(void);
int qrng_toeplitz(const unsigned char *seed, size_t seed_bits,
                  const unsigned char *in, size_t n_bits,
                  unsigned char *out, size_t m_bits);
"""

SOURCE = r"""
#include <gf2x.h>
#include <pthread.h>
#ifdef QRNG_GF2X_FFT
#include <gf2x/gf2x-ternary-fft.h>
#endif
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bit packing assumes a little-endian machine"
#endif

/* --- Toeplitz plans: one per extractor (its seed is fixed) ----------------------------------------------
   With gf2x's FFT interface the product is a middle product MP(seed, x), whose coefficients n-1 .. n+m-2 are
   exactly the m output bits, and the seed's transform is computed once. Without it, the plan falls back to
   the full carry-less product of qrng_toeplitz. Either way the result is T x, bit for bit. */
typedef struct qrng_tplan qrng_tplan;
struct qrng_tplan {
    size_t n_bits, m_bits, seed_bits;
    unsigned char *seed;
    pthread_mutex_t lock;
#ifdef QRNG_GF2X_FFT
    gf2x_ternary_fft_info_t info;
    gf2x_ternary_fft_ptr ta, tb, tc;
    void *t1, *t2;
    unsigned long *xin, *cout;
#endif
};

int qrng_toeplitz_uses_fft(void) {
#ifdef QRNG_GF2X_FFT
    return 1;
#else
    return 0;
#endif
}

void qrng_toeplitz_plan_free(qrng_tplan *p) {
    if (!p) return;
#ifdef QRNG_GF2X_FFT
    if (p->ta) { gf2x_ternary_fft_free(p->info, p->ta, 1); gf2x_ternary_fft_free(p->info, p->tb, 1);
                 gf2x_ternary_fft_free(p->info, p->tc, 1); gf2x_ternary_fft_info_clear(p->info); }
    free(p->t1); free(p->t2); free(p->xin); free(p->cout);
#endif
    free(p->seed);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

qrng_tplan *qrng_toeplitz_plan(const unsigned char *seed, size_t seed_bits, size_t n_bits) {
    if (n_bits == 0 || seed_bits < n_bits) return NULL;
    qrng_tplan *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->lock, NULL);
    p->n_bits = n_bits; p->seed_bits = seed_bits; p->m_bits = seed_bits - n_bits + 1;
    p->seed = malloc((seed_bits + 7) / 8);
    if (!p->seed) { qrng_toeplitz_plan_free(p); return NULL; }
    memcpy(p->seed, seed, (seed_bits + 7) / 8);
#ifdef QRNG_GF2X_FFT
    size_t sw = (seed_bits + 63) / 64, sizes[3];
    unsigned long *sa = calloc(sw, sizeof(unsigned long));
    if (!sa || gf2x_ternary_fft_info_init_mp(p->info, seed_bits, n_bits) != 0) {
        free(sa); free(p->seed); pthread_mutex_destroy(&p->lock); free(p);
        return NULL;
    }
    memcpy(sa, seed, (seed_bits + 7) / 8);
    if (seed_bits % 64) sa[sw - 1] &= (1UL << (seed_bits % 64)) - 1;
    gf2x_ternary_fft_info_get_alloc_sizes(p->info, sizes);
    p->ta = gf2x_ternary_fft_alloc(p->info, 1); p->tb = gf2x_ternary_fft_alloc(p->info, 1);
    p->tc = gf2x_ternary_fft_alloc(p->info, 1);
    p->t1 = malloc(sizes[1] ? sizes[1] : 1); p->t2 = malloc(sizes[2] ? sizes[2] : 1);
    p->xin = calloc((n_bits + 63) / 64, sizeof(unsigned long));
    p->cout = calloc((p->m_bits + 63) / 64 + 2, sizeof(unsigned long));
    if (!p->ta || !p->tb || !p->tc || !p->t1 || !p->t2 || !p->xin || !p->cout ||
        gf2x_ternary_fft_dft(p->info, p->ta, sa, seed_bits, p->t1) != 0) {
        free(sa); qrng_toeplitz_plan_free(p);
        return NULL;
    }
    free(sa);
#endif
    return p;
}

int qrng_toeplitz_apply(qrng_tplan *p, const unsigned char *in, unsigned char *out) {
#ifdef QRNG_GF2X_FFT
    int rc = 0;
    size_t nw = (p->n_bits + 63) / 64;
    pthread_mutex_lock(&p->lock);
    memset(p->xin, 0, nw * sizeof(unsigned long));
    memcpy(p->xin, in, (p->n_bits + 7) / 8);
    if (p->n_bits % 64) p->xin[nw - 1] &= (1UL << (p->n_bits % 64)) - 1;
    if (gf2x_ternary_fft_dft(p->info, p->tb, p->xin, p->n_bits, p->t1) != 0) rc = -2;
    if (!rc) gf2x_ternary_fft_compose(p->info, p->tc, p->ta, p->tb, p->t2);
    if (!rc && gf2x_ternary_fft_ift(p->info, p->cout, p->m_bits, p->tc, p->t1) != 0) rc = -2;
    if (!rc) {
        memcpy(out, p->cout, (p->m_bits + 7) / 8);
        if (p->m_bits % 8) out[p->m_bits / 8] &= (unsigned char)((1u << (p->m_bits % 8)) - 1);
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
#else
    return qrng_toeplitz(p->seed, p->seed_bits, in, p->n_bits, out, p->m_bits);
#endif
}

/* --- CTR_DRBG with AES-256, no derivation function (SP 800-90A 10.2.1) ---------------------------------
   state = Key (32 bytes) || V (16 bytes), updated in place. One EVP context per thread is re-keyed per
   request; the keystream for the output and the three blocks of the following Update come from one
   CTR stream starting at V+1. */
static __thread EVP_CIPHER_CTX *t_ctx;
static const unsigned char ZEROS[64];

static void inc128(unsigned char *v) { for (int i = 15; i >= 0; i--) if (++v[i]) break; }

static const unsigned char ZBLOCK[1 << 16];  /* the keystream is AES-CTR over zeros: read, never written */

static int ctr_stream(unsigned char *state, unsigned char *out, size_t n) {
    unsigned char iv[16];
    int len;
    if (!t_ctx && !(t_ctx = EVP_CIPHER_CTX_new())) return -1;
    memcpy(iv, state + 32, 16);
    inc128(iv);
    if (EVP_EncryptInit_ex(t_ctx, EVP_aes_256_ctr(), NULL, state, iv) != 1) return -1;
    for (size_t done = 0; done < n;) {  /* n <= 2^16 for a DRBG request: one pass, no zeroing of out first */
        size_t k = n - done < sizeof ZBLOCK ? n - done : sizeof ZBLOCK;
        if (EVP_EncryptUpdate(t_ctx, out + done, &len, ZBLOCK, (int)k) != 1) return -1;
        done += k;
    }
    return 0;
}

static int finish_update(const unsigned char *provided, size_t consumed, unsigned char *state) {
    /* skip to the next block boundary, then three blocks: temp = AES(K, V+k+1..V+k+3) */
    unsigned char skip[16], temp[48];
    int len;
    size_t rem = consumed % 16 ? 16 - consumed % 16 : 0;
    if (rem && EVP_EncryptUpdate(t_ctx, skip, &len, ZEROS, (int)rem) != 1) return -1;
    if (EVP_EncryptUpdate(t_ctx, temp, &len, ZEROS, 48) != 1) return -1;
    if (provided) for (int i = 0; i < 48; i++) temp[i] ^= provided[i];
    memcpy(state, temp, 48);
    OPENSSL_cleanse(temp, sizeof temp);
    return 0;
}

int qrng_ctr_drbg_update(unsigned char *state, const unsigned char *provided) {   /* 10.2.1.2 */
    unsigned char none[1];
    if (ctr_stream(state, none, 0)) return -1;
    return finish_update(provided, 0, state);
}

int qrng_ctr_drbg_generate(unsigned char *state, const unsigned char *add, unsigned char *out, size_t n) {
    if (n > (1u << 16)) return -2;                       /* 2^19 bits per request (Table 3) */
    if (add && qrng_ctr_drbg_update(state, add)) return -1;  /* 10.2.1.5.1 step 2 */
    if (ctr_stream(state, out, n)) return -1;
    return finish_update(add, n, state);                 /* step 6: Update(additional_input, Key, V) */
}

/* --- SP 800-90B 6.3.7-6.3.10 prediction estimators ----------------------------------------------------------
   Each returns the number of correct predictions C and the longest run of correct predictions; symbols are
   0..k-1. Semantics (start index, scoreboard ties to the later subpredictor, most-recent mode in a window,
   most frequent next symbol with ties to the larger symbol, dictionary limits) follow the specification as
   NIST's SP800-90B_EntropyAssessment implements it. */

#define RUN(ok) do { if (ok) { (*correct)++; if (++run > *max_run) *max_run = run; } else run = 0; } while (0)

/* 6.3.7 MultiMCW: windows 63, 255, 1023, 4095; predict the most common value of the window (ties: the one
   seen most recently). */
int qrng_multimcw(const unsigned char *s, long n, int k, long *correct, long *max_run) {
    static const long W[4] = {63, 255, 1023, 4095};
    long *cnt = calloc((size_t)4 * k, sizeof(long));
    long *last = malloc((size_t)k * sizeof(long));
    long score[4] = {0, 0, 0, 0}, run = 0;
    int mode[4] = {-1, -1, -1, -1}, winner = 0;
    if (!cnt || !last) { free(cnt); free(last); return -1; }
    for (int a = 0; a < k; a++) last[a] = -1;
    *correct = 0; *max_run = 0;
    for (long p = 0; p < n; p++) {
        /* window j holds s[p-W[j] .. p-1]; it predicts s[p] from p > W[j] on */
        if (p >= W[0]) {
            int pred[4];
            for (int j = 0; j < 4; j++) pred[j] = (p > W[j]) ? mode[j] : -1;
            RUN(pred[winner] == s[p]);
            for (int j = 0; j < 4; j++) {
                if (pred[j] == s[p]) {
                    score[j]++;
                    if (score[j] >= score[winner]) winner = j;
                }
            }
        }
        /* slide every window: s[p] enters, s[p - W[j]] leaves. Invariant: mode = highest count, ties to the
           symbol seen most recently. */
        int a = s[p];
        last[a] = p;
        for (int j = 0; j < 4; j++) {
            long *c = cnt + (size_t)j * k;
            int out = (p >= W[j]) ? s[p - W[j]] : -1;
            c[a]++;
            if (out >= 0) c[out]--;
            int m = mode[j];
            if (m >= 0 && !(out == m && a != m)) {
                if (c[a] >= c[m]) mode[j] = a;  /* the newest symbol wins ties */
                continue;
            }
            long best = 0, bestpos = -1;
            int b = -1;
            for (int y = 0; y < k; y++) {
                if (c[y] > best || (c[y] == best && c[y] > 0 && last[y] > bestpos)) {
                    best = c[y]; bestpos = last[y]; b = y;
                }
            }
            mode[j] = b;
        }
    }
    free(cnt); free(last);
    return 0;
}

/* 6.3.8 Lag: 128 subpredictors; subpredictor d predicts s[i-d]. */
int qrng_lag(const unsigned char *s, long n, int k, long *correct, long *max_run) {
    long score[128] = {0}, run = 0, high = 0;
    int winner = 0;
    (void)k;
    *correct = 0; *max_run = 0;
    for (long i = 1; i < n; i++) {
        RUN(s[i] == s[i - winner - 1]);
        long dmax = i < 128 ? i : 128;
        for (long d = 0; d < dmax; d++) {
            if (s[i - d - 1] == s[i]) {
                long c = ++score[d];
                if (c >= high) { winner = (int)d; high = c; }
            }
        }
    }
    return 0;
}

/* A context dictionary: open addressing on (order, context); each entry keeps counts of next symbols. */
typedef struct { unsigned char ctx[16]; unsigned char len; int nsym; int cap; unsigned char *sym; long *cnt; } Ent;
typedef struct { Ent *e; long cap, used; } Dict;

/* FNV-1a over the context from its newest symbol backwards, so a context one symbol longer extends the hash
   of the shorter one (each order has its own table). */
#define FNV0 1469598103934665603UL
#define FNV_STEP(h, b) (((h) ^ (unsigned long)(b)) * 1099511628211UL)
static unsigned long ctx_hash(const unsigned char *c, int len) {
    unsigned long h = FNV0;
    for (int i = len - 1; i >= 0; i--) h = FNV_STEP(h, c[i]);
    return h;
}

static int dict_init(Dict *d, long cap) {
    d->cap = 1; while (d->cap < cap * 2) d->cap <<= 1;
    d->used = 0;
    d->e = calloc((size_t)d->cap, sizeof(Ent));
    return d->e ? 0 : -1;
}

static void dict_free(Dict *d) {
    for (long i = 0; i < d->cap; i++) { free(d->e[i].sym); free(d->e[i].cnt); }
    free(d->e);
}

static Ent *dict_find_h(Dict *d, const unsigned char *c, int len, unsigned long hash, int create) {
    unsigned long h = hash & (unsigned long)(d->cap - 1);
    for (;;) {
        Ent *e = &d->e[h];
        if (e->len == 0) {
            if (!create) return NULL;
            memcpy(e->ctx, c, (size_t)len); e->len = (unsigned char)len; d->used++;
            return e;
        }
        if (e->len == len && memcmp(e->ctx, c, (size_t)len) == 0) return e;
        h = (h + 1) & (unsigned long)(d->cap - 1);
    }
}

static Ent *dict_find(Dict *d, const unsigned char *c, int len, int create) {
    return dict_find_h(d, c, len, ctx_hash(c, len), create);
}

static long *ent_count(Ent *e, unsigned char y) {
    for (int i = 0; i < e->nsym; i++) if (e->sym[i] == y) return &e->cnt[i];
    if (e->nsym == e->cap) {
        int nc = e->cap ? e->cap * 2 : 2;
        e->sym = realloc(e->sym, (size_t)nc); e->cnt = realloc(e->cnt, (size_t)nc * sizeof(long)); e->cap = nc;
    }
    e->sym[e->nsym] = y; e->cnt[e->nsym] = 0;
    return &e->cnt[e->nsym++];
}

/* the most frequent next symbol; ties to the larger symbol */
static int ent_max(const Ent *e, long *count) {
    long best = 0; int y = -1;
    for (int i = 0; i < e->nsym; i++) {
        if (e->cnt[i] > best || (e->cnt[i] == best && e->sym[i] > y)) { best = e->cnt[i]; y = e->sym[i]; }
    }
    *count = best;
    return y;
}

/* 6.3.2 collision walk over a bit string: a pair collides (t = 2) or the third bit does (t = 3). */
long qrng_collision_pairs(const unsigned char *b, long n, long *threes) {
    long twos = 0, i = 0;
    *threes = 0;
    while (i + 1 < n) {
        if (b[i] == b[i + 1]) { twos++; i += 2; }
        else if (i + 2 < n) { (*threes)++; i += 3; }
        else break;
    }
    return twos;
}

/* SP 800-90B 5.1.1-5.1.10 permutation-test statistics (compression, 5.1.11, is computed by the caller).
   raw: the samples; dir: the data for 5.1.2-5.1.4, 5.1.9, 5.1.10 (binary data: Conversion I); med: the data
   for 5.1.5-5.1.8 (binary data: Conversion II). out[18]: excursion, number and length of directional runs,
   increases/decreases, number and length of runs based on the median, average and maximum collision,
   periodicity and covariance at lags 1, 2, 8, 16, 32. */
void qrng_iid_stats(const unsigned char *raw, long n, const unsigned char *dir, long nd,
                    const unsigned char *med, long nm, double mean, double median, double *out) {
    double sum = 0, ex = 0;
    for (long i = 0; i < n; i++) {
        sum += raw[i];
        double d = sum - (double)(i + 1) * mean;
        if (d < 0) d = -d;
        if (d > ex) ex = d;
    }
    out[0] = ex;
    /* directional runs: +1 when s[i] <= s[i+1], -1 otherwise */
    long runs = nd > 1 ? 1 : 0, longest = nd > 1 ? 1 : 0, cur = 1, up = 0;
    for (long i = 0; i + 1 < nd; i++) {
        int sign = dir[i] <= dir[i + 1];
        up += sign;
        if (i > 0) {
            int prev = dir[i - 1] <= dir[i];
            if (sign == prev) { if (++cur > longest) longest = cur; }
            else { runs++; cur = 1; }
        }
    }
    out[1] = (double)runs;
    out[2] = (double)longest;
    out[3] = (double)(up > (nd - 1 - up) ? up : (nd - 1 - up));
    /* runs with respect to the median */
    long mruns = nm ? 1 : 0, mlong = nm ? 1 : 0;
    cur = 1;
    for (long i = 1; i < nm; i++) {
        int a = med[i] >= median, b = med[i - 1] >= median;
        if (a == b) { if (++cur > mlong) mlong = cur; }
        else { mruns++; cur = 1; }
    }
    out[4] = (double)mruns;
    out[5] = (double)mlong;
    /* collisions: from each start, the number of samples up to and including the first repeat */
    long ncol = 0, maxcol = 0;
    double scol = 0;
    long i = 0;
    while (i < nm) {
        unsigned char seen[256];
        memset(seen, 0, sizeof seen);
        long j = i;
        while (j < nm && !seen[med[j]]) { seen[med[j]] = 1; j++; }
        if (j >= nm) break;
        long len = j - i + 1;
        ncol++; scol += (double)len;
        if (len > maxcol) maxcol = len;
        i = j + 1;
    }
    out[6] = ncol ? scol / (double)ncol : 0;
    out[7] = (double)maxcol;
    static const int LAG[5] = {1, 2, 8, 16, 32};
    for (int l = 0; l < 5; l++) {
        long per = 0;
        double cov = 0;
        for (long t = 0; t + LAG[l] < nd; t++) {
            per += dir[t] == dir[t + LAG[l]];
            cov += (double)dir[t] * (double)dir[t + LAG[l]];
        }
        out[8 + l] = (double)per;
        out[13 + l] = cov;
    }
}

/* Binary MultiMMC: order-d contexts are d-bit integers, so every model is a table (2^16 < 100,000 entries,
   the limit is never reached). count[d][ctx][y]; a context exists once any count is non-zero. */
static int multimmc_binary(const unsigned char *s, long n, long *correct, long *max_run) {
    enum { D = 16 };
    long *cnt[D];
    long score[D] = {0}, run = 0;
    int winner = 0;
    for (int d = 0; d < D; d++) { cnt[d] = calloc((size_t)2 << (d + 1), sizeof(long)); if (!cnt[d]) return -1; }
    *correct = 0; *max_run = 0;
    for (int d = 0; d < D && d < n - 2; d++) {
        unsigned ctx = 0;
        for (int m = 0; m <= d; m++) ctx = (ctx << 1) | s[m];
        cnt[d][2 * ctx + s[d + 1]]++;
    }
    for (long i = 2; i < n; i++) {
        int cur = winner, found = 0;
        unsigned ctx = 0;
        for (int d = 0; d < D; d++) {
            if (i - 2 < d) break;
            ctx |= (unsigned)s[i - d - 1] << d;  /* the context s[i-d-1 .. i-1], oldest symbol highest */
            long *c = &cnt[d][2 * ctx];
            if (d == 0 || found) found = (c[0] | c[1]) != 0;
            if (found) {
                int y = c[1] >= c[0] ? 1 : 0;  /* ties to the larger symbol */
                if (y == s[i]) {
                    if (++score[d] >= score[winner]) winner = d;
                    if (d == cur) { (*correct)++; if (++run > *max_run) *max_run = run; }
                } else if (d == cur) run = 0;
                c[s[i]]++;
            } else {
                c[s[i]] = 1;
            }
        }
    }
    for (int d = 0; d < D; d++) free(cnt[d]);
    return 0;
}

/* 6.3.9 MultiMMC: Markov models of order 1..16, at most 100,000 contexts each. */
int qrng_multimmc(const unsigned char *s, long n, int k, long *correct, long *max_run) {
    if (k == 2) return multimmc_binary(s, n, correct, max_run);
    enum { D = 16 };
    const long MAXE = 100000;
    Dict M[D];
    long entries[D], score[D] = {0}, run = 0;
    int winner = 0;
    (void)k;
    *correct = 0; *max_run = 0;
    if (n < 3) return -1;
    for (int d = 0; d < D; d++) {
        if (dict_init(&M[d], MAXE)) return -1;
        if (d < n - 2) { Ent *e = dict_find(&M[d], s, d + 1, 1); (*ent_count(e, s[d + 1]))++; }
        entries[d] = 1;
    }
    for (long i = 2; i < n; i++) {
        int cur = winner, found = 0;
        unsigned long h = FNV0;
        for (int d = 0; d < D; d++) {
            if (i - 2 < d) break;
            const unsigned char *x = s + i - d - 1;
            h = FNV_STEP(h, x[0]);
            Ent *e = NULL;
            if (d == 0 || found) { e = dict_find_h(&M[d], x, d + 1, h, 0); found = e != NULL; }
            if (found) {
                long c;
                int y = ent_max(e, &c);
                if (y == s[i]) {
                    if (++score[d] >= score[winner]) winner = d;
                    if (d == cur) { (*correct)++; if (++run > *max_run) *max_run = run; }
                } else if (d == cur) run = 0;
                (*ent_count(e, s[i]))++;
            } else if (entries[d] < MAXE) {
                e = dict_find_h(&M[d], x, d + 1, h, 1);
                *ent_count(e, s[i]) = 1;
                entries[d]++;
            }
        }
    }
    for (int d = 0; d < D; d++) dict_free(&M[d]);
    return 0;
}

/* Binary LZ78Y: tables as for MultiMMC, with the dictionary's global limit of 65,536 entries kept. */
static int lz78y_binary(const unsigned char *s, long n, long *correct, long *max_run) {
    enum { B = 16 };
    const long MAXD = 65536;
    long *cnt[B];
    unsigned char *made[B];
    long size = 0, run = 0;
    for (int j = 0; j < B; j++) {
        cnt[j] = calloc((size_t)2 << (j + 1), sizeof(long));
        made[j] = calloc((size_t)1 << (j + 1), 1);
        if (!cnt[j] || !made[j]) return -1;
    }
    *correct = 0; *max_run = 0;
    for (int j = 0; j < B; j++) {
        unsigned ctx = 0;
        for (int m = B - j - 1; m < B; m++) ctx = (ctx << 1) | s[m];
        made[j][ctx] = 1;
        cnt[j][2 * ctx + s[B]]++;
        size++;
    }
    for (long i = B + 1; i < n; i++) {
        long maxc = 0;
        int pred = -1, found = 0;
        unsigned ctx = 0;
        for (int j = 0; j < B; j++) {
            ctx |= (unsigned)s[i - j - 1] << j;
            if (j == 0 || found) found = made[j][ctx];
            long *c = &cnt[j][2 * ctx];
            if (found) {
                int y = c[1] >= c[0] ? 1 : 0;
                long cy = c[y];
                if (cy >= maxc) { maxc = cy; pred = y; }
                c[s[i]]++;
            } else if (size < MAXD) {
                made[j][ctx] = 1;
                c[s[i]] = 1;
                size++;
            }
        }
        RUN(pred >= 0 && pred == s[i]);
    }
    for (int j = 0; j < B; j++) { free(cnt[j]); free(made[j]); }
    return 0;
}

/* 6.3.10 LZ78Y: contexts of length 1..16, at most 65,536 dictionary entries in all. */
int qrng_lz78y(const unsigned char *s, long n, int k, long *correct, long *max_run) {
    if (k == 2) return lz78y_binary(s, n, correct, max_run);
    enum { B = 16 };
    const long MAXD = 65536;
    Dict D[B];
    long size = 0, run = 0;
    (void)k;
    *correct = 0; *max_run = 0;
    if (n < B + 2) return -1;
    for (int j = 0; j < B; j++) {
        if (dict_init(&D[j], MAXD)) return -1;
        Ent *e = dict_find(&D[j], s + B - j - 1, j + 1, 1);
        (*ent_count(e, s[B]))++;
        size++;
    }
    for (long i = B + 1; i < n; i++) {
        long maxc = 0; int pred = -1, found = 0;
        unsigned long h = FNV0;
        for (int j = 0; j < B; j++) {
            const unsigned char *prev = s + i - j - 1;
            h = FNV_STEP(h, prev[0]);
            Ent *e = NULL;
            if (j == 0 || found) { e = dict_find_h(&D[j], prev, j + 1, h, 0); found = e != NULL; }
            if (found) {
                long c;
                int y = ent_max(e, &c);
                if (c >= maxc) { maxc = c; pred = y; }
                (*ent_count(e, s[i]))++;
            } else if (size < MAXD) {
                e = dict_find_h(&D[j], prev, j + 1, h, 1);
                *ent_count(e, s[i]) = 1;
                size++;
            }
        }
        RUN(pred >= 0 && pred == s[i]);
    }
    for (int j = 0; j < B; j++) dict_free(&D[j]);
    return 0;
}

/* Per-thread scratch space, grown on demand and reused: large fresh allocations are mmap'd and
   page-faulted on every call otherwise. */
static __thread unsigned long *t_scratch[4];
static __thread size_t t_cap[4];
static __thread int t_pool_ready;
static __thread gf2x_mul_pool_t t_pool;

static unsigned long *scratch(int i, size_t words) {
    if (t_cap[i] < words) {
        free(t_scratch[i]);
        t_scratch[i] = malloc(words * sizeof(unsigned long));
        t_cap[i] = t_scratch[i] ? words : 0;
    }
    return t_scratch[i];
}

static unsigned long *load_words(int slot, const unsigned char *bytes, size_t bits, size_t *nwords) {
    size_t nw = (bits + 63) / 64, nb = (bits + 7) / 8;
    unsigned long *w = scratch(slot, nw ? nw : 1);
    if (!w) return NULL;
    w[nw - 1] = 0;
    memcpy(w, bytes, nb);
    if (bits % 64) w[nw - 1] &= (1UL << (bits % 64)) - 1;   /* ignore bits past the length */
    *nwords = nw;
    return w;
}

/* out bit i (LSB-first) = XOR_j seed[i - j + n - 1] & in[j], for i < m, j < n:
   the Toeplitz matrix T[i][j] = seed[i - j + n - 1]; seed_bits must be n + m - 1. */
typedef struct qrng_tplan qrng_tplan;
qrng_tplan *qrng_toeplitz_plan(const unsigned char *seed, size_t seed_bits, size_t n_bits);
int qrng_toeplitz_apply(qrng_tplan *plan, const unsigned char *in, unsigned char *out);
void qrng_toeplitz_plan_free(qrng_tplan *plan);
int qrng_toeplitz_uses_fft(void);
int qrng_toeplitz(const unsigned char *seed, size_t seed_bits,
                  const unsigned char *in, size_t n_bits,
                  unsigned char *out, size_t m_bits) {
    if (n_bits == 0 || m_bits == 0 || seed_bits != n_bits + m_bits - 1) return -1;
    if (!t_pool_ready) { gf2x_mul_pool_init(t_pool); t_pool_ready = 1; }
    size_t an, bn;
    unsigned long *a = load_words(0, seed, seed_bits, &an);
    unsigned long *b = load_words(1, in, n_bits, &bn);
    unsigned long *c = scratch(2, an + bn + 1);
    size_t mw = (m_bits + 63) / 64;
    unsigned long *o = scratch(3, mw);
    if (!a || !b || !c || !o) return -2;
    c[an + bn] = 0;
    if (gf2x_mul_r(c, a, an, b, bn, t_pool) != 0) return -2;
    size_t s = n_bits - 1, q = s / 64, r = s % 64;
    for (size_t j = 0; j < mw; j++) {
        unsigned long lo = c[q + j], hi = c[q + j + 1];
        o[j] = r ? (lo >> r) | (hi << (64 - r)) : lo;
    }
    if (m_bits % 64) o[mw - 1] &= (1UL << (m_bits % 64)) - 1;
    memcpy(out, o, (m_bits + 7) / 8);
    return 0;
}
"""


def build(force: bool = False) -> str:
    here = Path(__file__).resolve().parent.parent
    existing = sorted((here / "qrng").glob("_native.*.so"))
    lib = here / "build" / "gf2x" / "lib" / "libgf2x-fft.so"
    lib = lib if lib.exists() else here / "build" / "gf2x" / "lib" / "libgf2x.so"
    newest = max(Path(__file__).stat().st_mtime, lib.stat().st_mtime if lib.exists() else 0)
    if existing and not force and existing[0].stat().st_mtime >= newest:
        return str(existing[0])
    ffi = FFI()
    ffi.cdef(CDEF)
    local = here / "build" / "gf2x"
    kw: dict[str, list[str]] = {}
    libs = ["gf2x", "crypto"]
    flags = ["-O2"]
    if (local / "lib" / "libgf2x.so").exists():  # PCLMULQDQ build from scripts/build_gf2x.sh
        kw = {"include_dirs": [str(local / "include")], "library_dirs": [str(local / "lib")],
              "extra_link_args": [f"-Wl,-rpath,{local / 'lib'}"]}
        if (local / "lib" / "libgf2x-fft.so").exists():  # its FFT interface: middle products
            libs.insert(0, "gf2x-fft")
            flags += ["-DQRNG_GF2X_FFT", "-DGF2X_MAYBE_UNUSED=__attribute__((unused))", "-Wno-array-parameter"]
    ffi.set_source("qrng._native", SOURCE, libraries=libs, extra_compile_args=flags, **kw)
    out = ffi.compile(tmpdir=str(here / "build" / "native"), target=None, verbose=False)
    # move the extension next to the package
    built = Path(out)
    dest = here / "qrng" / built.name
    if built.resolve() != dest.resolve():
        dest.write_bytes(built.read_bytes())
    return str(dest)


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
    sys.exit(0)
