"""Golden corrupted logs (tests/system/transparency/golden, made by make_golden.py): each is caught by `qrng audit
verify` with the right reason, exit code and first bad entry; the valid log verifies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


def verify(log: Path, state: Path | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "qrng_cli", "audit", "verify", str(log), "--key", str(GOLDEN / "log.pub"),
           "--witness", str(GOLDEN / "witness.pub"), "--json", *extra]
    if state is not None:
        cmd += ["--state", str(state)]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden(name, tmp_path):
    exp = EXPECTED[name]
    state = None
    if exp.get("state"):
        state = tmp_path / "state"
        shutil.copytree(GOLDEN / "state", state)
    r = verify(GOLDEN / name, state)
    assert r.returncode == exp["rc"], r.stdout + r.stderr
    out = json.loads(r.stdout)
    if exp["rc"] == 0:
        assert out["status"] == "verified" and out["entries"] == 12 and out["cosigners"] == ["witness.test.invalid/w1"]
    else:
        assert out["status"] == exp.get("status", "tampered")
        assert exp["phrase"] in out["error"], out["error"]
        assert out["first_bad_entry"] == exp["index"]


def test_state_is_remembered_and_then_catches_rollback(tmp_path):
    state = tmp_path / "state"
    assert verify(GOLDEN / "valid.log", state).returncode == 0
    assert any(state.iterdir())
    r = verify(GOLDEN / "rolled-back.log", state)
    assert r.returncode == 1 and "rolled back" in json.loads(r.stdout)["error"]


def test_wrong_key_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.pub"
    bad.write_text("not+a+key")
    r = subprocess.run([sys.executable, "-m", "qrng_cli", "audit", "verify", str(GOLDEN / "valid.log"),
                        "--key", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "key" in r.stderr


def test_missing_log_is_an_io_error(tmp_path):
    r = verify(tmp_path / "nope.log")
    assert r.returncode == 2


def test_quorum_can_be_relaxed_explicitly():
    r = verify(GOLDEN / "missing-cosignature.log", None, "--quorum", "0")
    assert r.returncode == 0
