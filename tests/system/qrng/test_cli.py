"""The qrng command: output, exit codes, fail-closed behaviour, atomic --out."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qrng.health import cutoffs


def qrng(*args, **kw):
    return subprocess.run([sys.executable, "-m", "qrng_cli", *args], capture_output=True, **kw)


def test_bytes_hex():
    r = qrng("bytes", "32", "--hex", text=True)
    assert r.returncode == 0 and len(r.stdout.strip()) == 64
    int(r.stdout, 16)


@pytest.mark.parametrize("fault", ["stuck_at@2000", "repeating_pattern@2000", "saturation@2000", "supply_failure@10"])
def test_fault_gives_no_output(tmp_path, fault):
    out = tmp_path / "x.bin"
    r = qrng("bytes", "4096", "--out", str(out), "--fault", fault, text=True)
    assert r.returncode == 3 and not out.exists()
    assert "no output produced" in r.stderr
    r = qrng("bytes", "64", "--fault", fault)
    assert r.returncode == 3 and r.stdout == b""


def test_out_refuses_to_overwrite(tmp_path):
    out = tmp_path / "x.bin"
    out.write_bytes(b"keep")
    r = qrng("bytes", "8", "--out", str(out), text=True)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr and out.read_bytes() == b"keep"


def test_health_json_reports_cutoffs_and_counters():
    r = qrng("health", "--samples", "100000", "--json", text=True)
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["state"] == "operational"
    want = cutoffs(d["source"]["claimed_min_entropy"], 8)
    assert (d["cutoffs"]["rct"], d["cutoffs"]["apt"], d["cutoffs"]["window"]) == (want.rct, want.apt, 512)
    assert d["health"]["samples_tested"] == 101024 and d["source"]["simulator"] is True


def test_health_reports_failure_with_exit_3():
    r = qrng("health", "--samples", "100000", "--fault", "stuck_at@50000", text=True)
    assert r.returncode == 3 and "FAILED" in r.stdout and "RCT" in r.stdout


def test_bad_config_names_field(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("drbg:\n  type: des\n")
    r = qrng("bytes", "4", "--config", str(cfg), text=True)
    assert r.returncode == 2 and "drbg.type" in r.stderr


def test_sources_lists_kinds():
    r = qrng("sources", "--json", text=True)
    assert set(json.loads(r.stdout)["kinds"]) == {"simulator", "file", "device", "usb"}


def test_broken_pipe_is_quiet():
    """Issue 10 item 15: `qrng health | head -1` printed a BrokenPipeError traceback."""
    r = subprocess.run(f"{sys.executable} -m qrng_cli health --samples 200000 | head -1", shell=True,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("source:") and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr


def test_a_closed_pipe_is_never_a_success():
    """Issue 19: `qrng bytes ... | head -c 16` exited 0 although most of the bytes were never delivered. It exits
    141 (as a process killed by SIGPIPE would), quietly."""
    r = subprocess.run(f"set -o pipefail; {sys.executable} -m qrng_cli bytes 4000000 --hex | head -c 16",
                       shell=True, capture_output=True, text=True, timeout=120, executable="/bin/bash")
    assert len(r.stdout) == 16 and r.returncode == 141, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "interrupted" in r.stderr
