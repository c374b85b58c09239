"""SP 800-90B 4.4 health tests: cutoffs against the reference table, and the vectorised tester against
a plain sample-by-sample implementation of the specification's algorithms."""

from __future__ import annotations

import re

import numpy as np
import pytest

from qrng.errors import HealthTestFailure, PipelineFailed
from qrng.health import HealthTester, apt_cutoff, cutoffs, rct_cutoff


def _reference_table(vectors):
    rows = []
    for line in (vectors / "health-cutoffs.md").read_text().splitlines():
        m = re.match(r"\|\s*([\d.]+)\s*\|\s*2\^-(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", line)
        if m:
            rows.append((float(m[1]), -int(m[2]), int(m[3]), int(m[4]), int(m[5])))
    assert len(rows) >= 14
    return rows


def test_cutoffs_match_reference_table(vectors):
    for h, a, rct, apt1024, apt512 in _reference_table(vectors):
        assert rct_cutoff(h, a) == rct, (h, a)
        assert apt_cutoff(h, 1024, a) == apt1024, (h, a)
        assert apt_cutoff(h, 512, a) == apt512, (h, a)


def test_window_follows_sample_width():
    assert cutoffs(1.0, 1).window == 1024
    assert cutoffs(1.0, 4).window == 512


def reference(samples, rct_c, apt_c, w):
    """The algorithms of SP 800-90B 4.4.1 and 4.4.2, one sample at a time. Returns (test, index) or None."""
    a, b = None, 0
    apt_a, apt_b, apt_i = None, 0, 0
    for i, x in enumerate(int(v) for v in samples):
        if a is not None and x == a:
            b += 1
            if b >= rct_c:
                return ("RCT", i)
        else:
            a, b = x, 1
        if apt_i == 0:
            apt_a, apt_b = x, 1
        elif x == apt_a:
            apt_b += 1
        if apt_b >= apt_c:
            return ("APT", i)
        apt_i = (apt_i + 1) % w
    return None


def run_blocks(tester, samples, sizes):
    pos = 0
    k = 0
    while pos < len(samples):
        n = sizes[k % len(sizes)]
        try:
            tester.check(samples[pos:pos + n])
        except HealthTestFailure as exc:
            return (exc.test[:3], exc.sample_index)
        pos += n
        k += 1
    return None


def _with_run(rng, n, at, length, value, hi=256):
    x = rng.integers(0, hi, n, dtype=np.uint8)
    # avoid accidental neighbours equal to the run value
    x[max(at - 1, 0)] = (value + 1) % hi
    if at + length < n:
        x[at + length] = (value + 2) % hi
    x[at:at + length] = value
    return x


CASES = [
    # (name, h, bits, generator)
    ("uniform8", 6.0, 8, lambda rng, t: rng.integers(0, 256, 20000, dtype=np.uint8)),
    ("binary", 0.9, 1, lambda rng, t: rng.integers(0, 2, 30000, dtype=np.uint8)),
    ("rct-run-cutoff-1", 5.0, 8, lambda rng, t: _with_run(rng, 5000, 1234, t.cutoffs.rct - 1, 7)),
    ("rct-run-cutoff", 5.0, 8, lambda rng, t: _with_run(rng, 5000, 1234, t.cutoffs.rct, 7)),
    ("rct-run-at-block-edge", 5.0, 8, lambda rng, t: _with_run(rng, 5000, 1023, t.cutoffs.rct, 9)),
    ("apt-dense", 5.0, 8,
     lambda rng, t: np.where(rng.random(6000) < 0.2, 3, rng.integers(0, 256, 6000)).astype(np.uint8)),
    ("biased-nibble", 3.0, 4, lambda rng, t: np.minimum(rng.geometric(0.35, 20000) - 1, 15).astype(np.uint8)),
    ("stuck", 4.0, 8, lambda rng, t: np.full(3000, 200, dtype=np.uint8)),
]


@pytest.mark.parametrize("name,h,bits,gen", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("sizes", [[1 << 20], [1024], [7, 513, 1000], [1, 2, 3]], ids=["one", "1024", "odd", "tiny"])
def test_vectorised_equals_reference(name, h, bits, gen, sizes):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    t = HealthTester(h, bits)
    x = gen(rng, t)
    want = reference(x, t.cutoffs.rct, t.cutoffs.apt, t.cutoffs.window)
    got = run_blocks(t, x, sizes)
    assert got == want


def test_random_streams_agree_with_reference():
    rng = np.random.default_rng(7)
    for trial in range(40):
        h = float(rng.choice([1.0, 2.0, 4.0]))
        hi = int(rng.choice([2, 4, 16]))
        p = rng.dirichlet(np.ones(hi) * 0.5)
        x = rng.choice(hi, size=4000, p=p).astype(np.uint8)
        t = HealthTester(h, 1 if hi == 2 else 4)
        want = reference(x, t.cutoffs.rct, t.cutoffs.apt, t.cutoffs.window)
        sizes = list(rng.integers(1, 700, 5))
        assert run_blocks(t, x, sizes) == want, trial


def test_failure_is_sticky_until_reset():
    t = HealthTester(4.0, 8)
    with pytest.raises(HealthTestFailure) as exc:
        t.check(np.zeros(100, dtype=np.uint8))
    assert exc.value.cutoff == t.cutoffs.rct and exc.value.sample_index == t.cutoffs.rct - 1
    with pytest.raises(PipelineFailed):
        t.check(np.arange(100, dtype=np.uint8))
    assert t.counters().rct_failures == 1 and t.counters().blocks_failed == 1
    t.reset()
    t.check(np.arange(100, dtype=np.uint8))
    assert not t.failed and t.counters().blocks_passed == 1


# --- statistics: the observed side of the cutoffs, against a sample-by-sample count --------------------------------
def _naive_statistics(samples, window):
    runs: dict[int, int] = {}
    length = 0
    for i, x in enumerate(samples):
        length = length + 1 if i and x == samples[i - 1] else 1
        if i + 1 == len(samples) or samples[i + 1] != x:
            runs[length] = runs.get(length, 0) + 1
    apt: dict[int, int] = {}
    for w in range(len(samples) // window):
        block = list(samples[w * window:(w + 1) * window])
        c = block.count(block[0])
        apt[c] = apt.get(c, 0) + 1
    return tuple(sorted(runs.items())), tuple(sorted(apt.items()))


@pytest.mark.parametrize("data,window", [
    ([], 4), ([7], 4), ([1, 1, 1, 2, 2, 3], 2), ([5] * 9, 4), ([0, 1] * 10 + [1] * 5, 8),
    (list(np.random.default_rng(3).integers(0, 4, 5000)), 512),
])
def test_statistics_match_a_sample_by_sample_count(data, window):
    from qrng.health import statistics
    s = statistics(np.array(data, dtype=np.uint8), window)
    runs, apt = _naive_statistics(data, window)
    assert (s.run_lengths, s.apt_counts) == (runs, apt)
    assert s.max_run == (runs[-1][0] if runs else 0) and s.max_apt == (apt[-1][0] if apt else 0)
    assert sum(length * k for length, k in s.run_lengths) == len(data)
