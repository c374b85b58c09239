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
