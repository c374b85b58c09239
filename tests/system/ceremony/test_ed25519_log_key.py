"""The audit-log key as Ed25519 inside SoftHSM2 (CKM_EDDSA): the audit-key ceremony generates it in the HSM, a later
ceremony's checkpoints are signed by it as C2SP signed-note type 0x01 (what public witnesses require), the log
verifies offline and is published as tiles and verified from there; ECDSA P-256 (type 0x02) stays the other
supported log key (the demo's)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

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
    from tests.unit.ceremony.conftest import edit_yaml  # the origin: the URL prefix the tiles are served under
    edit_yaml(ws.dir / "ceremonies" / "profiles.yaml",
              lambda d: d["profiles"]["rehearsal"].update(log_url_prefix="logs.example.org/qrng"))
    r = ws.qrng("ceremony", "run", str(ws.script("probe.yaml")), "--profile", "rehearsal")
    assert r.returncode == 0, r.stderr + r.stdout[-2000:]
    out = ws.dir / "out" / "probe-2026"
    vkey = (out / "log.pub").read_text().strip()
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x01  # type 0x01: Ed25519, from the HSM key
    r = ws.qrng("audit", "verify", str(out / "audit.log"), "--key", str(out / "log.pub"), *ws.witness_args(), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["origin"] == "logs.example.org/qrng/probe-2026", r.stderr
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
    r = ws.qrng("audit", "verify", str(tiles), "--key", str(out / "log.pub"), *ws.witness_args())
    assert r.returncode == 0, r.stderr
    r = ws.qrng("audit", "verify", str(tiles), "--key", str(out / "log.pub"))  # the recorded quorum, unchecked
    assert r.returncode == 4 and "NOT CHECKED  Witness cosignatures" in r.stdout, r.stdout + r.stderr


def test_a_witness_key_in_the_hsm(ws: Workspace, tmp_path):
    """`qrng witness serve` signs cosignature/v1 with an Ed25519 key held in SoftHSM2 (CKM_EDDSA), opened through
    a ceremony profile; the cosignature verifies with the public key read back from the token."""
    import urllib.request

    from tests.netwait import free_port, wait_for_port
    from transparency.note import Checkpoint, generate_ed25519, load_ed25519_signer, sign_note, verify_note
    gen = subprocess.run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "qrng-test",
                          "--login", "--pin", ws.pin, "--keypairgen", "--key-type", "EC:edwards25519", "--label",
                          "witness-key", "--id", "0a0b"], capture_output=True, env=ws.env)
    assert gen.returncode == 0, gen.stderr
    log_priv, log_vkey = generate_ed25519("hsm-witness.example/log")
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "witness", "serve", "--listen", f"127.0.0.1:{port}",
                          "--hsm-profile", str(ws.dir / "ceremonies" / "profiles.yaml"), "--profile", "rehearsal",
                          "--key-label", "witness-key", "--name", "witness.example/hsm", "--log", log_vkey,
                          "--state", str(tmp_path / "state")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=ws.env)
    try:
        wait_for_port(port, 30, alive=lambda: p.poll() is None)
        cp = Checkpoint("hsm-witness.example/log", 0, bytes.fromhex(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))  # the empty tree
        note = sign_note(cp.text(), [load_ed25519_signer(log_priv)])
        req = urllib.request.Request(f"http://127.0.0.1:{port}/add-checkpoint", data=f"old 0\n\n{note}".encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            line = r.read().decode()
    finally:
        p.terminate()
        p.wait(timeout=10)
    pem = subprocess.run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "qrng-test",
                          "--read-object", "--type", "pubkey", "--label", "witness-key"], capture_output=True,
                         env=ws.env)
    from cryptography.hazmat.primitives import serialization

    from transparency.note import hsm_cosigner
    der = serialization.load_pem_public_key(pem.stdout).public_bytes(serialization.Encoding.DER,
                                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    key = hsm_cosigner("witness.example/hsm", der, lambda m: b"").verifier
    _, ok = verify_note(note + line, [key])
    assert [v.name for v in ok] == ["witness.example/hsm"]


def _certificate_for(spki: bytes, path) -> None:
    """A TEST-ONLY certificate for a public key held in the HSM, issued by a throw-away CA made here (in production
    a ceremony's issue_certificate step issues it)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    ca = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TEST-ONLY beacon (HSM key)")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TEST-ONLY throw-away CA")]))
            .public_key(serialization.load_pem_public_key(spki) if spki.startswith(b"-----")
                        else serialization.load_der_public_key(spki)).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(ca, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_beacon_pulses_signed_by_a_key_in_the_hsm(ws: Workspace, tmp_path):
    """`qrng beacon run --hsm-profile ...`: NIST 2.0 pulses (cipher suite 0: RSA PKCS#1 v1.5 with SHA-512) signed
    with an RSA key held in SoftHSM2 verify with the certificate of the key read back from the token."""
    from transparency.note import generate_ed25519
    gen = subprocess.run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "qrng-test",
                          "--login", "--pin", ws.pin, "--keypairgen", "--key-type", "rsa:3072", "--label",
                          "beacon-key", "--id", "0b0c"], capture_output=True, env=ws.env)
    assert gen.returncode == 0, gen.stderr
    pem = subprocess.run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "qrng-test",
                          "--read-object", "--type", "pubkey", "--label", "beacon-key"], capture_output=True,
                         env=ws.env)
    assert pem.returncode == 0, pem.stderr
    _certificate_for(pem.stdout, tmp_path / "beacon.pem")
    log_priv, log_vkey = generate_ed25519("beacon.example/hsm-log")
    (tmp_path / "log.key").write_text(log_priv + "\n")
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\nextractor: {type: sha256}\n")
    r = subprocess.run([sys.executable, "-m", "qrng_cli", "beacon", "run", "--config", str(cfg), "--hsm-profile",
                        str(ws.dir / "ceremonies" / "profiles.yaml"), "--profile", "rehearsal", "--key-label",
                        "beacon-key", "--certificate", str(tmp_path / "beacon.pem"), "--log",
                        str(tmp_path / "beacon.log"), "--log-key", str(tmp_path / "log.key"), "--state",
                        str(tmp_path / "state"), "--period", "1", "--pulses", "3"], capture_output=True, text=True,
                       env=ws.env, timeout=120)
    assert r.returncode == 0 and r.stdout.count("pulse ") == 3, r.stderr
    v = ws.qrng("beacon", "verify", str(tmp_path / "beacon.log"), "--certificate", str(tmp_path / "beacon.pem"),
                "--log-key", log_vkey, "--json")
    assert v.returncode == 4 and json.loads(v.stdout)["pulses"] == 3, v.stderr  # no --policy: quorum not checked
    assert json.loads(v.stdout)["witness_quorum"].startswith("not checked")
