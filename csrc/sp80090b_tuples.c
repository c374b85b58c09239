/* SP 800-90B 6.3.5 and 6.3.6 counts from the LCP intervals of a suffix array (bottom-up traversal with a stack,
   Abouelhoda, Kurtz and Ohlebusch 2004). An interval of value l whose enclosing interval has value p groups
   `size` suffixes that share a t-prefix for every t in (p, l]: it is one t-tuple seen `size` times. So
   pairs[t] += C(size, 2) over (p, l] (a difference array), and since enclosing intervals are larger, the most
   common t-tuple is the largest interval of value >= t (a suffix maximum). O(m) time, O(depth) memory. */
#include <divsufsort.h>
#include <stdint.h>
#include <stdlib.h>

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

long qrng_lcp_tuple_counts(const int32_t *lcp, long m, long vmax, long *q, long *pairs) {
    long cap = 1024, top = 0, v = 0;
    Frame *st = malloc((size_t)cap * sizeof *st);
    long *best = calloc((size_t)vmax + 2, sizeof *best);      /* largest interval of each value */
    long *diff = calloc((size_t)vmax + 3, sizeof *diff);      /* pairs as a difference array over t */
    if (!st || !best || !diff) { free(st); free(best); free(diff); return -1; }
    st[top++] = (Frame){0, 0};
    for (long i = 0; i <= m; i++) {
        int32_t cur = i < m ? lcp[i] : 0;
        long start = i;
        while (st[top - 1].value > cur) {
            Frame f = st[--top];
            long size = i - f.start + 1;                       /* lcp entries f.start .. i-1: one more suffix */
            int32_t parent = st[top - 1].value > cur ? st[top - 1].value : cur;
            if (f.value > vmax) { free(st); free(best); free(diff); return -1; }
            if (f.value > v) v = f.value;
            if (size > best[f.value]) best[f.value] = size;
            long c2 = size * (size - 1) / 2;
            diff[parent + 1] += c2;
            diff[f.value + 1] -= c2;
            start = f.start;
        }
        if (st[top - 1].value < cur) {
            if (top == cap) {
                Frame *more = realloc(st, (size_t)(cap *= 2) * sizeof *st);
                if (!more) { free(st); free(best); free(diff); return -1; }
                st = more;
            }
            st[top++] = (Frame){cur, start};
        }
    }
    long run = 1, acc = 0;
    for (long t = vmax + 1; t >= 1; t--) {                    /* q[t] = max(best[t..]), at least 1 */
        if (t <= vmax && best[t] > run) run = best[t];
        q[t] = run;
    }
    for (long t = 1; t <= vmax + 1; t++) { acc += diff[t]; pairs[t] = acc; }
    q[0] = 0;
    pairs[0] = 0;
    free(st); free(best); free(diff);
    return v;
}
