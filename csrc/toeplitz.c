/* Toeplitz extraction on gf2x (GF(2)[x] multiplication). Built against a PCLMULQDQ build of gf2x with its
   FFT interface (QRNG_GF2X_FFT: middle products, the seed's transform cached in a plan), or against the
   system libgf2x (full carry-less product per block). Both give T x bit for bit. */
#include <gf2x.h>
#include <pthread.h>
#ifdef QRNG_GF2X_FFT
#include <gf2x/gf2x-ternary-fft.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "toeplitz.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bit packing assumes a little-endian machine"
#endif

/* --- Toeplitz plans: one per extractor (its seed is fixed) ----------------------------------------------
   With gf2x's FFT interface the product is a middle product MP(seed, x), whose coefficients n-1 .. n+m-2 are
   exactly the m output bits, and the seed's transform is computed once. Without it, the plan falls back to
   the full carry-less product of qrng_toeplitz. Either way the result is T x, bit for bit. */
struct qrng_tplan {
    size_t n_bits, m_bits, seed_bits;
    unsigned char *seed;
    pthread_mutex_t lock;
    struct qrng_tplan *prev, *next;   /* every live plan, so fork can take and release all their locks */
#ifdef QRNG_GF2X_FFT
    gf2x_ternary_fft_info_t info;
    gf2x_ternary_fft_ptr ta, tb, tc;
    void *t1, *t2;
    unsigned long *xin, *cout;
#endif
};

/* --- fork safety -----------------------------------------------------------------------------------------
   A process that forks while another thread is inside qrng_toeplitz_apply leaves the child a plan whose lock is
   held by a thread that does not exist there: its next extraction hung (found by the PKCS#11 ABI fuzzer). The
   child therefore re-initialises every plan's lock. That is safe because a plan's only shared mutable state is
   scratch space each apply overwrites in full before reading it (the seed's transform is read-only after the
   plan is made). Nothing is locked around fork itself: a prepare handler taking these locks would deadlock
   against the PKCS#11 module's own handler (a thread in C_Initialize makes a plan while the forking thread waits
   for the init lock). The list is walked forward only; a fork in the middle of a link or unlink still leaves
   every forward pointer on valid memory (a plan being freed in the parent is never freed in the child). */
static pthread_mutex_t g_plans = PTHREAD_MUTEX_INITIALIZER;
static struct qrng_tplan *g_first;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void plans_after_fork_in_child(void) {
    pthread_mutex_init(&g_plans, NULL);
    for (struct qrng_tplan *p = g_first; p; p = p->next) pthread_mutex_init(&p->lock, NULL);
}

static void register_atfork(void) { pthread_atfork(NULL, NULL, plans_after_fork_in_child); }

static void plan_link(struct qrng_tplan *p) {
    pthread_once(&g_atfork_once, register_atfork);
    pthread_mutex_lock(&g_plans);
    p->next = g_first;
    if (g_first) g_first->prev = p;
    g_first = p;
    pthread_mutex_unlock(&g_plans);
}

static void plan_unlink(struct qrng_tplan *p) {
    pthread_mutex_lock(&g_plans);
    if (p->prev) p->prev->next = p->next; else if (g_first == p) g_first = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
    pthread_mutex_unlock(&g_plans);
}

int qrng_toeplitz_uses_fft(void) {
#ifdef QRNG_GF2X_FFT
    return 1;
#else
    return 0;
#endif
}

void qrng_toeplitz_plan_free(qrng_tplan *p) {
    if (!p) return;
    plan_unlink(p);
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
        free(sa); qrng_toeplitz_plan_free(p);
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
    plan_link(p);
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
