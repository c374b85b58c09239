#ifndef QRNG_SP80090B_IID_H
#define QRNG_SP80090B_IID_H
#include <stddef.h>
/* SP 800-90B 5.1.1-5.1.10 permutation-test statistics; out has 18 entries (see sp80090b_iid.c). */
void qrng_iid_stats(const unsigned char *raw, long n, const unsigned char *dir, long nd,
                    const unsigned char *med, long nm, double mean, double median, double *out);
#endif
