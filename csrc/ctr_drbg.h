#ifndef QRNG_CTR_DRBG_H
#define QRNG_CTR_DRBG_H
#include <stddef.h>
/* SP 800-90A 10.2.1 CTR_DRBG, AES-256, no derivation function, on OpenSSL EVP.
   state = Key (32 bytes) || V (16 bytes), updated in place. */
int qrng_ctr_drbg_update(unsigned char *state, const unsigned char *provided);
int qrng_ctr_drbg_generate(unsigned char *state, const unsigned char *add, unsigned char *out, size_t n);
#endif
