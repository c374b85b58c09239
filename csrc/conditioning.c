/* SHA-256 conditioning of consecutive blocks in one call (SP 800-90B 3.1.5.1.1), on OpenSSL EVP: one digest
   context per call, re-initialised per block, so a 64 Ki-sample read is conditioned without a Python call per
   128-sample block. */
#include <openssl/evp.h>

#include "conditioning.h"

int qrng_sha256_blocks(const unsigned char *in, size_t block, size_t nblocks, unsigned char *out) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = ctx ? 0 : -1;
    const EVP_MD *md = EVP_sha256();
    for (size_t i = 0; rc == 0 && i < nblocks; i++) {
        unsigned int n = 0;
        if (EVP_DigestInit_ex(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, in + i * block, block) != 1 ||
            EVP_DigestFinal_ex(ctx, out + 32 * i, &n) != 1 || n != 32)
            rc = -1;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}
