"""Extractors: Toeplitz bit-exact against a direct GF(2) matrix product, SP 800-90B 3.1.5.1.2, Von Neumann."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from qrng.errors import ConfigError
from qrng.extract import (
    Toeplitz,
    lhl_output_bits,
    pack_samples,
    sha256_condition,
    sha256_output_entropy,
    toeplitz_fft,
    toeplitz_native,
    von_neumann,
)


def direct_product(seed: bytes, seed_bits: int, data: bytes, n: int, m: int) -> bytes:
    s = np.unpackbits(np.frombuffer(seed, np.uint8), bitorder="little")[:seed_bits]
    x = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[:n].astype(np.int64)
    t = np.array([[s[i - j + n - 1] for j in range(n)] for i in range(m)], dtype=np.int64)
    return np.packbits(((t @ x) % 2).astype(np.uint8), bitorder="little").tobytes()


SIZES = [(1, 1), (8, 8), (7, 3), (64, 64), (65, 63), (63, 65), (100, 37), (128, 1), (1, 128), (200, 199), (513, 130)]


@pytest.mark.parametrize("n,m", SIZES)
def test_toeplitz_matches_direct_matrix_product(n, m):
    sb = n + m - 1
    for _ in range(3):
        seed, data = os.urandom((sb + 7) // 8), os.urandom((n + 7) // 8)
        want = direct_product(seed, sb, data, n, m)
        assert toeplitz_native(seed, sb, data, n, m) == want
        assert toeplitz_fft(seed, sb, data, n, m) == want


def test_toeplitz_ignores_bits_past_the_length():
    n, m = 13, 5
    seed, data = os.urandom(3), bytes([0xFF, 0x1F])
    noisy = bytes([0xFF, 0xFF])
    assert toeplitz_native(seed, n + m - 1, data, n, m) == toeplitz_native(seed, n + m - 1, noisy, n, m)


def test_toeplitz_large_native_equals_fft():
    n = 1 << 16
    m = lhl_output_bits(n, 0.9)
    seed, data = os.urandom((n + m) // 8 + 1), os.urandom(n // 8)
    assert toeplitz_native(seed, n + m - 1, data, n, m) == toeplitz_fft(seed, n + m - 1, data, n, m)


def test_toeplitz_rejects_wrong_seed_length():
    with pytest.raises(ValueError):
        toeplitz_native(b"\0" * 4, 10, b"\0", 8, 8)


@pytest.mark.parametrize("n,h,eps,want", [
    (1 << 20, 0.9, -100, math.floor((1 << 20) * 0.9 - 200)),
    (1000, 0.5, -100, 300),
    (400, 0.5, -100, 0),
    (1024, 1.0, -64, 896),
])
def test_leftover_hash_lemma_length(n, h, eps, want):
    assert lhl_output_bits(n, h, eps) == want


def test_extractor_refuses_blocks_with_no_output():
    with pytest.raises(ConfigError, match="block_bits"):
        Toeplitz(256, 0.5, os.urandom(64))


@pytest.mark.parametrize("n_in,h_in,lo,hi", [
    (512, 512, 255.0, 256.0),      # full-entropy input: almost full output
    (1024, 512, 255.0, 256.0),     # 2x margin of entropy
    (512, 128, 127.0, 128.0),      # less entropy in than out: output entropy ~ h_in
    (256, 256, 250.0, 256.0),
    (4096, 300, 255.0, 256.0),
])
def test_sha256_output_entropy(n_in, h_in, lo, hi):
    h = sha256_output_entropy(n_in, h_in)
    assert lo <= h <= hi


def test_sha256_output_entropy_monotone_in_input():
    vals = [sha256_output_entropy(1024, h) for h in (64, 128, 200, 256, 300, 512)]
    assert vals == sorted(vals)


def test_sha256_condition_digest():
    r = sha256_condition(b"abc", 24.0)
    assert r.data.hex().startswith("ba7816bf") and r.bits_out == 256 and r.entropy_out <= 24.0 + 1e-9


@pytest.mark.parametrize("bits,want", [
    ([0, 1, 1, 0, 0, 0, 1, 1], [0, 1]),
    ([1, 0, 1, 0, 1], [1, 1]),
    ([0, 0, 1, 1], []),
])
def test_von_neumann(bits, want):
    assert von_neumann(np.array(bits, dtype=np.uint8)).tolist() == want


def test_von_neumann_removes_bias():
    rng = np.random.default_rng(3)
    out = von_neumann((rng.random(400000) < 0.8).astype(np.uint8))
    assert abs(out.mean() - 0.5) < 0.01


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_pack_samples_roundtrip(bits):
    rng = np.random.default_rng(bits)
    s = rng.integers(0, 1 << bits, 64, dtype=np.uint8)
    packed = pack_samples(s, bits)
    unpacked = np.unpackbits(np.frombuffer(packed, np.uint8), bitorder="little")[: 64 * bits].reshape(64, bits)
    assert (unpacked @ (1 << np.arange(bits)) == s).all()


@pytest.mark.parametrize("n,h", [(16, 1.0), (100, 0.9), (513, 0.7), (1024, 0.5), (4096, 0.9)])
def test_toeplitz_plan_matches_direct_product(n, h):
    """The extractor's plan (gf2x FFT middle product with the seed transform cached) is T x, bit for bit."""
    t = Toeplitz(n, h, os.urandom((2 * n + 7) // 8 + 8), eps_log2=-4)
    for _ in range(3):  # the cached seed transform serves every block
        data = os.urandom((n + 7) // 8)
        want = direct_product(t.seed, t.seed_bits, data, n, t.m_bits) if n <= 1024 else \
            toeplitz_native(t.seed, t.seed_bits, data, n, t.m_bits)
        assert t.extract(data) == want
