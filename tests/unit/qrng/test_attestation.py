"""Device attestation: a good statement verifies; every way it can be wrong is refused with its reason."""

from __future__ import annotations

import json
import os

import pytest
from cryptography import x509

from qrng.attestation.statement import AttestationError, attest, init_simulator, verify_attestation
from qrng.sources.simulator import Fault, SimulatorConfig, SimulatorSource


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    d = tmp_path_factory.mktemp("att")
    p = init_simulator(d)
    roots = [x509.load_pem_x509_certificate(p["root"].read_bytes())]
    return p, roots


def statement(p, source=None, nonce=b"n" * 32):
    return attest(source or SimulatorSource(), nonce, {"rct_failures": 0}, "cfg", p["key"], p["certificate"])


def test_good_statement_verifies(material):
    p, roots = material
    r = verify_attestation(statement(p), b"n" * 32, roots, allow_simulator=True)
    assert r.simulator and r.serial == "SIM-0001" and "TEST ONLY" in r.manufacturer.subject.rfc4514_string()


def test_init_is_idempotent(material, tmp_path):
    p, _ = material
    again = init_simulator(p["root"].parent)
    assert again["root"].read_bytes() == p["root"].read_bytes()


def _other_roots(tmp_path):
    q = init_simulator(tmp_path / "other")
    return [x509.load_pem_x509_certificate(q["root"].read_bytes())]


CASES = [
    ("tampered", lambda p, r, t: (statement(p, SimulatorSource(SimulatorConfig(faults=(Fault("tamper", 0),)))), r),
     "tamper, F5"),
    ("replayed nonce", lambda p, r, t: (statement(p, nonce=b"old" * 10 + b"xx"), r), "nonce does not match"),
    ("untrusted root", lambda p, r, t: (statement(p), _other_roots(t)), "not a trusted manufacturer root"),
    ("forged signature", lambda p, r, t: ({**statement(p), "signatures": [{"keyid": "", "sig": "AAAA"}]}, r),
     "no envelope signature verifies"),
    ("changed payload", lambda p, r, t: (_change_payload(statement(p)), r), "no envelope signature verifies"),
]


def _change_payload(env):
    import base64
    body = json.loads(base64.b64decode(env["payload"]))
    body["device"]["serial"] = "SIM-9999"
    return {**env, "payload": base64.b64encode(json.dumps(body).encode()).decode()}


@pytest.mark.parametrize("name,make,phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_statements_are_refused(material, tmp_path, name, make, phrase):
    p, roots = material
    env, trusted = make(p, roots, tmp_path)
    with pytest.raises(AttestationError, match=phrase):
        verify_attestation(env, b"n" * 32, trusted, allow_simulator=True)


def test_policy_can_forbid_simulators(material):
    p, roots = material
    with pytest.raises(AttestationError, match="forbids simulators"):
        verify_attestation(statement(p), b"n" * 32, roots, allow_simulator=False)


def test_non_attesting_source_says_so(material, tmp_path):
    from qrng.sources.device import DeviceSource
    p, _ = material
    with pytest.raises(AttestationError, match="cannot attest"):
        attest(DeviceSource("/dev/urandom", 7.0), os.urandom(32), {}, "", p["key"], p["certificate"])


def test_a_second_serial_is_issued_by_the_ca_already_there(tmp_path):
    """Regression: another --serial in a folder made a new CA over the old one, orphaning every device certificate
    it had issued (the USB EMULATOR's among them). The CA stays; both devices attest under it."""
    first = init_simulator(tmp_path)
    root = first["root"].read_bytes()
    second = init_simulator(tmp_path, "SIM-0002")
    assert second["root"].read_bytes() == root and first["certificate"].exists()
    roots = [x509.load_pem_x509_certificate(root)]
    for p, serial in ((first, "SIM-0001"), (second, "SIM-0002")):
        r = verify_attestation(statement(p, SimulatorSource(SimulatorConfig(serial=serial))), b"n" * 32, roots,
                               allow_simulator=True)
        assert r.serial == serial


@pytest.mark.parametrize("damaged", ["test-manufacturer-ca.pem", "test-manufacturer-ca.key"])
def test_a_damaged_ca_is_named_never_replaced(tmp_path, capsys, damaged):
    import qrng_cli
    init_simulator(tmp_path)
    (tmp_path / damaged).write_bytes(b"\xff\xfe not PEM")
    code = qrng_cli.main(["attestation", "init-simulator", "--dir", str(tmp_path), "--serial", "SIM-0002"])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / damaged}: not" in err and "damaged" in err and "Traceback" not in err, err
    assert (tmp_path / damaged).read_bytes() == b"\xff\xfe not PEM" and not (tmp_path / "device-SIM-0002.pem").exists()
