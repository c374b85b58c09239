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
int qrng_toeplitz(const unsigned char *seed, size_t seed_bits,
                  const unsigned char *in, size_t n_bits,
                  unsigned char *out, size_t m_bits);
"""

SOURCE = r"""
#include <gf2x.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bit packing assumes a little-endian machine"
#endif

static unsigned long *load_words(const unsigned char *bytes, size_t bits, size_t *nwords) {
    size_t nw = (bits + 63) / 64, nb = (bits + 7) / 8;
    unsigned long *w = calloc(nw ? nw : 1, sizeof(unsigned long));
    if (!w) return NULL;
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
    size_t an, bn;
    unsigned long *a = load_words(seed, seed_bits, &an);
    unsigned long *b = load_words(in, n_bits, &bn);
    unsigned long *c = calloc(an + bn + 1, sizeof(unsigned long));
    size_t mw = (m_bits + 63) / 64;
    unsigned long *o = calloc(mw, sizeof(unsigned long));
    int rc = -2;
    if (a && b && c && o && gf2x_mul_r(c, a, an, b, bn, NULL) == 0) {
        size_t s = n_bits - 1, q = s / 64, r = s % 64;
        for (size_t j = 0; j < mw; j++) {
            unsigned long lo = c[q + j], hi = c[q + j + 1];
            o[j] = r ? (lo >> r) | (hi << (64 - r)) : lo;
        }
        if (m_bits % 64) o[mw - 1] &= (1UL << (m_bits % 64)) - 1;
        memcpy(out, o, (m_bits + 7) / 8);
        rc = 0;
    }
    free(a); free(b); free(c); free(o);
    return rc;
}
"""


def build(force: bool = False) -> str:
    here = Path(__file__).resolve().parent.parent
    existing = sorted((here / "qrng").glob("_native.*.so"))
    if existing and not force and existing[0].stat().st_mtime >= Path(__file__).stat().st_mtime:
        return str(existing[0])
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source("qrng._native", SOURCE, libraries=["gf2x"], extra_compile_args=["-O2"])
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
