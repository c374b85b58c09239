#ifndef QRNG_SP80090B_TUPLES_H
#define QRNG_SP80090B_TUPLES_H
#include <stddef.h>
#include <stdint.h>
/* SP 800-90B 6.3.5 (t-Tuple) and 6.3.6 (LRS) counts from an LCP array, in one pass over its LCP intervals.
   lcp[i] = LCP(suffix sa[i], suffix sa[i+1]) for i < m (m = n - 1 entries). For t = 1 .. vmax + 1: q[t] is the
   count of the most common t-tuple (1 when none repeats), pairs[t] the sum over t-tuples of C(count, 2).
   Returns the longest repeated substring length v (<= vmax), or -1 when vmax is too small or memory runs out. */
long qrng_lcp_tuple_counts(const int32_t *lcp, long m, long vmax, long *q, long *pairs);
/* The LCP array of s[0..n): out[i] = LCP(suffix sa[i], suffix sa[i+1]) for i < n - 1, out[n-1] = 0. The suffix
   array (libdivsufsort) is built in out and overwritten by the LCP array in place (the PLCP/Phi method), so the
   peak is s plus 8 bytes per symbol. Returns the largest entry, or -1 when n > 2^31 - 1 or memory runs out. */
long qrng_lcp_array(const unsigned char *s, long n, int32_t *out);
/* The same counts for a bit string (symbols 0/1) without a suffix array, for t = 1 .. 65 (q and pairs hold 66
   entries). Returns v, -2 when a repeat reaches 64 bits (use the suffix array), or -1 when memory runs out. */
long qrng_bit_tuple_counts(const unsigned char *bits, long n, long *q, long *pairs);
#endif
