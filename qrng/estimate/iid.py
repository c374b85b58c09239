"""SP 800-90B section 5: the IID track. Permutation testing (5.1, nineteen statistics), the chi-square tests
(5.2.1-5.2.4) and the longest-repeated-substring test (5.2.5); for IID data the estimate is the most common
value (6.3.1) of the samples and of the bit string."""

from __future__ import annotations

import bz2
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import native
from .nonid import Array, Estimate, _translate, mcv, to_bitstring, tuple_counts

__all__ = ["IidResult", "STATISTICS", "assess_iid", "chi_square_tests", "gammaincc", "lrs_test", "permutation_tests"]

STATISTICS = ("excursion", "numDirectionalRuns", "lenDirectionalRuns", "numIncreasesDecreases", "numRunsMedian",
              "lenRunsMedian", "avgCollision", "maxCollision", "periodicity1", "periodicity2", "periodicity8",
              "periodicity16", "periodicity32", "covariance1", "covariance2", "covariance8", "covariance16",
              "covariance32", "compression")


@dataclass(frozen=True)
class IidResult:
    chi_square_passed: bool
    chi_square: dict[str, Any]
    lrs_passed: bool
    lrs: dict[str, Any]
    permutation_passed: bool | None
    permutation: dict[str, Any]
    mcv_literal: Estimate
    mcv_bitstring: Estimate | None
    h_assessed: float
    bits_per_symbol: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def iid(self) -> bool:
        return bool(self.chi_square_passed and self.lrs_passed and self.permutation_passed)

    def to_dict(self) -> dict[str, Any]:
        return {"iid": self.iid, "chi_square": {"passed": self.chi_square_passed, **self.chi_square},
                "lrs": {"passed": self.lrs_passed, **self.lrs},
                "permutation": {"passed": self.permutation_passed, **self.permutation},
                "mcv_literal": self.mcv_literal.h,
                "mcv_bitstring": self.mcv_bitstring.h if self.mcv_bitstring else None,
                "h_assessed": self.h_assessed, "bits_per_symbol": self.bits_per_symbol}


# --- the chi-square p-value: Q(k/2, x/2), the regularised upper incomplete gamma function --------------------
def gammaincc(a: float, x: float) -> float:
    if x <= 0 or a <= 0:
        return 1.0
    lg = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:  # series for P, then Q = 1 - P
        term = total = 1.0 / a
        ap = a
        for _ in range(100000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(lg))
    # continued fraction (modified Lentz)
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 100000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(lg) * h


def _bins(expectations: list[tuple[float, int]]) -> tuple[dict[int, int], list[float]]:
    """5.2.1 step 3: sorted by expectation (then by value), packed into bins of expectation >= 5."""
    order = sorted(expectations)
    bin_of: dict[int, int] = {}
    exp: list[float] = []
    cur, acc = 0, 0.0
    for e, key in order:
        if acc >= 5.0:
            exp.append(acc)
            cur += 1
            acc = 0.0
        bin_of[key] = cur
        acc += e
    if cur != 0 and acc < 5.0:  # merge a last bin that is too small
        for key, bnum in bin_of.items():
            if bnum == cur:
                bin_of[key] = cur - 1
        exp[cur - 1] += acc
    else:
        exp.append(acc)
    return bin_of, exp


def chi_square_tests(s: Array, k: int) -> tuple[bool, dict[str, Any]]:
    n = s.size
    out: dict[str, Any] = {}
    if k == 2:
        p1 = float(s.mean())
        p0 = 1 - p1
        m = 11
        while m > 1 and not (min(p0, p1) ** m * (n // m) >= 5):
            m -= 1
        if m >= 2:
            blocks = n // m
            words = s[:blocks * m].reshape(blocks, m) @ (1 << np.arange(m - 1, -1, -1))
            occ = np.bincount(words, minlength=1 << m)
            w = np.array([bin(i).count("1") for i in range(1 << m)])
            e = p1 ** w * p0 ** (m - w) * blocks
            t_ind, df_ind = float(((occ - e) ** 2 / e).sum()), (1 << m) - 2
        else:
            t_ind, df_ind = 0.0, 0
        sub = n // 10
        ones = s[:sub * 10].reshape(10, sub).sum(axis=1)
        e0, e1 = (1 - p1) * sub, p1 * sub
        t_gof = float((((sub - ones) - e0) ** 2 / e0 + (ones - e1) ** 2 / e1).sum())
        df_gof = 9
    else:
        p = np.bincount(s, minlength=k) / n
        half = math.floor(n * 0.5)
        exps = [(float(p[i] * p[j] * half), i * k + j) for i in range(k) for j in range(k)]
        bin_of, bexp = _bins(exps)
        lookup = np.array([bin_of[t] for t in range(k * k)])
        pairs = s[:n // 2 * 2].reshape(-1, 2).astype(np.int64)
        obs = np.bincount(lookup[pairs[:, 0] * k + pairs[:, 1]], minlength=len(bexp))
        be = np.array(bexp)
        t_ind, df_ind = float(((obs - be) ** 2 / be).sum()), len(bexp) - k
        tenth = math.floor(n / 10.0)
        bin_of, bexp = _bins([(float(p[j] * tenth), j) for j in range(k)])
        lookup = np.array([bin_of[j] for j in range(k)])
        be = np.array(bexp)
        block = n // 10
        t_gof = 0.0
        for j in range(10):
            obs = np.bincount(lookup[s[j * block:(j + 1) * block]], minlength=len(bexp))
            t_gof += float(((obs - be) ** 2 / be).sum())
        df_gof = 9 * (len(bexp) - 1)
    p_ind = gammaincc(df_ind / 2, t_ind / 2) if df_ind > 0 else 1.0
    p_gof = gammaincc(df_gof / 2, t_gof / 2)
    out.update({"independence": {"score": t_ind, "df": df_ind, "p_value": p_ind},
                "goodness_of_fit": {"score": t_gof, "df": df_gof, "p_value": p_gof}})
    return p_ind >= 0.001 and p_gof >= 0.001, out


def lrs_test(s: Array) -> tuple[bool, dict[str, Any]]:
    """5.2.5: W = longest repeated substring; Pr(E >= 1) = 1 - (1 - P_col^W)^C(L-W+1, 2) must be >= 0.001."""
    n = s.size
    _, _, w = tuple_counts(s)
    p = np.bincount(s) / n
    pcol = float((p * p).sum())
    pairs = (n - w + 1) * (n - w) / 2
    pr = -math.expm1(pairs * math.log1p(-pcol ** w)) if pcol ** w < 1 else 1.0
    return pr >= 0.001, {"W": w, "P_col": pcol, "Pr_E": pr}


# --- 5.1 permutation testing -----------------------------------------------------------------------------------
_TEXT = [f"{i} ".encode() for i in range(256)]


def _compression(s: Array) -> float:
    """5.1.11: the length of the bzip2 encoding (block size 5) of the samples written in decimal."""
    return float(len(bz2.compress(b"".join(map(_TEXT.__getitem__, s.tolist())), compresslevel=5)))


def _statistics(s: Array, binary: bool, mean: float, median: float, compression: bool = True) -> np.ndarray:
    _native = native.load()
    if binary:  # Conversion I (Hamming weight of each 8 bits) and Conversion II (the 8 bits as a byte)
        m = s.size // 8 * 8
        dirdata = s[:m].reshape(-1, 8).sum(axis=1, dtype=np.uint8)
        meddata = np.packbits(s[:m])
    else:
        dirdata = meddata = s
    out = np.zeros(19)
    ffi = _native.ffi
    raw, d, md = (np.ascontiguousarray(x, dtype=np.uint8) for x in (s, dirdata, meddata))
    _native.lib.qrng_iid_stats(ffi.from_buffer(raw), raw.size, ffi.from_buffer(d), d.size, ffi.from_buffer(md), md.size,
                               mean, median, ffi.cast("double *", ffi.from_buffer(out)))
    out[18] = _compression(s) if compression else np.nan
    return out


def permutation_tests(s: Array, permutations: int = 10000, seed: int | None = None,
                      progress: Callable[[str], None] | None = None) -> tuple[bool | None, dict[str, Any]]:
    """Shuffle and recount until every statistic is decided (5.1): a statistic fails when the original is among
    the 5 most extreme of the permutations at either end. Returns None if undecided after ``permutations``."""
    binary = int(s.max()) <= 1
    if binary:
        m = s.size // 8 * 8
        med_src = np.packbits(s[:m])
        median = float(np.median(med_src))
    else:
        median = float(np.median(s))
    mean = float(s.mean())
    original = _statistics(s, binary, mean, median)
    rng = np.random.default_rng(seed)
    c0 = np.zeros(19, dtype=np.int64)  # permuted > original
    c1 = np.zeros(19, dtype=np.int64)  # equal
    c2 = np.zeros(19, dtype=np.int64)  # less
    data = s.copy()
    done = 0
    decided = np.zeros(19, dtype=bool)
    for done in range(1, permutations + 1):
        rng.shuffle(data)
        # bzip2 dominates the cost: once the compression statistic is decided it is not recomputed
        t = _statistics(data, binary, mean, median, compression=not decided[18])
        live = ~decided
        c0[live] += (t > original)[live]
        c1[live] += (t == original)[live]
        c2[live] += (t < original)[live]
        decided = (c0 + c1 > 5) & (c1 + c2 > 5)
        if decided.all():
            break
        if progress and done % 100 == 0:
            progress(f"permutation {done}/{permutations}, {int(decided.sum())}/19 statistics decided")
    failed = [STATISTICS[i] for i in range(19)
              if done == permutations and (c0[i] + c1[i] <= 5 or c1[i] + c2[i] <= 5)]
    decided_all = bool(((c0 + c1 > 5) & (c1 + c2 > 5)).all())
    verdict: bool | None = True if decided_all else (False if done == permutations else None)
    if not decided_all and done == permutations:
        verdict = not failed
    return verdict, {"permutations": done, "failed": failed,
                     "counts": {STATISTICS[i]: [int(c0[i]), int(c1[i]), int(c2[i])] for i in range(19)},
                     "original": {STATISTICS[i]: float(original[i]) for i in range(19)}}


def assess_iid(samples: Array, bits_per_symbol: int, permutations: int = 10000, seed: int | None = None,
               progress: Callable[[str], None] | None = None) -> IidResult:
    prog = progress or (lambda m: None)
    s = np.ascontiguousarray(samples, dtype=np.uint8)
    t, k = _translate(s)
    prog("chi-square tests")
    chi_ok, chi = chi_square_tests(t, k)
    prog("longest repeated substring test")
    lrs_ok, lrs_detail = lrs_test(t)
    prog("permutation tests")
    perm_ok, perm = permutation_tests(s, permutations, seed, prog)
    lit = mcv(t)
    bits = mcv(to_bitstring(s, bits_per_symbol)) if bits_per_symbol > 1 else None
    h = lit.h if bits is None else min(lit.h, bits_per_symbol * bits.h)
    return IidResult(chi_ok, chi, lrs_ok, lrs_detail, perm_ok, perm, lit, bits, h, bits_per_symbol)
