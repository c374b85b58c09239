"""An isolated ceremony workspace per test: its own SoftHSM2 token, TEST-ONLY attestation CA, witness
keys, log keys, and copies of the example scripts pointing at them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass
class Workspace:
    dir: Path
    env: dict[str, str]
    pin: str

    def qrng(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "qrng.cli", *args], capture_output=True, text=True,
                              cwd=self.dir, env={**self.env, **(extra_env or {})}, timeout=300)

    def script(self, name: str) -> Path:
        return self.dir / "ceremonies" / name

    def witness_args(self) -> list[str]:
        return ["--witness", str(self.dir / "w" / "carol.key.pub"), "--witness", str(self.dir / "w" / "dave.key.pub")]

    def keys(self) -> list[str]:
        """Labels of the private keys on the token, as pkcs11-tool sees them."""
        r = subprocess.run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", "qrng-test", "--login",
                            "--pin", self.pin, "-O", "--type", "privkey"], capture_output=True, text=True,
                           env=self.env)
        return sorted(line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                      if line.strip().startswith("label:"))


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    d = tmp_path
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    env.pop("QRNG_CONFIG", None)
    env.pop("QRNG_CEREMONY_TEST_KILL", None)
    pin, so = "246810", "13579111"
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "qrng-test", "--so-pin", so, "--pin", pin],
                   check=True, capture_output=True, env=env)
    (d / "pins.env").write_text(f"QRNG_HSM_USER_PIN={pin}\n")
    q = [sys.executable, "-m", "qrng.cli"]
    subprocess.run([*q, "attestation", "init-simulator", "--dir", str(d / "att")], check=True, capture_output=True)
    (d / "w").mkdir()
    for w in ("carol", "dave"):
        subprocess.run([*q, "audit", "keygen", f"witness.example/{w}", "--witness", "--out", str(d / "w" / f"{w}.key")],
                       check=True, capture_output=True)
    subprocess.run([*q, "audit", "keygen", "bootstrap", "--out", str(d / "log.key")], check=True, capture_output=True)
    shutil.copytree(ROOT / "ceremonies", d / "ceremonies")
    shutil.copytree(ROOT / "policies", d / "policies")
    for pol in (d / "policies").glob("*.yaml"):
        pol.write_text(pol.read_text().replace("../.softhsm/attestation/", "../att/"))
    (d / "ceremonies" / "entropy-simulator.yaml").write_text(
        (d / "ceremonies" / "entropy-simulator.yaml").read_text().replace("../.softhsm/attestation/", "../att/"))
    witness_keys = ("      witness.example/carol: ../w/carol.key\n      witness.example/dave: ../w/dave.key\n")
    profile = (f"    module: {SOFTHSM}\n    token_label: qrng-test\n    env: {{SOFTHSM2_CONF: {conf}}}\n"
               f"    pin: {{source: file, path: ../pins.env}}\n")
    (d / "ceremonies" / "profiles.yaml").write_text(
        "version: 1\nprofiles:\n"
        f"  rehearsal:\n{profile}    log_key: {{hsm_label: audit-log-key}}\n    witness_keys:\n{witness_keys}"
        f"  filekey:\n{profile}    log_key: {{file: ../log.key}}\n    witness_keys:\n{witness_keys}"
        f"  rehearsal-bootstrap:\n{profile}    log_key: {{file: ../log.key}}\n    witness_keys:\n{witness_keys}")
    for s in (d / "ceremonies").glob("*.yaml"):
        s.write_text(s.read_text().replace("output: ../out/", "output: ../out/"))
    return Workspace(d, env, pin)
