/* SP 800-90B 6.3.5 and 6.3.6 counts from the LCP intervals of a suffix array (bottom-up traversal with a stack,
   Abouelhoda, Kurtz and Ohlebusch 2004). An interval of value l whose enclosing interval has value p groups
   `size` suffixes that share a t-prefix for every t in (p, l]: it is one t-tuple seen `size` times. So
   pairs[t] += C(size, 2) over (p, l] (a difference array), and since enclosing intervals are larger, the most
   common t-tuple is the largest interval of value >= t (a suffix maximum). O(m) time, O(depth) memory. */
#include <divsufsort.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp80090b_tuples.h"

/* PLCP by the Phi method (Karkkainen, Manzini and Puglisi, CPM 2009): phi[i] is the suffix before suffix i in
   suffix-array order; PLCP[i] = LCP(i, phi[i]) is computed in text order, each step at most one less than the
   last, and written over phi. Then LCP in suffix-array order is read off PLCP, in place over the suffix array. */
long qrng_lcp_array(const unsigned char *s, long n, int32_t *out) {
    if (n <= 0) return 0;
    if (n > INT32_MAX) return -1;
    if (divsufsort(s, (saidx_t *)out, (saidx_t)n) != 0) return -1;
    int32_t *phi = malloc((size_t)n * sizeof *phi);
    if (!phi) return -1;
    phi[out[0]] = -1;
    for (long i = 1; i < n; i++) phi[out[i]] = out[i - 1];
    long l = 0;
    for (long i = 0; i < n; i++) {
        long j = phi[i];
        if (j < 0) { phi[i] = 0; l = 0; continue; }
        while (i + l < n && j + l < n && s[i + l] == s[j + l]) l++;
        phi[i] = (int32_t)l;                               /* PLCP[i] = LCP(i, its predecessor) */
        if (l > 0) l--;
    }
    long vmax = 0;
    for (long i = 0; i + 1 < n; i++) {                    /* LCP(sa[i], sa[i+1]) = PLCP[sa[i+1]] */
        out[i] = phi[out[i + 1]];
        if (out[i] > vmax) vmax = out[i];
    }
    out[n - 1] = 0;
    free(phi);
    return vmax;
}

typedef struct { int32_t value; long start; } Frame;

/* The bottom-up traversal: every interval of value l above lo_t with enclosing value p (raised to lo_t) counts
   for t in (p, l]. Returns the largest interval value seen, or -1 (out of memory, or a value above vmax). */
static long intervals(const int32_t *lcp, long m, long lo_t, long vmax, long *best, long *diff) {
    long cap = 1024, top = 0, v = 0;
    Frame *st = malloc((size_t)cap * sizeof *st);
    if (!st) return -1;
    st[top++] = (Frame){0, 0};
    for (long i = 0; i <= m; i++) {
        int32_t cur = i < m ? lcp[i] : 0;
        long start = i;
        while (st[top - 1].value > cur) {
            Frame f = st[--top];
            long size = i - f.start + 1;                       /* lcp entries f.start .. i-1: one more suffix */
            long parent = st[top - 1].value > cur ? st[top - 1].value : cur;
            if (f.value > vmax) { free(st); return -1; }
            if (f.value > v) v = f.value;
            if (parent < lo_t) parent = lo_t;
            if (f.value > parent) {
                if (size > best[f.value]) best[f.value] = size;
                long c2 = size * (size - 1) / 2;
                diff[parent + 1] += c2;
                diff[f.value + 1] -= c2;
            }
            start = f.start;
        }
        if (st[top - 1].value < cur) {
            if (top == cap) {
                Frame *more = realloc(st, (size_t)(cap *= 2) * sizeof *st);
                if (!more) { free(st); return -1; }
                st = more;
            }
            st[top++] = (Frame){cur, start};
        }
    }
    free(st);
    return v;
}

/* q[t] = the largest interval of value >= t (at least 1), pairs[t] = the prefix sum of diff, for lo_t < t <= vmax+1 */
static void finish(const long *best, const long *diff, long lo_t, long vmax, long *q, long *pairs) {
    long run = 1, acc = 0;
    for (long t = vmax + 1; t > lo_t; t--) {
        if (t <= vmax && best[t] > run) run = best[t];
        q[t] = run;
    }
    for (long t = lo_t + 1; t <= vmax + 1; t++) { acc += diff[t]; pairs[t] = acc; }
    q[0] = 0;
    pairs[0] = 0;
}

long qrng_lcp_tuple_counts(const int32_t *lcp, long m, long vmax, long *q, long *pairs) {
    long *best = calloc((size_t)vmax + 2, sizeof *best);      /* largest interval of each value */
    long *diff = calloc((size_t)vmax + 3, sizeof *diff);      /* pairs as a difference array over t */
    long v = best && diff ? intervals(lcp, m, 0, vmax, best, diff) : -1;
    if (v >= 0) finish(best, diff, 0, vmax, q, pairs);
    free(best); free(diff);
    return v;
}

/* --- bit strings without a suffix array -------------------------------------------------------------------
   For t <= PB the counts come from histograms of t-bit windows. Above that, every suffix is keyed by its first
   64 bits (zero-padded past the end, with its length), suffixes are processed in 2^PB passes by their first PB
   bits, each pass sorted by (key, length) with an LSD radix sort, and adjacent LCPs min(clz(xor), lengths) feed
   the same interval pass as above, clipped to t > PB (a group at such t lies within one bucket). Memory is about
   14 bytes per suffix of one pass (n / 2^PB) instead of 8 bytes per bit. When two suffixes share 64 bits (a
   repeat of 64 bits or more), the key cannot order them: the function returns -2 and the caller uses the suffix
   array instead. Zero padding orders a short suffix before the longer ones it is a prefix of, as '$' does. */
#define PB 4

static void radix_sort(uint64_t *key, uint8_t *len, uint64_t *tk, uint8_t *tl, long m) {
    long cnt[256];
    /* least significant first: the length (ties), then the key's bytes from the lowest */
    for (int pass = -1; pass < 8; pass++) {
        memset(cnt, 0, sizeof cnt);
        for (long i = 0; i < m; i++) cnt[pass < 0 ? len[i] : (key[i] >> (8 * pass)) & 255]++;
        long sum = 0;
        for (int b = 0; b < 256; b++) { long c = cnt[b]; cnt[b] = sum; sum += c; }
        for (long i = 0; i < m; i++) {
            long d = cnt[pass < 0 ? len[i] : (key[i] >> (8 * pass)) & 255]++;
            tk[d] = key[i];
            tl[d] = len[i];
        }
        memcpy(key, tk, (size_t)m * sizeof *key);
        memcpy(len, tl, (size_t)m);
    }
}

long qrng_bit_tuple_counts(const unsigned char *bits, long n, long *q, long *pairs) {
    const long vmax = 64;
    long v = 0;
    long *best = calloc(vmax + 2, sizeof *best), *diff = calloc(vmax + 3, sizeof *diff);
    if (!best || !diff) { free(best); free(diff); return -1; }
    /* t <= PB: histograms of t-bit windows */
    for (int t = 1; t <= PB; t++) {
        long c[1 << PB] = {0}, mx = 0, pr = 0;
        unsigned w = 0;
        for (long i = 0; i < n; i++) {
            w = ((w << 1) | bits[i]) & ((1u << t) - 1);
            if (i >= t - 1) c[w]++;
        }
        for (int x = 0; x < (1 << t); x++) { if (c[x] > mx) mx = c[x]; pr += c[x] * (c[x] - 1) / 2; }
        q[t] = mx > 0 ? mx : 1;
        pairs[t] = pr;
        if (mx >= 2) v = t;
    }
    /* t > PB: 2^PB passes over the suffixes of length >= PB, by their first PB bits */
    long per = n / (1 << PB) + 1024, capm = per;
    uint64_t *key = malloc((size_t)capm * 8), *tk = malloc((size_t)capm * 8);
    uint8_t *len = malloc((size_t)capm), *tl = malloc((size_t)capm);
    int32_t *lcp = malloc((size_t)capm * 4);
    long rc = 0;
    if (!key || !tk || !len || !tl || !lcp) rc = -1;
    for (int b = 0; b < (1 << PB) && rc == 0; b++) {
        long m = 0;
        uint64_t w = 0;
        for (long i = 0; i < 64; i++) w = (w << 1) | (i < n ? bits[i] : 0);
        for (long i = 0; i + PB <= n; i++) {
            if ((long)(w >> (64 - PB)) == b) {
                if (m == capm) {                               /* a skewed string: grow this pass's arrays */
                    capm *= 2;
                    uint64_t *k2 = realloc(key, (size_t)capm * 8), *t2 = realloc(tk, (size_t)capm * 8);
                    uint8_t *l2 = realloc(len, (size_t)capm), *u2 = realloc(tl, (size_t)capm);
                    int32_t *c2 = realloc(lcp, (size_t)capm * 4);
                    if (k2) key = k2;
                    if (t2) tk = t2;
                    if (l2) len = l2;
                    if (u2) tl = u2;
                    if (c2) lcp = c2;
                    if (!k2 || !t2 || !l2 || !u2 || !c2) { rc = -1; break; }
                }
                key[m] = w;
                len[m] = (uint8_t)(n - i < 64 ? n - i : 64);
                m++;
            }
            w = (w << 1) | (i + 64 < n ? bits[i + 64] : 0);
        }
        if (rc) break;
        radix_sort(key, len, tk, tl, m);
        for (long i = 0; i + 1 < m; i++) {
            uint64_t x = key[i] ^ key[i + 1];
            long l = x ? __builtin_clzll(x) : 64;
            if (len[i] < l) l = len[i];
            if (len[i + 1] < l) l = len[i + 1];
            if (l >= 64) { rc = -2; break; }
            lcp[i] = (int32_t)l;
            if (l > v) v = l;
        }
        if (rc) break;
        if (intervals(lcp, m > 0 ? m - 1 : 0, PB, vmax, best, diff) < 0) rc = -1;
    }
    if (rc == 0) {
        finish(best, diff, PB, vmax, q, pairs);             /* t > PB; t <= PB came from the histograms */
        rc = v;
    }
    free(key); free(tk); free(len); free(tl); free(lcp); free(best); free(diff);
    return rc;
}
