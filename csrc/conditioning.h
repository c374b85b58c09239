#ifndef QRNG_CONDITIONING_H
#define QRNG_CONDITIONING_H
#include <stddef.h>
/* SP 800-90B 3.1.5.1.1 vetted conditioning with SHA-256, block by block: out[32 i .. 32 i + 31] =
   SHA-256(in[block i .. block i + block - 1]) for i < nblocks. Returns 0, or -1 on an OpenSSL failure. */
int qrng_sha256_blocks(const unsigned char *in, size_t block, size_t nblocks, unsigned char *out);
#endif
