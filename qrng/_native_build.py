"""Builds qrng._native: the Toeplitz kernel on gf2x (GF(2)[x] multiplication, Debian libgf2x).

Run by set-up (``python -m qrng._native_build``). The Toeplitz product T x over GF(2) equals the
middle m coefficients of the carry-less product s(x) * x(x), so a field-grade polynomial multiplier
does the heavy lifting; this file only packs words and shifts the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cffi import FFI

CDEF = """
int qrng_ctr_drbg_update(unsigned char *state, const unsigned char *provided);
int qrng_ctr_drbg_generate(unsigned char *state, const unsigned char *add, unsigned char *out, size_t n);
int qrng_toeplitz(const unsigned char *seed, size_t seed_bits,
                  const unsigned char *in, size_t n_bits,
                  unsigned char *out, size_t m_bits);
"""

SOURCE = r"""
#include <gf2x.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bit packing assumes a little-endian machine"
#endif

/* --- CTR_DRBG with AES-256, no derivation function (SP 800-90A 10.2.1) ---------------------------------
   state = Key (32 bytes) || V (16 bytes), updated in place. One EVP context per thread is re-keyed per
   request; the keystream for the output and the three blocks of the following Update come from one
   CTR stream starting at V+1. */
static __thread EVP_CIPHER_CTX *t_ctx;
static const unsigned char ZEROS[64];

static void inc128(unsigned char *v) { for (int i = 15; i >= 0; i--) if (++v[i]) break; }

static int ctr_stream(unsigned char *state, unsigned char *out, size_t n) {
    unsigned char iv[16];
    int len;
    if (!t_ctx && !(t_ctx = EVP_CIPHER_CTX_new())) return -1;
    memcpy(iv, state + 32, 16);
    inc128(iv);
    if (EVP_EncryptInit_ex(t_ctx, EVP_aes_256_ctr(), NULL, state, iv) != 1) return -1;
    memset(out, 0, n);
    if (n && EVP_EncryptUpdate(t_ctx, out, &len, out, (int)n) != 1) return -1;
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

/* Per-thread scratch space, grown on demand and reused: large fresh allocations are mmap'd and
   page-faulted on every call otherwise. */
static __thread unsigned long *t_scratch[4];
static __thread size_t t_cap[4];
static __thread int t_pool_ready;
static __thread gf2x_mul_pool_t t_pool;

static unsigned long *scratch(int i, size_t words) {
    if (t_cap[i] < words) {
        free(t_scratch[i]);
        t_scratch[i] = malloc(words * sizeof(unsigned long));
        t_cap[i] = t_scratch[i] ? words : 0;
    }
    return t_scratch[i];
}

static unsigned long *load_words(int slot, const unsigned char *bytes, size_t bits, size_t *nwords) {
    size_t nw = (bits + 63) / 64, nb = (bits + 7) / 8;
    unsigned long *w = scratch(slot, nw ? nw : 1);
    if (!w) return NULL;
    w[nw - 1] = 0;
    memcpy(w, bytes, nb);
    if (bits % 64) w[nw - 1] &= (1UL << (bits % 64)) - 1;   /* ignore bits past the length */
    *nwords = nw;
    return w;
}

/* out bit i (LSB-first) = XOR_j seed[i - j + n - 1] & in[j], for i < m, j < n:
   the Toeplitz matrix T[i][j] = seed[i - j + n - 1]; seed_bits must be n + m - 1. */
int qrng_toeplitz(const unsigned char *seed, size_t seed_bits,
                  const unsigned char *in, size_t n_bits,
                  unsigned char *out, size_t m_bits) {
    if (n_bits == 0 || m_bits == 0 || seed_bits != n_bits + m_bits - 1) return -1;
    if (!t_pool_ready) { gf2x_mul_pool_init(t_pool); t_pool_ready = 1; }
    size_t an, bn;
    unsigned long *a = load_words(0, seed, seed_bits, &an);
    unsigned long *b = load_words(1, in, n_bits, &bn);
    unsigned long *c = scratch(2, an + bn + 1);
    size_t mw = (m_bits + 63) / 64;
    unsigned long *o = scratch(3, mw);
    if (!a || !b || !c || !o) return -2;
    c[an + bn] = 0;
    if (gf2x_mul_r(c, a, an, b, bn, t_pool) != 0) return -2;
    size_t s = n_bits - 1, q = s / 64, r = s % 64;
    for (size_t j = 0; j < mw; j++) {
        unsigned long lo = c[q + j], hi = c[q + j + 1];
        o[j] = r ? (lo >> r) | (hi << (64 - r)) : lo;
    }
    if (m_bits % 64) o[mw - 1] &= (1UL << (m_bits % 64)) - 1;
    memcpy(out, o, (m_bits + 7) / 8);
    return 0;
}
"""


def build(force: bool = False) -> str:
    here = Path(__file__).resolve().parent.parent
    existing = sorted((here / "qrng").glob("_native.*.so"))
    lib = here / "build" / "gf2x" / "lib" / "libgf2x.so"
    newest = max(Path(__file__).stat().st_mtime, lib.stat().st_mtime if lib.exists() else 0)
    if existing and not force and existing[0].stat().st_mtime >= newest:
        return str(existing[0])
    ffi = FFI()
    ffi.cdef(CDEF)
    local = here / "build" / "gf2x"
    kw: dict[str, list[str]] = {}
    if (local / "lib" / "libgf2x.so").exists():  # PCLMULQDQ build from scripts/build_gf2x.sh
        kw = {"include_dirs": [str(local / "include")], "library_dirs": [str(local / "lib")],
              "extra_link_args": [f"-Wl,-rpath,{local / 'lib'}"]}
    ffi.set_source("qrng._native", SOURCE, libraries=["gf2x", "crypto"], extra_compile_args=["-O2"], **kw)
    out = ffi.compile(tmpdir=str(here / "build" / "native"), target=None, verbose=False)
    # move the extension next to the package
    built = Path(out)
    dest = here / "qrng" / built.name
    if built.resolve() != dest.resolve():
        dest.write_bytes(built.read_bytes())
    return str(dest)


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
    sys.exit(0)
