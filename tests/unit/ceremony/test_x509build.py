"""The X.509 builder for every key type the policies allow: lint before and after, TBS kept byte for byte,
signatures verify, outer and inner signature algorithms agree. The signer here is a software key with the
same interface the HSM offers (sign the TBS bytes)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ceremony.model import KeySpec
from ceremony.x509build import build_certificate, build_crl, build_csr, subject_name

SPECS = [KeySpec("r", "rsa", size=3072), KeySpec("e", "ec", curve="P-256"), KeySpec("p", "ec", curve="P-384"),
         KeySpec("d", "ed25519")]


def software_key(spec: KeySpec):
    if spec.type == "rsa":
        k = rsa.generate_private_key(65537, spec.size)
        return k, lambda data: k.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if spec.type == "ec":
        k = ec.generate_private_key(ec.SECP256R1() if spec.curve == "P-256" else ec.SECP384R1())
        h = hashes.SHA256() if spec.curve == "P-256" else hashes.SHA384()
        return k, lambda data: k.sign(data, ec.ECDSA(h))
    k = ed25519.Ed25519PrivateKey.generate()
    return k, k.sign


def spki(k) -> bytes:
    return k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("spec", SPECS, ids=[s.describe() for s in SPECS])
def test_root_csr_issue_crl(spec: KeySpec):
    key, sign = software_key(spec)
    root_name = subject_name({"C": "DE", "O": "Test", "CN": "Test Root"})
    root = build_certificate(spec, sign, root_name, root_name, spki(key), 1 << 100, 3650, True, 1, spki(key))
    cert = x509.load_der_x509_certificate(root.der)
    assert cert.tbs_certificate_bytes == root.tbs
    cert.verify_directly_issued_by(cert)
    outer = x509.load_der_x509_certificate(root.der).signature_algorithm_oid
    assert outer == cert.signature_algorithm_oid
    sub_key, sub_sign = software_key(spec)
    csr = x509.load_der_x509_csr(build_csr(spec, sub_sign, subject_name({"CN": "Test Issuing"}), spki(sub_key)).der)
    assert csr.is_signature_valid
    issued = build_certificate(spec, sign, csr.subject, cert.subject, spki(sub_key), 1 << 101, 365, True, 0, spki(key))
    x509.load_der_x509_certificate(issued.der).verify_directly_issued_by(cert)
    crl = x509.load_der_x509_crl(build_crl(spec, sign, cert.subject, spki(key), 1, 30).der)
    assert crl.is_signature_valid(cert.public_key())


def test_a_wrong_signature_is_refused():
    spec = KeySpec("e", "ec", curve="P-256")
    key, _ = software_key(spec)
    other, other_sign = software_key(spec)
    name = subject_name({"CN": "X"})
    from ceremony.errors import StepFailed
    with pytest.raises(StepFailed, match="does not verify"):
        build_certificate(spec, other_sign, name, name, spki(key), 1 << 80, 10, True, None, spki(key))
