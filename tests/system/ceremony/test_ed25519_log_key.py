"""The audit-log key as Ed25519 inside SoftHSM2 (CKM_EDDSA): the audit-key ceremony generates it in the HSM, a later
ceremony's checkpoints are signed by it as C2SP signed-note type 0x01 (what public witnesses require), the log
verifies offline and is published as tiles and verified from there; ECDSA P-256 (type 0x02) stays the other
supported log key (the demo's)."""

from __future__ import annotations

import base64
import json
import subprocess

from .conftest import Workspace


def test_ed25519_log_key_in_the_hsm(ws: Workspace, tmp_path):
    ws.derive("audit-key.yaml", "audit-key-ed25519.yaml", lambda d: d["steps"][4].update(
        key={"label": "audit-log-key", "type": "ed25519"}))
    r = ws.qrng("ceremony", "run", str(ws.script("audit-key-ed25519.yaml")), "--profile", "rehearsal-bootstrap")
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]

    def probe(d: dict) -> None:
        d["ceremony"] = "probe-2026"
        d["output"] = "../out/probe-2026"
        d["steps"][4]["key"]["label"] = "probe-key"
        d["steps"][5]["keys"] = ["audit-key"]
    ws.derive("audit-key.yaml", "probe.yaml", probe)
    r = ws.qrng("ceremony", "run", str(ws.script("probe.yaml")), "--profile", "rehearsal")
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    out = ws.dir / "out" / "probe-2026"
    vkey = (out / "log.pub").read_text().strip()
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x01  # type 0x01: Ed25519, from the HSM key
    r = ws.qrng("audit", "verify", str(out / "audit.log"), "--key", str(out / "log.pub"), *ws.witness_args(), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["origin"] == "qrng-ceremony/probe-2026", r.stderr
    # the HSM-held Ed25519 public key is the one in log.pub
    pem = subprocess.run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "qrng-test",
                          "--read-object", "--type", "pubkey", "--label", "audit-log-key"], capture_output=True,
                         env=ws.env)
    from cryptography.hazmat.primitives import serialization
    raw = serialization.load_pem_public_key(pem.stdout).public_bytes(serialization.Encoding.Raw,
                                                                      serialization.PublicFormat.Raw)
    assert pem.returncode == 0 and raw == base64.b64decode(vkey.split("+", 2)[2])[1:], pem.stderr
    # published as tiles, verified from there, and cosigned over tlog-witness
    tiles = tmp_path / "tiles"
    assert ws.qrng("audit", "publish", str(out / "audit.log"), str(tiles)).returncode == 0
    r = ws.qrng("audit", "verify", str(tiles), "--key", str(out / "log.pub"))
    assert r.returncode == 0, r.stderr
