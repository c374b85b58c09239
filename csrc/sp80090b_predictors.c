/* SP 800-90B 6.3.2 (binary collision walk) and 6.3.7-6.3.10 (prediction estimators). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sp80090b_predictors.h"

int qrng_compression_sums(const unsigned char *w, long nb, long d, double *sum, double *sumsq) {
    long last[256];
    double s = 0, s2 = 0;
    memset(last, 0, sizeof last);
    for (long i = 0; i < d && i < nb; i++) last[w[i]] = i + 1;         /* the dictionary phase */
    for (long i = d; i < nb; i++) {
        long pos = i + 1, prev = last[w[i]];
        double l = log2((double)(prev ? pos - prev : pos));
        s += l;
        s2 += l * l;
        last[w[i]] = pos;
    }
    *sum = s;
    *sumsq = s2;
    return 0;
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

/* A context dictionary: open addressing on (order, context); each entry keeps counts of next symbols. Up to two
   (symbol, count) pairs live in the slot itself (high-order contexts rarely see more); more spill to one block
   holding cap symbols and then cap 32-bit counts. Slots are 40 bytes, and a table of 1.25x the dictionary's
   limit (rounded up to a power of two) holds it: MultiMMC over 10^7 8-bit samples needed 293 MB with 48-byte
   slots, two heap arrays per context and twice the limit. */
typedef struct {
    unsigned char ctx[16];
    unsigned char len;             /* 0: an empty slot */
    unsigned short nsym, cap;      /* cap 0: the pairs are inline */
    unsigned char isym[2];
    unsigned int icnt[2];
    void *spill;
} Ent;
typedef struct { Ent *e; long cap, used; } Dict;

#define SPILL_CNT(p, cap) ((unsigned int *)((unsigned char *)(p) + (((size_t)(cap) + 3) & ~(size_t)3)))
static __thread int t_oom;         /* a spill block could not be allocated: the predictor returns -1 */
static __thread unsigned int t_sink;

#define FNV0 1469598103934665603UL
#define FNV_STEP(h, b) (((h) ^ (unsigned long)(b)) * 1099511628211UL)
static unsigned long ctx_hash(const unsigned char *c, int len) {
    unsigned long h = FNV0;
    for (int i = len - 1; i >= 0; i--) h = FNV_STEP(h, c[i]);
    return h;
}

static int dict_init(Dict *d, long cap) {
    d->cap = 1; while (d->cap < cap + cap / 4) d->cap <<= 1;
    d->used = 0;
    d->e = calloc((size_t)d->cap, sizeof(Ent));
    return d->e ? 0 : -1;
}

static void dict_free(Dict *d) {
    if (!d->e) return;
    for (long i = 0; i < d->cap; i++) if (d->e[i].cap) free(d->e[i].spill);
    free(d->e);
    d->e = NULL;
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

static unsigned int *ent_count(Ent *e, unsigned char y) {
    unsigned char *sym = e->cap ? (unsigned char *)e->spill : e->isym;
    unsigned int *cnt = e->cap ? SPILL_CNT(e->spill, e->cap) : e->icnt;
    for (int i = 0; i < e->nsym; i++) if (sym[i] == y) return &cnt[i];
    int capacity = e->cap ? e->cap : 2;
    if (e->nsym == capacity) {
        int nc = capacity * 2 > 256 ? 256 : capacity * 2;
        void *blk = malloc((((size_t)nc + 3) & ~(size_t)3) + (size_t)nc * sizeof(unsigned int));
        if (!blk) { t_oom = 1; return &t_sink; }
        memcpy(blk, sym, (size_t)e->nsym);
        memcpy(SPILL_CNT(blk, nc), cnt, (size_t)e->nsym * sizeof(unsigned int));
        if (e->cap) free(e->spill);
        e->spill = blk;
        e->cap = (unsigned short)nc;
        sym = (unsigned char *)blk;
        cnt = SPILL_CNT(blk, nc);
    }
    sym[e->nsym] = y; cnt[e->nsym] = 0;
    return &cnt[e->nsym++];
}

/* the most frequent next symbol; ties to the larger symbol */
static int ent_max(const Ent *e, long *count) {
    const unsigned char *sym = e->cap ? (const unsigned char *)e->spill : e->isym;
    const unsigned int *cnt = e->cap ? SPILL_CNT(e->spill, e->cap) : e->icnt;
    long best = 0; int y = -1;
    for (int i = 0; i < e->nsym; i++) {
        if ((long)cnt[i] > best || ((long)cnt[i] == best && sym[i] > y)) { best = cnt[i]; y = sym[i]; }
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
    memset(M, 0, sizeof M);
    t_oom = 0;
    long entries[D], score[D] = {0}, run = 0;
    int winner = 0;
    (void)k;
    *correct = 0; *max_run = 0;
    if (n < 3) return -1;
    for (int d = 0; d < D; d++) {
        if (dict_init(&M[d], MAXE)) { for (int j = 0; j < D; j++) dict_free(&M[j]); return -1; }
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
    return t_oom ? -1 : 0;
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
    memset(D, 0, sizeof D);
    t_oom = 0;
    long size = 0, run = 0;
    (void)k;
    *correct = 0; *max_run = 0;
    if (n < B + 2) return -1;
    for (int j = 0; j < B; j++) {
        if (dict_init(&D[j], MAXD)) { for (int i = 0; i < B; i++) dict_free(&D[i]); return -1; }
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
    return t_oom ? -1 : 0;
}

