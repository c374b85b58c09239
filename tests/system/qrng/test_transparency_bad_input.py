"""Hostile and mistaken input to the transparency commands: each is refused with the documented exit code and a
message naming the file or option, no traceback, and nothing already published is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qrng.lockfile import hold
from transparency.log import AuditLog
from transparency.note import generate_ed25519, load_ed25519_signer


def qrng(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qrng_cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture()
def published(tmp_path):
    priv, pub = generate_ed25519("bad-input.example/log")
    signer = load_ed25519_signer(priv)
    log = tmp_path / "audit.log"
    with AuditLog(log, signer.name, signer) as lg:
        for i in range(5):
            lg.append("s", "a", "e", data={"i": i})
        lg.checkpoint()
    tiles = tmp_path / "tiles"
    assert qrng("audit", "publish", str(log), str(tiles)).returncode == 0
    return log, tiles, priv, pub


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
            and p.name != "lock"}


def test_two_publishers_at_once_one_is_refused(published):
    log, tiles, _, _ = published
    before = snapshot(tiles)
    with hold(tiles / ".publisher" / "lock", "the test's publisher"):
        r = qrng("audit", "publish", str(log), str(tiles))
    assert r.returncode == 2 and "refusing to run a second time" in r.stderr and "Traceback" not in r.stderr
    assert snapshot(tiles) == before


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"size": -1, "offset": 0, "range": [], "edges": {}}',
                                    b'{"size": 5, "offset": 10, "range": ["zz"], "edges": {}, "last_leaf": ""}',
                                    b"\xff\xfe\x00"])
def test_a_damaged_publisher_state_is_named(published, damage):
    log, tiles, _, _ = published
    state = tiles / ".publisher" / "state.json"
    state.write_bytes(damage)
    cp = (tiles / "checkpoint").read_bytes()
    r = qrng("audit", "publish", str(log), str(tiles))
    assert r.returncode == 2 and f"{state}: the publisher's state is damaged" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and (tiles / "checkpoint").read_bytes() == cp


def test_a_log_that_is_not_a_log_is_refused(tmp_path):
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"\xff\xfe garbage\n")
    r = qrng("audit", "publish", str(bad), str(tmp_path / "t"))
    assert r.returncode == 1 and "not JSON" in r.stderr and "Traceback" not in r.stderr
    r = qrng("audit", "verify", str(tmp_path / "nowhere"), "--key", "x+00000000+AQ==")
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,message", [
    (["witness", "collect", "LOG", "--policy", "POLICY", "--timeout", "nan"], "--timeout nan: seconds"),
    (["witness", "collect", "LOG", "--policy", "POLICY", "--timeout", "-1"], "--timeout -1.0: seconds"),
    (["witness", "collect", "LOG", "--policy", "MISSING"], "MISSING: cannot read the policy"),
    (["audit", "verify", "LOG", "--policy", "NOTUTF8"], "NOTUTF8:1: unknown line"),
    (["beacon", "run", "--key", "KEY", "--certificate", "KEY", "--log", "B", "--log-key", "KEY", "--state", "S",
      "--period", "nan"],
     "--period nan: seconds"),
    (["beacon", "run", "--key", "KEY", "--certificate", "KEY", "--log", "B", "--log-key", "KEY", "--state", "S",
      "--pulses", "-3"],
     "--pulses -3: a count"),
    (["witness", "serve", "--listen", "127.0.0.1:0", "--log", "x+00000000+AQ==", "--state", "S"],
     "give --key FILE, or --key-label"),
    (["witness", "serve", "--listen", "localhost", "--key", "KEY", "--log", "x", "--state", "S"],
     "--listen 'localhost': expected HOST:PORT"),
])
def test_bad_options_exit_2_naming_them(published, tmp_path, args, message):
    log, _, priv, pub = published
    (tmp_path / "key").write_text(priv + "\n")
    (tmp_path / "policy").write_text(f"log {pub}\nquorum none\n")
    (tmp_path / "notutf8").write_bytes(b"\xff\xfe\xfd\n")
    subst = {"LOG": str(log), "POLICY": str(tmp_path / "policy"), "MISSING": str(tmp_path / "missing"),
             "NOTUTF8": str(tmp_path / "notutf8"), "KEY": str(tmp_path / "key"), "B": str(tmp_path / "b.log"),
             "S": str(tmp_path / "s")}
    r = qrng(*[subst.get(a, a) for a in args])
    expected = message.replace("MISSING", subst["MISSING"]).replace("NOTUTF8", subst["NOTUTF8"])
    assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "b.log").exists()
