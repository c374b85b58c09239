"""A second, independent token (issue 10 item 21): openCryptoki's software token, run privately (its own mount
and IPC namespaces, tests/system/hsm/ock_private.sh) so the machine's openCryptoki state is never touched. It
differs from SoftHSM2 as real HSMs do: no EC, C_SeedRandom unsupported, a factory SO PIN to change, the user PIN
flagged to be changed. docs/hsm-compatibility.md records what each token offers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import Workspace

ROOT = Path(__file__).resolve().parents[3]
OCK = "/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0"
PRIVATE = ROOT / "tests" / "system" / "hsm" / "ock_private.sh"

pytestmark = pytest.mark.skipif(not Path(OCK).exists() or not shutil.which("pkcsslotd") or os.geteuid() != 0,
                                reason="needs Debian's opencryptoki (make provision) and root for namespaces")


def _ock(state: Path, *cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(["bash", str(PRIVATE), str(state), *cmd], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


@pytest.fixture()
def ock(ws: Workspace, tmp_path: Path) -> tuple[Workspace, Path]:
    state = tmp_path / "ock-state"
    pins = ws.dir / "ock-pins.env"
    pins.write_text("QRNG_HSM_USER_PIN=24681357\nQRNG_HSM_SO_PIN=13572468\n")
    pins.chmod(0o600)
    r = _ock(state, sys.executable, str(ROOT / "scripts" / "init_token.py"), OCK, "qrng-ock", str(pins),
             "--slot", "3", "--factory-so-pin", "87654321")
    assert r.returncode == 0, r.stderr
    prof = yaml.safe_load(ws.script("profiles.yaml").read_text())
    prof["profiles"]["ock"] = {"module": OCK, "token_label": "qrng-ock",
                               "pin": {"source": "file", "path": "../ock-pins.env"}, "log_key": {"file": "../log.key"},
                               "witness_keys": prof["profiles"]["filekey"]["witness_keys"]}
    ws.script("profiles.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return ws, state


def _step(doc, sid):
    return next(s for s in doc["steps"] if s["id"] == sid)


def test_rsa_ceremony_on_opencryptoki(ock):
    ws, state = ock

    def change(d):
        d.update(ceremony="ock-rsa-2026", output="../out/ock-rsa-2026")
        d["steps"] = [s for s in d["steps"] if s["id"] != "estimate"]
        _step(d, "entropy")["samples"] = 262144
        _step(d, "root-key")["key"] = {"label": "ock-root", "type": "rsa", "size": 3072}
        _step(d, "int-key")["key"] = {"label": "ock-issuing", "type": "rsa", "size": 3072}
    script = ws.derive("root-ca.yaml", "ock-rsa.yaml", change)
    r = _ock(state, sys.executable, "-m", "qrng_cli", "ceremony", "run", str(script), "--profile", "ock",
             cwd=ws.dir, env=ws.env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    out = ws.dir / "out" / "ock-rsa-2026"
    seeded = [line for line in (out / "audit.log").read_text().splitlines() if '"hsm.seed' in line]
    assert seeded and '"hsm.seed_refused"' in seeded[0]  # openCryptoki: CKR_RANDOM_SEED_NOT_SUPPORTED, logged
    v = ws.qrng("ceremony", "verify", str(out), *ws.auditor_args(out))
    assert v.returncode == 0, v.stderr
    chain = subprocess.run(["openssl", "verify", "-CAfile", str(out / "root-ca.pem"), str(out / "issuing-ca.pem")],
                           capture_output=True, text=True)
    assert chain.returncode == 0, chain.stdout + chain.stderr


def test_ec_on_opencryptoki_is_refused_before_anything_happens(ock):
    ws, state = ock
    script = ws.derive("audit-key.yaml", "ock-ec.yaml", lambda d: d.update(output="../out/ock-ec"))
    r = _ock(state, sys.executable, "-m", "qrng_cli", "ceremony", "run", str(script), "--profile", "ock",
             cwd=ws.dir, env=ws.env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "does not offer CKM_EC_KEY_PAIR_GEN" in r.stderr and "nothing was touched" in r.stderr
    assert not (ws.dir / "out" / "ock-ec").exists()
