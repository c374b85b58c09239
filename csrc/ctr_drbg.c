/* SP 800-90A 10.2.1 CTR_DRBG (AES-256, no df) on OpenSSL EVP. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <string.h>

#include "ctr_drbg.h"

/* --- CTR_DRBG with AES-256, no derivation function (SP 800-90A 10.2.1) ---------------------------------
   state = Key (32 bytes) || V (16 bytes), updated in place. One EVP context per thread is re-keyed per
   request; the keystream for the output and the three blocks of the following Update come from one
   CTR stream starting at V+1. */
static __thread EVP_CIPHER_CTX *t_ctx;
static const unsigned char ZEROS[64];

static void inc128(unsigned char *v) { for (int i = 15; i >= 0; i--) if (++v[i]) break; }

static const unsigned char ZBLOCK[1 << 16];  /* the keystream is AES-CTR over zeros: read, never written */

static int ctr_stream(unsigned char *state, unsigned char *out, size_t n) {
    unsigned char iv[16];
    int len;
    if (!t_ctx && !(t_ctx = EVP_CIPHER_CTX_new())) return -1;
    memcpy(iv, state + 32, 16);
    inc128(iv);
    if (EVP_EncryptInit_ex(t_ctx, EVP_aes_256_ctr(), NULL, state, iv) != 1) return -1;
    for (size_t done = 0; done < n;) {  /* n <= 2^16 for a DRBG request: one pass, no zeroing of out first */
        size_t k = n - done < sizeof ZBLOCK ? n - done : sizeof ZBLOCK;
        if (EVP_EncryptUpdate(t_ctx, out + done, &len, ZBLOCK, (int)k) != 1) return -1;
        done += k;
    }
    return 0;
}

static int finish_update(const unsigned char *provided, size_t consumed, unsigned char *state) {
    /* skip to the next block boundary, then three blocks: temp = AES(K, V+k+1..V+k+3) */
    unsigned char skip[16], temp[48];
    int len;
    size_t rem = consumed % 16 ? 16 - consumed % 16 : 0;
    if (rem && EVP_EncryptUpdate(t_ctx, skip, &len, ZEROS, (int)rem) != 1) return -1;
    if (EVP_EncryptUpdate(t_ctx, temp, &len, ZEROS, 48) != 1) return -1;
    if (provided) for (int i = 0; i < 48; i++) temp[i] ^= provided[i];
    memcpy(state, temp, 48);
    OPENSSL_cleanse(temp, sizeof temp);
    return 0;
}

int qrng_ctr_drbg_update(unsigned char *state, const unsigned char *provided) {   /* 10.2.1.2 */
    unsigned char none[1];
    if (ctr_stream(state, none, 0)) return -1;
    return finish_update(provided, 0, state);
}

int qrng_ctr_drbg_generate(unsigned char *state, const unsigned char *add, unsigned char *out, size_t n) {
    if (n > (1u << 16)) return -2;                       /* 2^19 bits per request (Table 3) */
    if (add && qrng_ctr_drbg_update(state, add)) return -1;  /* 10.2.1.5.1 step 2 */
    if (ctr_stream(state, out, n)) return -1;
    return finish_update(add, n, state);                 /* step 6: Update(additional_input, Key, V) */
}

