"""Restart tests (SP 800-90B 3.1.4) and the qrng estimate command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from qrng.estimate.restart import restart_tests


def test_restart_iid_matrix_passes():
    m = np.random.default_rng(5).integers(0, 16, (200, 200)).astype(np.uint8)
    r = restart_tests(m, 4, 3.5)
    assert r.passed and r.h_assessed is not None and r.h_assessed <= 3.5


def test_restart_stuck_restart_fails_sanity_check():
    m = np.random.default_rng(6).integers(0, 16, (200, 200)).astype(np.uint8)
    m[17, :] = 3  # every restart begins the same way: the first samples are predictable
    r = restart_tests(m, 4, 3.5)
    assert not r.passed and "sanity check" in r.reason


def run(*args):
    return subprocess.run([sys.executable, "-m", "qrng_cli", "estimate", *args], capture_output=True, text=True)


def test_cli_json(vectors):
    r = run(str(vectors / "90b" / "c_bias06_1.bin"), "-b", "1", "--json", "-q")
    d = json.loads(r.stdout)
    assert r.returncode == 0 and abs(d["h_assessed"] - 0.524153) < 0.003


def test_cli_rejects_wide_samples(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(bytes([1, 2, 200] * 1000))
    r = run(str(p), "-b", "4")
    assert r.returncode == 2 and "byte 2 holds 200, wider than 4 bit(s)" in r.stderr


def test_cli_packed_bits(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    r = run(str(p), "-b", "1", "--packed", "--json", "-q")
    assert r.returncode == 0 and json.loads(r.stdout)["samples"] == 160000


def test_cli_warns_below_a_million_samples(tmp_path):
    """Issue 10 item 18: 1,500 8-bit samples are assessed, with a warning that SP 800-90B asks for 10^6."""
    f = tmp_path / "small.bin"
    np.random.default_rng(5).integers(0, 256, 1500, dtype=np.uint8).tofile(f)
    r = run(str(f), "-b", "8", "--json")
    assert r.returncode == 0, r.stderr
    assert "warning: 1,500 samples" in r.stderr and "at least 1,000,000" in r.stderr
    assert json.loads(r.stdout)["h_assessed"] > 0


def test_cli_refuses_too_few_samples_for_the_compression_estimate(tmp_path):
    """Regression: 1,500 one-bit samples crashed the compression estimate ("negative dimensions")."""
    f = tmp_path / "tiny.bin"
    np.random.default_rng(5).integers(0, 2, 1500, dtype=np.uint8).tofile(f)
    r = run(str(f), "-b", "1")
    assert r.returncode == 2 and "too few for the non-IID track" in r.stderr and "at least 6,006" in r.stderr
    assert "Traceback" not in r.stderr
