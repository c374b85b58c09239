"""Real ceremonies on SoftHSM2 with the simulator: the chain verifies with OpenSSL, the root key signs
through OpenSSL's pkcs11 engine, the log verifies offline; bad input stops the run with a clear message
before the HSM is touched where that is possible; kill -9 at step boundaries then a re-run ends with
exactly the keys the script names."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from .conftest import Workspace


def run(ws: Workspace, script: str, profile: str, *extra: str, kill: str | None = None):
    env = {"QRNG_CEREMONY_TEST_KILL": kill} if kill else None
    return ws.qrng("ceremony", "run", str(ws.script(script)), "--profile", profile, "--json", *extra, extra_env=env)


def final_json(r) -> dict:
    return json.loads(r.stdout[r.stdout.rindex("\n{") + 1:] if "\n{" in r.stdout else r.stdout)


def test_root_ca_ceremony_end_to_end(ws: Workspace):
    t = time.perf_counter()
    r = run(ws, "audit-key.yaml", "rehearsal-bootstrap")
    assert r.returncode == 0, r.stderr
    r = run(ws, "root-ca.yaml", "rehearsal")
    elapsed = time.perf_counter() - t
    assert r.returncode == 0, r.stderr
    out = ws.dir / "out" / "root-ca-2026"
    assert final_json(r)["status"] == "completed"
    # the log: HSM-held ECDSA key (type 0x02) and both witnesses
    assert (out / "log.pub").read_text().split("+")[2].startswith("Aj")  # base64 of 0x02 || SPKI
    v = ws.qrng("audit", "verify", str(out / "audit.log"), "--key", str(out / "log.pub"), *ws.witness_args())
    assert v.returncode == 0 and "cosigned by witness.example/carol, witness.example/dave" in v.stdout, v.stderr
    cv = ws.qrng("ceremony", "verify", str(out), *ws.auditor_args(out))
    assert cv.returncode == 0 and "2 provenance statements" in cv.stdout, cv.stderr
    assert "1 extraction(s) re-run from the retained samples" in cv.stdout
    raw = out / "entropy-raw.bin"  # an auditor's re-run catches retained samples that were swapped
    saved = raw.read_bytes()
    raw.write_bytes(bytes([saved[0] ^ 1]) + saved[1:])
    bad = ws.qrng("ceremony", "verify", str(out), *ws.auditor_args(out))
    assert bad.returncode == 1 and "entropy-raw.bin does not match" in bad.stderr
    raw.write_bytes(saved)
    # OpenSSL verifies the chain and the CRL
    ov = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", out / "root-ca.pem", out / "issuing-ca.pem"],
                        capture_output=True, text=True)
    assert ov.returncode == 0 and ": OK" in ov.stdout
    crl = subprocess.run(["openssl", "crl", "-in", out / "root-ca.crl", "-noout", "-CAfile", out / "root-ca.pem"],
                         capture_output=True, text=True)
    assert "verify OK" in crl.stdout + crl.stderr
    # the root key signs through OpenSSL's pkcs11 engine (libp11) and the signature verifies
    msg = ws.dir / "msg.txt"
    msg.write_text("hello from the HSM")
    uri = f"pkcs11:token=qrng-test;object=root-ca-2026;type=private;pin-value={ws.pin}"
    sig = ws.dir / "msg.sig"
    s = subprocess.run(["openssl", "dgst", "-engine", "pkcs11", "-keyform", "engine", "-sha384", "-sign", uri,
                        "-out", sig, msg], capture_output=True, text=True, env={**ws.env, "OPENSSL_CONF": "/dev/null"})
    assert s.returncode == 0, s.stderr
    vv = subprocess.run(["openssl", "dgst", "-sha384", "-verify", out / "root-ca-2026.pub.pem", "-signature", sig, msg],
                        capture_output=True, text=True)
    assert "Verified OK" in vv.stdout
    # exactly the keys the scripts name, born in the HSM
    assert ws.keys() == ["audit-log-key", "issuing-ca-2026", "root-ca-2026"]
    log = [json.loads(x) for x in (out / "audit.log").read_text().splitlines() if '"kind":"entry"' in x]
    gen = [e for e in log if e["event"] == "key.generated"]
    assert len(gen) == 2 and all(e["data"]["attributes_read_back"]["LOCAL"] is True and
                                 e["data"]["attributes_read_back"]["NEVER_EXTRACTABLE"] is True for e in gen)
    att = next(e["data"] for e in log if e["event"] == "attestation.verified")  # issue 12: over USB, the EMULATOR
    assert att["transport"] == "USB" and att["serial"] == "EMU-0001" and att["simulator"] is True
    assert att["firmware_accepted_by"] == "transparency log" and att["counter"] >= 1
    serials = [e["data"]["serial"] for e in log if e["event"] == "certificate.issued"]
    assert len(serials) == 2 and all(len(s) >= 30 for s in serials)
    html = (out / "transcript.html").read_text()  # the papers themselves: tests/system/ceremony/test_papers.py
    assert "SIMULATOR" in html and "Sign-off" in html and "witness.example/dave" in html
    assert (out / "transcript.pdf").read_bytes().startswith(b"%PDF-")
    print(f"\naudit-key + root-CA ceremonies on SoftHSM2: {elapsed:.1f} s")
    # running again changes nothing
    before = (out / "audit.log").read_bytes()
    again = run(ws, "root-ca.yaml", "rehearsal")
    assert again.returncode == 0 and (out / "audit.log").read_bytes() == before


def test_existing_key_label_is_refused_before_any_step(ws: Workspace):
    assert run(ws, "audit-key.yaml", "rehearsal-bootstrap").returncode == 0
    r = run(ws, "audit-key.yaml", "rehearsal-bootstrap", "--output", str(ws.dir / "out" / "second"))
    # issue 10 item 16: a refusal before any step exits 2 and leaves no folder behind
    assert r.returncode == 2 and "a key labelled 'audit-log-key' already exists" in r.stderr
    assert "nothing was touched" in r.stderr and not (ws.dir / "out" / "second").exists()
    assert ws.keys() == ["audit-log-key"]


def test_existing_output_file_stops_before_the_hsm(ws: Workspace):
    out = ws.dir / "out" / "audit-key-2026"
    out.mkdir(parents=True)
    (out / "entropy-raw.bin").write_bytes(b"precious")
    r = run(ws, "audit-key.yaml", "rehearsal-bootstrap")
    assert r.returncode == 2 and "already exists; outputs are never overwritten" in r.stderr
    assert "nothing was touched" in r.stderr and (out / "entropy-raw.bin").read_bytes() == b"precious"
    assert ws.keys() == []


def step(doc: dict, step_id: str) -> dict:
    return next(s for s in doc["steps"] if s["id"] == step_id)


def test_malformed_script_names_the_yaml_path(ws: Workspace):
    bad = ws.derive("audit-key.yaml", "bad.yaml", lambda d: step(d, "audit-key")["key"].update(curve="P-255"))
    r = ws.qrng("ceremony", "run", str(bad), "--profile", "filekey")
    assert r.returncode == 2 and "steps[4].key.curve must be one of P-256, P-384, P-521" in r.stderr
    assert ws.keys() == []


def test_policy_violation_stops_before_the_hsm(ws: Workspace):
    bad = ws.derive("audit-key.yaml", "weak.yaml",
                    lambda d: step(d, "audit-key").update(key={"label": "weak", "type": "rsa", "size": 2048}))
    r = ws.qrng("ceremony", "run", str(bad), "--profile", "filekey")
    assert r.returncode == 2 and "RSA-2048 is not allowed by policy rehearsal" in r.stderr
    assert ws.keys() == []


def test_high_assurance_policy_refuses_the_simulator(ws: Workspace):
    script = ws.derive("audit-key.yaml", "ha.yaml", lambda d: d.update(policy="../policies/high-assurance.yaml"))
    r = ws.qrng("ceremony", "plan", str(script), "--profile", "filekey")
    assert r.returncode == 2
    for phrase in ("forbids the simulator", "EC P-256 is not allowed", "quorum is 3 witnesses", "alpha_log2"):
        assert phrase in r.stderr


def test_tampered_device_stops_the_ceremony(ws: Workspace):
    ws.derive("entropy-simulator.yaml", "entropy-simulator.yaml", lambda d: d["source"].update(faults=["tamper@0"]))
    r = run(ws, "audit-key.yaml", "filekey")
    assert r.returncode == 1 and "tamper, F5" in r.stderr
    out = ws.dir / "out" / "audit-key-2026"
    events = [json.loads(x)["event"] for x in (out / "audit.log").read_text().splitlines() if '"kind":"entry"' in x]
    assert "attestation.failed" in events and "step.failed" in events and "key.generated" not in events
    assert ws.keys() == []


def test_stuck_source_fails_closed_in_the_health_step(ws: Workspace):
    ws.derive("entropy-simulator.yaml", "entropy-simulator.yaml",
              lambda d: d["source"].update(faults=["stuck_at@500000"]))
    r = run(ws, "audit-key.yaml", "filekey")
    assert r.returncode == 1 and "RCT" in r.stderr and ws.keys() == []


STEPS = ["attest", "health", "entropy", "seed", "audit-key", "export", "verify", "signoff"]
# the boundary after every step, and the points inside the steps where a crash is most delicate
BOUNDARIES = ([(s, "checkpointed") for s in STEPS] +
              [("audit-key", "started"), ("audit-key", "completed"), ("audit-key", "placed"),
               ("entropy", "completed"), ("export", "started"), ("signoff", "completed")])


@pytest.mark.parametrize("step,point", BOUNDARIES, ids=[f"{s}-{p}" for s, p in BOUNDARIES])
def test_kill_9_then_rerun(ws: Workspace, step: str, point: str):
    killed = run(ws, "audit-key.yaml", "filekey", kill=f"{step}:{point}")
    assert killed.returncode == -9
    again = run(ws, "audit-key.yaml", "filekey")
    assert again.returncode == 0, again.stderr
    out = ws.dir / "out" / "audit-key-2026"
    assert ws.keys() == ["audit-log-key"]  # exactly one key, never a second
    v = ws.qrng("audit", "verify", str(out / "audit.log"), "--key", str(out / "log.pub"), *ws.witness_args())
    assert v.returncode == 0, v.stderr
    cv = ws.qrng("ceremony", "verify", str(out), *ws.auditor_args(out))
    assert cv.returncode == 0, cv.stderr


def test_rsa_root_and_ed25519_issuing_ca(ws: Workspace):
    """The other key types the default policy allows: RSA-3072 (PKCS#1 v1.5 with SHA-256) and Ed25519 (EdDSA)."""
    def change(d):
        d.update(ceremony="rsa-ed-2026", output="../out/rsa-ed-2026")
        d["steps"] = [s for s in d["steps"] if s["id"] != "estimate"]
        step(d, "entropy")["samples"] = 262144
        step(d, "root-key")["key"] = {"label": "rsa-root", "type": "rsa", "size": 3072}
        step(d, "int-key")["key"] = {"label": "ed-issuing", "type": "ed25519"}
    ws.derive("root-ca.yaml", "rsa-ed.yaml", change)
    r = run(ws, "rsa-ed.yaml", "filekey")
    assert r.returncode == 0, r.stderr
    out = ws.dir / "out" / "rsa-ed-2026"
    from cryptography import x509
    root = x509.load_pem_x509_certificate((out / "root-ca.pem").read_bytes())
    issuing = x509.load_pem_x509_certificate((out / "issuing-ca.pem").read_bytes())
    assert root.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSA_WITH_SHA256
    assert root.public_key().key_size == 3072
    assert issuing.public_key().__class__.__name__.startswith("Ed25519")
    ov = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", out / "root-ca.pem", out / "issuing-ca.pem"],
                        capture_output=True, text=True)
    assert ov.returncode == 0, ov.stdout + ov.stderr
    assert ws.keys() == ["ed-issuing", "rsa-root"]
    v = ws.qrng("ceremony", "verify", str(out), *ws.auditor_args(out))
    assert v.returncode == 0, v.stderr


def test_two_runs_at_once_the_second_refuses_naming_the_first(ws: Workspace):
    """Issue 10 item 2: a second run of the same ceremony, started while the first holds the folder, refuses at
    once naming the holder; the first completes and its log verifies (no interleaved entries)."""
    import subprocess
    import sys
    out = ws.dir / "out" / "root-ca-2026"
    first = subprocess.Popen([sys.executable, "-m", "qrng_cli", "ceremony", "run", str(ws.script("root-ca.yaml")),
                              "--profile", "filekey"], cwd=ws.dir, env=ws.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lock = out / ".lock"
            if lock.exists() and f'"pid": {first.pid}' in lock.read_text():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the first run never took the folder's lock")
        second = ws.qrng("ceremony", "run", str(ws.script("root-ca.yaml")), "--profile", "filekey")
        assert second.returncode == 2, second.stderr
        assert f"is in use by pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    v = ws.qrng("audit", "verify", str(out / "audit.log"), "--key", str(out / "log.pub"), *ws.witness_args())
    assert v.returncode == 0, v.stderr
