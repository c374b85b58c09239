"""SP 800-90B section 6.3 min-entropy estimators, and the assessment of section 3.1.3.

Pure: numpy arrays in, results out. The four predictors (6.3.7-6.3.10) run in qrng._native; t-Tuple and
LRS use a suffix array (libdivsufsort) and its LCP array.

Binary data: every estimator runs on the data, H_original is their minimum. Wider samples: MCV, t-Tuple,
LRS and the predictors run on the samples ("literal"); every estimator runs on the bit string (each sample
written most significant bit first), and H_I = min(H_original, bits_per_symbol * H_bitstring).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import native
from ..errors import UsageError

__all__ = ["Assessment", "Estimate", "assess_non_iid", "collision", "compression", "lrs", "markov", "mcv",
           "min_samples", "prediction", "t_tuple", "to_bitstring", "tuple_counts"]

Z = 2.576  # the 99% upper bound used throughout 6.3
Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Estimate:
    name: str
    h: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    bits_per_symbol: int
    samples: int
    literal: tuple[Estimate, ...]
    bitstring: tuple[Estimate, ...]
    h_original: float
    h_bitstring: float | None
    h_assessed: float

    def to_dict(self) -> dict[str, Any]:
        return {"bits_per_symbol": self.bits_per_symbol, "samples": self.samples,
                "literal": [{"name": e.name, "h": e.h, **e.detail} for e in self.literal],
                "bitstring": [{"name": e.name, "h": e.h, **e.detail} for e in self.bitstring],
                "h_original": self.h_original, "h_bitstring": self.h_bitstring, "h_assessed": self.h_assessed}


def _upper(p: float, n: int) -> float:
    return min(1.0, p + Z * math.sqrt(p * (1.0 - p) / (n - 1)))


def to_bitstring(s: Array, bits: int) -> Array:
    """Each sample as ``bits`` bits, most significant first (3.1.3)."""
    return np.unpackbits(s[:, None], axis=1)[:, 8 - bits:].reshape(-1)


# --- 6.3.1 ------------------------------------------------------------------------------------------------
def _counts(s: Array) -> npt.NDArray[np.int64]:
    """Symbol counts, in chunks: np.bincount widens its input to 64 bits (8 bytes per sample otherwise)."""
    counts = np.zeros(256, dtype=np.int64)
    for i in range(0, s.size, 1 << 22):
        counts += np.bincount(s[i:i + (1 << 22)], minlength=256)[:256]
    return counts


def mcv(s: Array) -> Estimate:
    counts = _counts(s)
    mode = int(counts.max())
    p = mode / s.size
    pu = _upper(p, s.size)
    return Estimate("Most Common Value", -math.log2(pu), {"mode": mode, "p_hat": p, "p_u": pu})


# --- 6.3.2 (binary) -----------------------------------------------------------------------------------------
def collision(b: Array) -> Estimate:
    """Collision times of a bit string are 2 (equal pair) or 3; with E[t] = 2 + 2pq, p solves X' = 2 + 2p(1-p)."""
    _native = native.load()
    data = np.ascontiguousarray(b, dtype=np.uint8)
    threes = _native.ffi.new("long *")
    twos = int(_native.lib.qrng_collision_pairs(_native.ffi.from_buffer(data), data.size, threes))
    n3 = int(threes[0])
    v = twos + n3
    xbar = (2 * twos + 3 * n3) / v
    sigma = math.sqrt((twos * (2 - xbar) ** 2 + n3 * (3 - xbar) ** 2) / (v - 1))
    xp = xbar - Z * sigma / math.sqrt(v)
    disc = 0.25 - (xp - 2.0) / 2.0
    p = 0.5 + math.sqrt(disc) if disc > 0 and xp < 2.5 else 0.5
    return Estimate("Collision", -math.log2(p), {"x_bar": xbar, "sigma_hat": sigma, "p": p})


# --- 6.3.3 (binary) -----------------------------------------------------------------------------------------
def markov(b: Array) -> Estimate:
    n = b.size
    p1 = float(b.mean())
    p0 = 1.0 - p1
    prev, nxt = b[:-1], b[1:]
    n0 = int((prev == 0).sum())
    n1 = (n - 1) - n0
    c01 = int(((prev == 0) & (nxt == 1)).sum())
    c11 = int(((prev == 1) & (nxt == 1)).sum())
    p01 = c01 / n0 if n0 else 0.0
    p00 = 1.0 - p01 if n0 else 0.0
    p11 = c11 / n1 if n1 else 0.0
    p10 = 1.0 - p11 if n1 else 0.0

    def lg(x: float) -> float:
        return math.log2(x) if x > 0 else -math.inf
    cands = [lg(p0) + 127 * lg(p00), lg(p0) + 64 * lg(p01) + 63 * lg(p10), lg(p0) + lg(p01) + 126 * lg(p11),
             lg(p1) + lg(p10) + 126 * lg(p00), lg(p1) + 64 * lg(p10) + 63 * lg(p01), lg(p1) + 127 * lg(p11)]
    log_pmax = max(cands)
    h = min(-log_pmax / 128, 1.0)
    return Estimate("Markov", h, {"P_0": p0, "P_1": p1, "P_00": p00, "P_01": p01, "P_10": p10, "P_11": p11,
                                  "p_max": 2.0 ** log_pmax})


# --- 6.3.4 (binary) -----------------------------------------------------------------------------------------
COMPRESSION_B, COMPRESSION_D = 6, 1000


def min_samples(bits_per_symbol: int) -> int:
    """The fewest samples the non-IID track can assess: the bit string must hold more than d blocks of b bits."""
    bits = COMPRESSION_B * (COMPRESSION_D + 1)
    return -(-bits // bits_per_symbol)


def compression(b: Array, block: int = COMPRESSION_B, d: int = COMPRESSION_D) -> Estimate:
    nb = b.size // block
    if nb <= d:
        raise UsageError(f"the compression estimate needs more than {d} blocks of {block} bits (got {nb})")
    words = np.zeros(nb, dtype=np.uint8)  # each block of `block` bits as a symbol, most significant bit first
    for k in range(block):
        words <<= 1
        words |= b[k:nb * block:block]
    kern = native.load()
    sums = kern.ffi.new("double[2]")
    kern.lib.qrng_compression_sums(kern.ffi.from_buffer(words), nb, d, sums, sums + 1)
    del words
    nu = nb - d
    xbar = sums[0] / nu
    c = 0.5907
    sigma = c * math.sqrt(sums[1] / (nu - 1) - xbar ** 2)
    xp = xbar - Z * sigma / math.sqrt(nu)
    chunk = 1 << 20

    def g(z: float) -> float:
        """G(z) of 6.3.4 step 8 in O(L), summed in chunks (no array of L entries): for each u, how many t it
        appears under (weight), and the t-only terms."""
        if z <= 0 or z >= 1:
            return 0.0
        lz = math.log1p(-z)
        cut = min(nb, int(-745.0 / lz) + 2)  # (1-z)^(u-1) underflows past this: the terms vanish
        a = 0.0
        for lo_u in range(1, cut + 1, chunk):
            u = np.arange(lo_u, min(cut, lo_u + chunk - 1) + 1, dtype=np.float64)
            weight = nb - np.maximum(float(d), u)  # number of t in [d+1, nb] with t > u
            a += float((np.log2(u) * np.exp((u - 1) * lz) * weight).sum())
        bsum = 0.0
        for lo_t in range(d + 1, cut + 1, chunk):
            t = np.arange(lo_t, min(cut, lo_t + chunk - 1) + 1, dtype=np.float64)
            bsum += float((np.log2(t) * np.exp((t - 1) * lz)).sum())
        return (z * z * a + z * bsum) / nu

    k = (1 << block) - 1

    def expected(p: float) -> float:
        return g(p) + k * g((1.0 - p) / k)
    lo, hi = 1.0 / (1 << block), 1.0
    if expected(lo) < xp:
        p = lo
    else:
        for _ in range(45):
            mid = (lo + hi) / 2
            if expected(mid) > xp:
                lo = mid
            else:
                hi = mid
        p = (lo + hi) / 2
    return Estimate("Compression", -math.log2(p) / block, {"x_bar": xbar, "sigma_hat": sigma, "p": p})


# --- 6.3.5 and 6.3.6 ------------------------------------------------------------------------------------------
def tuple_counts(s: Array) -> tuple[list[int], list[int], int]:
    """For t = 1, 2, ...: Q[t] (count of the most common t-tuple) and sum over t-tuples of C(count, 2),
    from the suffix array's LCP intervals (qrng._native: libdivsufsort, the LCP array in place over the suffix
    array, one pass over its intervals); and the longest repeated substring length v. Peak memory is about 9
    bytes per symbol, and the C work releases the GIL (progress keeps ticking)."""
    data = np.ascontiguousarray(s, dtype=np.uint8)
    kern = native.load()
    buf = np.empty(max(1, data.size), dtype=np.int32)  # the suffix array, then the LCP array in place
    vmax = int(kern.lib.qrng_lcp_array(kern.ffi.from_buffer(data), data.size,
                                       kern.ffi.cast("int32_t *", kern.ffi.from_buffer(buf))))
    if vmax < 0:
        raise MemoryError(f"cannot build the suffix array of {data.size:,} symbols")
    lcp = buf[:max(0, data.size - 1)]
    q = np.zeros(vmax + 2, dtype=np.int64)
    pairs = np.zeros(vmax + 2, dtype=np.int64)
    v = kern.lib.qrng_lcp_tuple_counts(kern.ffi.cast("int32_t *", kern.ffi.from_buffer(lcp)), lcp.size, vmax,
                                       kern.ffi.cast("long *", kern.ffi.from_buffer(q)),
                                       kern.ffi.cast("long *", kern.ffi.from_buffer(pairs)))
    if v < 0:
        raise MemoryError("t-Tuple/LRS counting ran out of memory")
    return [int(x) for x in q], [int(x) for x in pairs], int(v)


def bit_tuple_counts(b: Array) -> tuple[list[int], list[int], int]:
    """tuple_counts of a bit string without its suffix array (about 14 bytes per suffix of one of 16 passes
    instead of 8 bytes per bit); the suffix array only when some repeat reaches 64 bits."""
    data = np.ascontiguousarray(b, dtype=np.uint8)
    kern = native.load()
    q = np.zeros(66, dtype=np.int64)
    pairs = np.zeros(66, dtype=np.int64)
    v = int(kern.lib.qrng_bit_tuple_counts(kern.ffi.from_buffer(data), data.size,
                                           kern.ffi.cast("long *", kern.ffi.from_buffer(q)),
                                           kern.ffi.cast("long *", kern.ffi.from_buffer(pairs))))
    if v == -2:
        return tuple_counts(data)
    if v < 0:
        raise MemoryError("t-Tuple/LRS counting of the bit string ran out of memory")
    return [int(x) for x in q[:v + 2]], [int(x) for x in pairs[:v + 2]], v


def _tuple_counts_reference(s: Array) -> tuple[list[int], list[int], int]:
    """The same counts threshold by threshold in numpy (slow, memory-hungry): the cross-check for tests."""
    import pydivsufsort
    data = np.ascontiguousarray(s, dtype=np.uint8)
    sa = pydivsufsort.divsufsort(data)
    lcp = pydivsufsort.kasai(data, sa)[:-1]
    v = int(lcp.max()) if lcp.size else 0
    q, pairs = [0], [0]
    for t in range(1, v + 2):
        m = lcp >= t
        if not m.any():
            q.append(1)
            pairs.append(0)
            continue
        dm = np.diff(np.concatenate([[0], m.view(np.int8), [0]]))
        starts, ends = np.flatnonzero(dm == 1), np.flatnonzero(dm == -1)
        sizes = (ends - starts + 1).astype(np.int64)
        q.append(int(sizes.max()))
        pairs.append(int((sizes * (sizes - 1) // 2).sum()))
    return q, pairs, v


def t_tuple(s: Array, counts: tuple[list[int], list[int], int] | None = None) -> Estimate:
    q, _, _ = counts or tuple_counts(s)
    n = s.size
    t = 0
    while t + 1 < len(q) and q[t + 1] >= 35:
        t += 1
    if t == 0:
        return Estimate("t-Tuple", math.nan, {"t": 0})
    pmax = max((q[i] / (n - i + 1)) ** (1.0 / i) for i in range(1, t + 1))
    pu = _upper(pmax, n)
    return Estimate("t-Tuple", -math.log2(pu), {"t": t, "p_hat_max": pmax, "p_u": pu})


def lrs(s: Array, counts: tuple[list[int], list[int], int] | None = None) -> Estimate:
    q, pairs, v = counts or tuple_counts(s)
    n = s.size
    u = 1
    while u < len(q) and q[u] >= 35:
        u += 1
    if u > v:
        return Estimate("LRS", math.nan, {"u": u, "v": v})
    best = 0.0
    for w in range(u, v + 1):
        total = (n - w + 1) * (n - w) / 2
        pw = pairs[w] / total
        if pw > 0:
            best = max(best, pw ** (1.0 / w))
    pu = _upper(best, n)
    return Estimate("LRS", -math.log2(pu), {"u": u, "v": v, "p_hat": best, "p_u": pu})


# --- 6.3.7-6.3.10 --------------------------------------------------------------------------------------------
def _log_no_run(p: float, r: int, n: int) -> float:
    """log of the probability that N trials with success probability p have no run of r successes (6.3.7)."""
    q = 1.0 - p
    x = 1.0
    for _ in range(10):
        x = 1.0 + q * p ** r * x ** (r + 1)
    return math.log(1.0 - p * x) - math.log((r + 1.0 - r * x) * q) - (n + 1.0) * math.log(x)


def prediction(name: str, correct: int, n: int, max_run: int, k: int) -> Estimate:
    """P_global', and P_local from the longest run when it can matter; H = -log2 of the largest (>= 1/k)."""
    pg = correct / n
    pgp = _upper(pg, n) if pg > 0 else 1.0 - 0.01 ** (1.0 / n)
    cur = max(1.0 / k, pgp)
    r = max_run + 1
    plocal = None
    if cur < 1.0 and _log_no_run(cur, r, n) > math.log(0.99):
        lo, hi = cur, 1.0
        for _ in range(100):  # f decreases in p: find p with f(p) = log 0.99
            mid = (lo + hi) / 2
            if mid >= 1.0 or _log_no_run(mid, r, n) < math.log(0.99):
                hi = mid
            else:
                lo = mid
        plocal = (lo + hi) / 2
        cur = max(cur, plocal)
    return Estimate(name, -math.log2(cur), {"N": n, "C": correct, "P_global_prime": pgp, "r": r,
                                            "P_local": plocal})


_PREDICTORS: list[tuple[str, str, Callable[[int], int]]] = [
    ("MultiMCW Prediction", "qrng_multimcw", lambda n: n - 63),
    ("Lag Prediction", "qrng_lag", lambda n: n - 1),
    ("MultiMMC Prediction", "qrng_multimmc", lambda n: n - 2),
    ("LZ78Y Prediction", "qrng_lz78y", lambda n: n - 17),
]


def _predict(data: Array, k: int, name: str, fn: str, count: Callable[[int], int]) -> Estimate:
    _native = native.load()
    c = _native.ffi.new("long *")
    r = _native.ffi.new("long *")
    rc = getattr(_native.lib, fn)(_native.ffi.from_buffer(data), data.size, k, c, r)  # releases the GIL
    if rc != 0:
        raise UsageError(f"{name}: not enough samples")
    return prediction(name, int(c[0]), count(data.size), int(r[0]), k)


def predictors(s: Array, k: int) -> list[Estimate]:
    """6.3.7-6.3.10, the four predictors side by side (each is a C call that releases the GIL)."""
    data = np.ascontiguousarray(s, dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(_predict, data, k, name, fn, count) for name, fn, count in _PREDICTORS]
        return [f.result() for f in futures]


# --- 3.1.3 ---------------------------------------------------------------------------------------------------------
def _translate(s: Array) -> tuple[Array, int]:
    """Map the symbols that occur onto 0..k-1, keeping their order (the tool works on this alphabet)."""
    present = np.flatnonzero(np.bincount(s, minlength=256))
    table = np.zeros(256, dtype=np.uint8)
    table[present] = np.arange(present.size, dtype=np.uint8)
    return table[s], int(present.size)


def _binary_suite(b: Array, progress: Callable[[str], None]) -> list[Estimate]:
    """6.3.1-6.3.10 on a bit string. The predictors (C, most of the time) run on a second thread while the rest
    is computed here; the results and their order are the same as one after the other."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        later = pool.submit(predictors, b, 2)
        progress("bit string: MCV, collision, Markov, compression (predictors alongside)")
        out = [mcv(b), collision(b), markov(b), compression(b)]
        progress("bit string: t-Tuple and LRS")
        counts = bit_tuple_counts(b)
        out += [t_tuple(b, counts), lrs(b, counts)]
        progress("bit string: predictors")
        out += later.result()
    return out


def assess_non_iid(samples: Array, bits_per_symbol: int, progress: Callable[[str], None] | None = None) -> Assessment:
    prog = progress or (lambda m: None)
    s = np.ascontiguousarray(samples, dtype=np.uint8)
    if bits_per_symbol < 1 or bits_per_symbol > 8:
        raise UsageError("bits_per_symbol must be between 1 and 8")
    if s.size and int(s.max()) >= 1 << bits_per_symbol:
        raise UsageError(f"a sample is wider than {bits_per_symbol} bits")
    need = min_samples(bits_per_symbol)
    if s.size < need:
        raise UsageError(f"{s.size:,} samples of {bits_per_symbol} bit(s) are too few for the non-IID track: the "
                         f"compression estimate (6.3.4) needs more than {COMPRESSION_D:,} dictionary blocks of "
                         f"{COMPRESSION_B} bits, so at least {need:,} samples (SP 800-90B asks for 1,000,000)")
    if bits_per_symbol == 1:
        ests = _binary_suite(s, prog)
        valid = [e.h for e in ests if not math.isnan(e.h)]
        h = min(valid)
        return Assessment(1, s.size, tuple(ests), (), h, None, h)
    t, k = _translate(s)
    prog("literal: MCV, t-Tuple, LRS")
    counts = tuple_counts(t)
    lit = [mcv(t), t_tuple(t, counts), lrs(t, counts)]
    prog("literal: predictors")
    lit += predictors(t, k)
    bitstring = _binary_suite(to_bitstring(s, bits_per_symbol), prog)
    h_orig = min(e.h for e in lit if not math.isnan(e.h))
    h_bits = min(e.h for e in bitstring if not math.isnan(e.h))
    return Assessment(bits_per_symbol, s.size, tuple(lit), tuple(bitstring), h_orig, h_bits,
                      min(h_orig, bits_per_symbol * h_bits))
