#ifndef QRNG_SP80090B_PREDICTORS_H
#define QRNG_SP80090B_PREDICTORS_H
#include <stddef.h>
/* SP 800-90B 6.3.2 collision walk and 6.3.7-6.3.10 prediction estimators over symbols 0..k-1.
   Each predictor returns 0 and sets the number of correct predictions and the longest run of them. */
long qrng_collision_pairs(const unsigned char *b, long n, long *threes);
/* 6.3.4 steps 3-5: over the test blocks d+1..nb (1-based) of the symbol sequence w (values < 2^b), the sum and
   sum of squares of log2(distance to the symbol's previous occurrence, or the position when it has none). */
int qrng_compression_sums(const unsigned char *w, long nb, long d, double *sum, double *sumsq);
int qrng_multimcw(const unsigned char *s, long n, int k, long *correct, long *max_run);
int qrng_lag(const unsigned char *s, long n, int k, long *correct, long *max_run);
int qrng_multimmc(const unsigned char *s, long n, int k, long *correct, long *max_run);
int qrng_lz78y(const unsigned char *s, long n, int k, long *correct, long *max_run);
#endif
