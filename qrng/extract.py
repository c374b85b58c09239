"""Randomness extraction: Toeplitz hashing, SHA-256 conditioning, Von Neumann debiasing. Pure: no I/O.

Bit order: bit strings are packed least-significant bit first within each byte (bit j of a string is
bit ``j % 8`` of byte ``j // 8``), the order numpy calls ``bitorder="little"``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import native
from .errors import ConfigError, ExtractionFailed

__all__ = [
    "ExtractResult",
    "Toeplitz",
    "lhl_output_bits",
    "pack_samples",
    "rederive",
    "sha256_blocks",
    "sha256_condition",
    "sha256_output_entropy",
    "toeplitz_fft",
    "toeplitz_native",
    "von_neumann",
]


@dataclass(frozen=True)
class ExtractResult:
    data: bytes
    bits_out: int
    entropy_in: float
    entropy_out: float


def lhl_output_bits(n_bits: int, h_per_bit: float, eps_log2: float = -100) -> int:
    """Leftover hash lemma: m = floor(n*H - 2*log2(1/eps)) for a 2-universal family (Toeplitz)."""
    if not 0 < h_per_bit <= 1:
        raise ConfigError("extractor", f"min-entropy per input bit must be in (0, 1], got {h_per_bit}")
    if eps_log2 >= 0:
        raise ConfigError("extractor.eps_log2", "must be negative (eps = 2^eps_log2 < 1)")
    return max(0, math.floor(n_bits * h_per_bit - 2 * (-eps_log2)))


def pack_samples(samples: npt.NDArray[np.uint8], bits_per_sample: int) -> bytes:
    """Concatenate the low ``bits_per_sample`` bits of each sample (LSB first) into a packed string."""
    if bits_per_sample == 8:
        return np.ascontiguousarray(samples, dtype=np.uint8).tobytes()
    bits = np.unpackbits(samples[:, None], axis=1, bitorder="little")[:, :bits_per_sample]
    return np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def toeplitz_native(seed: bytes, seed_bits: int, data: bytes, n_bits: int, m_bits: int) -> bytes:
    """T x over GF(2) via gf2x carry-less multiplication (qrng._native)."""
    kern = native.load()
    out = kern.ffi.new("unsigned char[]", (m_bits + 7) // 8)
    rc = kern.lib.qrng_toeplitz(seed, seed_bits, data, n_bits, out, m_bits)
    if rc != 0:
        raise ValueError(f"qrng_toeplitz failed ({rc}): seed must be n + m - 1 bits")
    return bytes(kern.ffi.buffer(out))


def _bits(data: bytes, n: int) -> npt.NDArray[np.uint8]:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[:n]


def toeplitz_fft(seed: bytes, seed_bits: int, data: bytes, n_bits: int, m_bits: int) -> bytes:
    """The same product as one real FFT convolution, reduced mod 2 (the plain baseline)."""
    if seed_bits != n_bits + m_bits - 1:
        raise ValueError("seed must be n + m - 1 bits")
    s = _bits(seed, seed_bits).astype(np.float64)
    x = _bits(data, n_bits).astype(np.float64)
    size = 1 << (seed_bits + n_bits - 1).bit_length()
    conv = np.fft.irfft(np.fft.rfft(s, size) * np.fft.rfft(x, size), size)
    y = np.rint(conv[n_bits - 1:n_bits - 1 + m_bits]).astype(np.int64) & 1
    return np.packbits(y.astype(np.uint8), bitorder="little").tobytes()


class Toeplitz:
    """Seeded Toeplitz extractor (a 2-universal hash family), m output bits from n input bits.

    Args:
        n_bits: input length in bits.
        h_per_bit: claimed min-entropy per input bit.
        seed: uniform seed, at least n + m - 1 bits (public, independent of the source).
        eps_log2: security parameter, log2(eps); default -100.
    """

    def __init__(self, n_bits: int, h_per_bit: float, seed: bytes, eps_log2: float = -100) -> None:
        self.n_bits = n_bits
        self.m_bits = lhl_output_bits(n_bits, h_per_bit, eps_log2)
        if self.m_bits <= 0:
            raise ConfigError("extractor.block_bits",
                              f"{n_bits} input bits at {h_per_bit:.4f} bit/bit leave no output at eps=2^{eps_log2}")
        self.seed_bits = n_bits + self.m_bits - 1
        if len(seed) * 8 < self.seed_bits:
            raise ConfigError("extractor.seed", f"seed must hold at least {self.seed_bits} bits")
        self.seed = seed[: (self.seed_bits + 7) // 8]
        self.h_per_bit = h_per_bit
        self._plan: Any = None  # the native plan: the seed's transform, computed once

    @classmethod
    def with_lengths(cls, n_bits: int, m_bits: int, seed: bytes) -> Toeplitz:
        """The extractor with recorded lengths (an auditor's re-run): T is m x n, the seed n + m - 1 bits."""
        t = cls.__new__(cls)
        t.n_bits, t.m_bits, t.seed_bits = n_bits, m_bits, n_bits + m_bits - 1
        if m_bits <= 0 or len(seed) * 8 < t.seed_bits:
            raise ConfigError("extractor.seed", f"seed must hold at least {t.seed_bits} bits")
        t.seed = seed[: (t.seed_bits + 7) // 8]
        t.h_per_bit = (m_bits + 200) / n_bits
        t._plan = None  # noqa: SLF001 - the alternate constructor of this class
        return t

    def extract(self, data: bytes) -> bytes:
        if len(data) * 8 < self.n_bits:
            raise ValueError(f"input must hold {self.n_bits} bits")
        kernels = native.load()
        if self._plan is None:
            plan = kernels.lib.qrng_toeplitz_plan(self.seed, self.seed_bits, self.n_bits)
            if plan == kernels.ffi.NULL:
                raise ExtractionFailed("cannot prepare the Toeplitz transform (out of memory?)")
            self._plan = kernels.ffi.gc(plan, kernels.lib.qrng_toeplitz_plan_free)
        out = kernels.ffi.new("unsigned char[]", (self.m_bits + 7) // 8)
        if kernels.lib.qrng_toeplitz_apply(self._plan, data, out) != 0:
            raise ExtractionFailed("Toeplitz transform failed")
        return bytes(kernels.ffi.buffer(out))


def rederive(samples: npt.NDArray[np.uint8], bits_per_sample: int, seed: bytes, n_bits: int, m_bits: int) -> bytes:
    """Re-run a recorded Toeplitz extraction: full blocks of n_bits, m_bits // 8 bytes kept from each."""
    t = Toeplitz.with_lengths(n_bits, m_bits, seed)
    per_block = -(-n_bits // bits_per_sample)
    out = bytearray()
    for i in range(0, samples.size - per_block + 1, per_block):
        out += t.extract(pack_samples(samples[i:i + per_block], bits_per_sample))[:m_bits // 8]
    return bytes(out)


def sha256_output_entropy(n_in: int, h_in: float, n_out: int = 256, nw: int = 256) -> float:
    """SP 800-90B 3.1.5.1.2 Output_Entropy(n_in, n_out, nw, h_in) for a vetted conditioning component.

    P_high = 2^-h_in, P_low = (1 - P_high) / (2^n_in - 1), n = min(n_out, nw),
    psi = 2^(n_in - n) P_low + P_high, U = 2^(n_in - n) + sqrt(2 n 2^(n_in - n) ln 2),
    omega = U P_low, and the output entropy is -log2(max(psi, omega)). Computed in log space.
    """
    if not 0 <= h_in <= n_in:
        raise ValueError("h_in must be between 0 and n_in")
    n = min(n_out, nw)
    p_high = 2.0 ** -h_in
    # log2(P_low) = log2(1 - P_high) - log2(2^n_in - 1)
    if p_high >= 1.0:
        return 0.0
    log2_plow = math.log2(-math.expm1(-h_in * math.log(2))) - (
        n_in + math.log2(-math.expm1(-n_in * math.log(2))) if n_in < 1000 else n_in)
    d = n_in - n
    psi = 2.0 ** (d + log2_plow) + p_high if d + log2_plow > -1000 else p_high
    if d >= 0:
        log2_u = d + math.log2(1 + math.sqrt(2 * n * math.log(2)) * 2.0 ** (-d / 2))
    else:
        log2_u = math.log2(2.0 ** d + math.sqrt(2 * n * 2.0 ** d * math.log(2)))
    log2_omega = log2_u + log2_plow
    return -max(math.log2(psi), log2_omega)


def sha256_condition(data: bytes, h_in: float) -> ExtractResult:
    """SHA-256 as a vetted conditioning component (SP 800-90B 3.1.5.1.1) with its output entropy."""
    digest = hashlib.sha256(data).digest()
    h_out = sha256_output_entropy(len(data) * 8, h_in)
    return ExtractResult(digest, 256, h_in, h_out)


def sha256_blocks(data: bytes, block: int) -> bytes:
    """SHA-256 of each whole ``block``-byte block of ``data``, concatenated (SP 800-90B 3.1.5.1.1, one digest per
    block); a partial last block is not used. One native call for all blocks (the pure-Python loop as fallback)."""
    n = len(data) // block
    if n == 0:
        return b""
    if native.available():
        kern = native.load()
        out = kern.ffi.new("unsigned char[]", 32 * n)
        if kern.lib.qrng_sha256_blocks(kern.ffi.from_buffer(data), block, n, out) != 0:
            raise ExtractionFailed("SHA-256 conditioning failed in OpenSSL")
        return bytes(kern.ffi.buffer(out))
    native.fallback("SHA-256 conditioning", "hashlib, one call per block")
    return b"".join(hashlib.sha256(data[i * block:(i + 1) * block]).digest() for i in range(n))


def von_neumann(bits: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Von Neumann debiasing of a 0/1 array: pairs 01 -> 0, 10 -> 1, 00 and 11 dropped."""
    b = np.asarray(bits, dtype=np.uint8)
    pairs = b[: b.size // 2 * 2].reshape(-1, 2)
    keep = pairs[:, 0] != pairs[:, 1]
    out: npt.NDArray[np.uint8] = pairs[keep, 0].copy()
    return out
