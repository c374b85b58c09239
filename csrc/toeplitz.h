#ifndef QRNG_TOEPLITZ_H
#define QRNG_TOEPLITZ_H
#include <stddef.h>
/* Toeplitz extraction over GF(2) on gf2x: T x, with T[i][j] = seed[i - j + n - 1] (bits LSB first).
   The product is the middle of the carry-less product seed(x) * x(x); see toeplitz.c. */
typedef struct qrng_tplan qrng_tplan;
qrng_tplan *qrng_toeplitz_plan(const unsigned char *seed, size_t seed_bits, size_t n_bits);
int qrng_toeplitz_apply(qrng_tplan *plan, const unsigned char *in, unsigned char *out);
void qrng_toeplitz_plan_free(qrng_tplan *plan);
int qrng_toeplitz_uses_fft(void);
int qrng_toeplitz(const unsigned char *seed, size_t seed_bits,
                  const unsigned char *in, size_t n_bits,
                  unsigned char *out, size_t m_bits);
#endif
