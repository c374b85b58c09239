"""An isolated ceremony workspace per test: its own SoftHSM2 token, TEST-ONLY attestation CA, witness
keys, log keys, and copies of the example scripts pointing at them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.unit.ceremony.conftest import PlanWorkspace, write_workspace_files

ROOT = Path(__file__).resolve().parents[3]
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass
class Workspace(PlanWorkspace):
    """The unit layer's workspace (scripts, policies, keys made from data) plus a SoftHSM2 token and the CLI."""

    env: dict[str, str] = field(default_factory=dict)
    pin: str = ""

    def qrng(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "qrng_cli", *args], capture_output=True, text=True,
                              cwd=self.dir, env={**self.env, **(extra_env or {})}, timeout=300)

    def witness_args(self) -> list[str]:
        return ["--witness", str(self.dir / "w" / "carol.key.pub"), "--witness", str(self.dir / "w" / "dave.key.pub")]

    def auditor_args(self, out: Path) -> list[str]:
        """The keys an auditor gives `qrng ceremony verify`: the log key (here the copy the run wrote; an auditor
        takes it from the ceremony's published records) and both witnesses' keys."""
        return ["--key", str(out / "log.pub"), *self.witness_args()]

    def keys(self) -> list[str]:
        """Labels of the private keys on the token, as pkcs11-tool sees them."""
        r = subprocess.run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", "qrng-test", "--login",
                            "--pin", self.pin, "-O", "--type", "privkey"], capture_output=True, text=True,
                           env=self.env)
        return sorted(line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                      if line.strip().startswith("label:"))


@pytest.fixture()
def ws(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path)


def make_workspace(d: Path) -> Workspace:
    """A SoftHSM2 token of its own and the unit layer's files in folder ``d``."""
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    env.pop("QRNG_CONFIG", None)
    env.pop("QRNG_CEREMONY_TEST_KILL", None)
    pin, so = "246810", "13579111"
    # the same initialiser set-up uses: PKCS#11 C_InitToken / C_InitPIN with the PINs from a file, not argv
    (d / "pins.env").write_text(f"QRNG_HSM_USER_PIN={pin}\nQRNG_HSM_SO_PIN={so}\n")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "init_token.py"), SOFTHSM, "qrng-test",
                    str(d / "pins.env")], check=True, capture_output=True, env=env)
    q = [sys.executable, "-m", "qrng_cli"]
    subprocess.run([*q, "attestation", "init-simulator", "--dir", str(d / "att")], check=True, capture_output=True)
    (d / "w").mkdir()
    for w in ("carol", "dave"):
        subprocess.run([*q, "audit", "keygen", f"witness.example/{w}", "--witness", "--out", str(d / "w" / f"{w}.key")],
                       check=True, capture_output=True)
    subprocess.run([*q, "audit", "keygen", "bootstrap", "--out", str(d / "log.key")], check=True, capture_output=True)
    write_workspace_files(d, SOFTHSM, "qrng-test", {"SOFTHSM2_CONF": str(conf)})
    return Workspace(d, env, pin)
