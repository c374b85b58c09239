/* SP 800-90B 5.1 permutation-test statistics for the IID track. */
#include <string.h>

#include "sp80090b_iid.h"

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

