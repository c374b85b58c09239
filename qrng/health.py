"""SP 800-90B section 4.4 continuous health tests, vectorised with numpy.

* Repetition Count Test (4.4.1): cutoff C = 1 + ceil(-log2(alpha) / H).
* Adaptive Proportion Test (4.4.2): window W = 1024 for binary sources and 512 otherwise;
  cutoff C = 1 + CRITBINOM(W, 2^-H, 1 - alpha), computed from the exact binomial distribution.

The tester keeps state across blocks (the run in progress and the open APT window), so a stream
split into blocks anywhere gives exactly the result of the sample-by-sample algorithm of the
specification. A block in which any test fires produces no output: :meth:`HealthTester.check`
raises and the tester stays failed until :meth:`HealthTester.reset`. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import ConfigError, HealthTestFailure, PipelineFailed

__all__ = [
    "Cutoffs",
    "HealthCounters",
    "HealthStatistics",
    "HealthTester",
    "apt_cutoff",
    "apt_window",
    "critbinom",
    "cutoffs",
    "rct_cutoff",
    "statistics",
]


def _alpha_bits(alpha_log2: float) -> float:
    if alpha_log2 >= 0:
        raise ConfigError("health.alpha_log2", "must be negative (alpha = 2^alpha_log2 < 1)")
    return -float(alpha_log2)


def rct_cutoff(h: float, alpha_log2: float = -20) -> int:
    """SP 800-90B 4.4.1: C = 1 + ceil(-log2(alpha) / H)."""
    if h <= 0:
        raise ConfigError("source.claimed_min_entropy", "must be positive")
    q = _alpha_bits(alpha_log2) / h
    nearest = round(q)
    if abs(q - nearest) < 1e-9:  # 20 / 0.1 must be 200, not 200.00000000000003
        q = nearest
    return 1 + math.ceil(q)


def critbinom(n: int, p: float, q: float) -> int:
    """Smallest k with P(Binomial(n, p) <= k) >= q, from exact log-space binomial terms."""
    log_p, log_1p = math.log(p), math.log1p(-p)
    lg_n1 = math.lgamma(n + 1)
    pmf = [math.exp(lg_n1 - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_1p)
           for k in range(n + 1)]
    # Upper tails summed from the top keep the precision that 1 - cdf would lose.
    alpha = 1.0 - q
    tail = 0.0
    for k in range(n, -1, -1):
        # tail == P(X > k)
        if tail > alpha * (1 + 1e-12):
            return k + 1
        tail += pmf[k]
    return 0


def apt_window(bits_per_sample: int) -> int:
    """SP 800-90B 4.4.2: W = 1024 for binary sources, 512 for all others."""
    return 1024 if bits_per_sample == 1 else 512


def apt_cutoff(h: float, window: int, alpha_log2: float = -20) -> int:
    """SP 800-90B 4.4.2: C = 1 + CRITBINOM(W, 2^-H, 1 - alpha)."""
    if h <= 0:
        raise ConfigError("source.claimed_min_entropy", "must be positive")
    alpha = 2.0 ** alpha_log2
    return 1 + critbinom(window, 2.0 ** -h, 1.0 - alpha)


@dataclass(frozen=True)
class Cutoffs:
    h: float
    alpha_log2: float
    rct: int
    apt: int
    window: int


def cutoffs(h: float, bits_per_sample: int, alpha_log2: float = -20) -> Cutoffs:
    w = apt_window(bits_per_sample)
    return Cutoffs(h=h, alpha_log2=alpha_log2, rct=rct_cutoff(h, alpha_log2), apt=apt_cutoff(h, w, alpha_log2),
                   window=w)


@dataclass(frozen=True)
class HealthCounters:
    samples_tested: int
    blocks_passed: int
    blocks_failed: int
    rct_failures: int
    apt_failures: int
    failed: bool
    last_failure: str | None


def _runs_of_true(a: npt.NDArray[np.bool_], length: int) -> npt.NDArray[np.bool_]:
    """b[i] = all(a[i:i+length]) by binary doubling: O(n log length) with whole-array passes."""
    n = a.size
    res: npt.NDArray[np.bool_] | None = None
    res_len = 0
    p, plen = a, 1
    while length:
        if length & 1:
            if res is None:
                res, res_len = p, plen
            else:
                size = n - res_len - plen + 1
                if size <= 0:
                    return np.zeros(0, dtype=bool)
                res = res[:size] & p[res_len:res_len + size]
                res_len += plen
        length >>= 1
        if length:
            size = p.size - plen
            if size <= 0:
                return np.zeros(0, dtype=bool)
            p = p[:size] & p[plen:plen + size]
            plen *= 2
    assert res is not None
    return res


class HealthTester:
    """RCT + APT over a stream of blocks, with state carried between blocks.

    Args:
        h: claimed min-entropy per sample (bits).
        bits_per_sample: 1..8.
        alpha_log2: log2 of the false-positive probability per test (default -20, i.e. 2^-20).
    """

    def __init__(self, h: float, bits_per_sample: int, alpha_log2: float = -20) -> None:
        self.cutoffs = cutoffs(h, bits_per_sample, alpha_log2)
        self.bits_per_sample = bits_per_sample
        self._rct_failures = 0
        self._apt_failures = 0
        self._blocks_passed = 0
        self._blocks_failed = 0
        self._reset_state()
        self._samples = 0

    def _reset_state(self) -> None:
        self._failed: HealthTestFailure | None = None
        self._rct_last = -1
        self._rct_run = 0
        self._apt_ref = -1
        self._apt_count = 0
        self._apt_pos = 0

    @property
    def failed(self) -> bool:
        return self._failed is not None

    @property
    def failure(self) -> HealthTestFailure | None:
        return self._failed

    def reset(self) -> None:
        """Clear the failed state. The caller must run start-up tests again before any output."""
        self._reset_state()

    def counters(self) -> HealthCounters:
        return HealthCounters(
            samples_tested=self._samples, blocks_passed=self._blocks_passed, blocks_failed=self._blocks_failed,
            rct_failures=self._rct_failures, apt_failures=self._apt_failures, failed=self.failed,
            last_failure=str(self._failed) if self._failed else None,
        )

    def check(self, block: npt.NDArray[np.uint8]) -> None:
        """Run both tests over ``block``; raise HealthTestFailure if either fires anywhere in it."""
        if self._failed is not None:
            raise PipelineFailed(f"health tests are in the failed state ({self._failed}); reset required")
        block = np.ascontiguousarray(block, dtype=np.uint8)
        if block.size == 0:
            return
        base = self._samples
        failure = self._rct(block, base)
        apt_failure = self._apt(block, base)
        if apt_failure is not None and (failure is None or apt_failure.sample_index < failure.sample_index):
            failure = apt_failure
        self._samples += block.size
        if failure is not None:
            if failure.test.startswith("RCT"):
                self._rct_failures += 1
            else:
                self._apt_failures += 1
            self._blocks_failed += 1
            self._failed = failure
            raise failure
        self._blocks_passed += 1

    # --- SP 800-90B 4.4.1 ---------------------------------------------------------------------------
    def _rct(self, block: npt.NDArray[np.uint8], base: int) -> HealthTestFailure | None:
        c = self.cutoffs.rct
        carried = min(self._rct_run, c - 1) if self._rct_last >= 0 else 0
        ext = np.concatenate([np.full(carried, self._rct_last, dtype=np.uint8), block]) if carried else block
        eq = ext[1:] == ext[:-1]
        hits = _runs_of_true(eq, c - 1) if c > 1 else np.ones(ext.size, dtype=bool)
        if hits.size and hits.any():
            p = int(np.argmax(hits))
            end = p + c - 1  # index in ext of the sample that makes the run reach C
            return HealthTestFailure("RCT (SP 800-90B 4.4.1)", base + end - carried, c, c, int(ext[end]))
        # carry the trailing run into the next block
        last = int(block[-1])
        k = 64
        while True:
            tail = block[-k:]
            diff = np.flatnonzero(tail != last)
            if diff.size:
                trailing = tail.size - 1 - int(diff[-1])
                break
            if k >= block.size:
                trailing = block.size + (self._rct_run if self._rct_last == last else 0)
                break
            k *= 4
        self._rct_last, self._rct_run = last, trailing
        return None

    # --- SP 800-90B 4.4.2 ---------------------------------------------------------------------------
    def _apt(self, block: npt.NDArray[np.uint8], base: int) -> HealthTestFailure | None:
        w, c = self.cutoffs.window, self.cutoffs.apt
        n = block.size
        i = 0

        def fail(at: int, ref: int) -> HealthTestFailure:
            return HealthTestFailure("APT (SP 800-90B 4.4.2)", base + at, c, c, ref)

        if self._apt_pos:  # finish the open window
            k = min(w - self._apt_pos, n)
            hits = np.cumsum(block[:k] == self._apt_ref) + self._apt_count
            if hits[-1] >= c:
                return fail(int(np.argmax(hits >= c)), self._apt_ref)
            self._apt_count = int(hits[-1])
            self._apt_pos = (self._apt_pos + k) % w
            i = k
        m = (n - i) // w
        if m:
            win = block[i:i + m * w].reshape(m, w)
            counts = np.count_nonzero(win == win[:, :1], axis=1)
            bad = np.flatnonzero(counts >= c)
            if bad.size:
                row = int(bad[0])
                hits = np.cumsum(win[row] == win[row, 0])
                return fail(i + row * w + int(np.argmax(hits >= c)), int(win[row, 0]))
            i += m * w
        if i < n:
            tail = block[i:]
            ref = int(tail[0])
            hits = np.cumsum(tail == ref)
            if hits[-1] >= c:
                return fail(i + int(np.argmax(hits >= c)), ref)
            self._apt_ref, self._apt_count, self._apt_pos = ref, int(hits[-1]), tail.size
        return None


@dataclass(frozen=True)
class HealthStatistics:
    """What the two tests saw over a block of samples: how many runs of each length (4.4.1 counts a run of
    length C or more as a failure) and how many APT windows had each count of their first sample (4.4.2; only
    whole windows from the block's start). Histograms are (value, how many) pairs in ascending value."""

    samples: int
    window: int
    run_lengths: tuple[tuple[int, int], ...]
    apt_counts: tuple[tuple[int, int], ...]

    @property
    def max_run(self) -> int:
        return self.run_lengths[-1][0] if self.run_lengths else 0

    @property
    def max_apt(self) -> int:
        return self.apt_counts[-1][0] if self.apt_counts else 0


def _histogram(values: npt.NDArray[np.int64]) -> tuple[tuple[int, int], ...]:
    uniq, counts = np.unique(values, return_counts=True)
    return tuple((int(u), int(c)) for u, c in zip(uniq, counts, strict=True))


def statistics(samples: npt.NDArray[np.uint8], window: int) -> HealthStatistics:
    """Run-length and APT-count histograms of ``samples`` (the observed side of the cutoffs in a transcript)."""
    n = int(samples.size)
    if n == 0:
        return HealthStatistics(0, window, (), ())
    starts = np.flatnonzero(np.concatenate(([True], samples[1:] != samples[:-1])))
    runs = np.diff(np.append(starts, n)).astype(np.int64)
    m = n // window
    apt: tuple[tuple[int, int], ...] = ()
    if m:
        win = samples[:m * window].reshape(m, window)
        apt = _histogram(np.count_nonzero(win == win[:, :1], axis=1).astype(np.int64))
    return HealthStatistics(n, window, _histogram(runs), apt)
