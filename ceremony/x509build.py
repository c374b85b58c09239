"""Certificates, CSRs and CRLs whose signatures come from the HSM.

Lint-before-sign (as Let's Encrypt's ceremony tool does): the TBS is built with `cryptography` and signed
by a throw-away key of the same algorithm; that certificate is linted with pkilint. The HSM then signs the
very same TBS bytes; the assembled certificate is linted again, its signature verified, and its TBS must
equal the linted one byte for byte.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos, core
from asn1crypto import crl as acrl
from asn1crypto import csr as acsr
from asn1crypto import keys as akeys
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .errors import StepFailed
from .keys import KeySpec

__all__ = ["Built", "build_crl", "build_csr", "build_certificate", "lint_certificate", "lint_crl", "subject_name"]

_OIDS = {"CN": x509.oid.NameOID.COMMON_NAME, "O": x509.oid.NameOID.ORGANIZATION_NAME,
         "OU": x509.oid.NameOID.ORGANIZATIONAL_UNIT_NAME, "C": x509.oid.NameOID.COUNTRY_NAME,
         "L": x509.oid.NameOID.LOCALITY_NAME, "ST": x509.oid.NameOID.STATE_OR_PROVINCE_NAME}
_ORDER = ("C", "ST", "L", "O", "OU", "CN")

Signer = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Built:
    der: bytes
    tbs: bytes
    lint_findings: tuple[str, ...]


def subject_name(subject: dict[str, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[k], subject[k]) for k in _ORDER if k in subject])


def _throwaway(spec: KeySpec) -> Any:
    if spec.type == "rsa":
        return rsa.generate_private_key(65537, 2048)  # same signature algorithm (sha256WithRSAEncryption)
    if spec.type == "ec":
        return ec.generate_private_key({"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(),
                                        "P-521": ec.SECP521R1()}[spec.curve])
    return ed25519.Ed25519PrivateKey.generate()


def _hash(spec: KeySpec) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    if spec.type == "ed25519":
        return None
    if spec.type == "ec" and spec.curve == "P-384":
        return hashes.SHA384()
    if spec.type == "ec" and spec.curve == "P-521":
        return hashes.SHA512()
    return hashes.SHA256()


def _lint(der: bytes, kind: str) -> tuple[str, ...]:
    from pkilint import loader
    from pkilint.pkix import certificate, crl, extension, name
    from pkilint.validation import ValidationFindingSeverity
    if kind == "crl":
        from pkilint import pkix
        doc = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
        validator = crl.create_pkix_crl_validator_container(
            [pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
             pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS)],
            [crl.create_issuer_validator_container([]), crl.create_validity_validator_container([]),
             crl.create_extensions_validator_container([])])
    else:
        doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "certificate")
        validator = certificate.create_pkix_certificate_validator_container(
            certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
            [certificate.create_issuer_validator_container([]), certificate.create_validity_validator_container(),
             certificate.create_subject_validator_container([]), certificate.create_extensions_validator_container([]),
             certificate.create_spki_validator_container([])])
    findings = []
    serious = []
    for result in validator.validate(doc.root):
        for f in result.finding_descriptions:
            text = f"{f.finding.severity}: {f.finding.code} at {result.node.path}"
            findings.append(text)
            if f.finding.severity in (ValidationFindingSeverity.FATAL, ValidationFindingSeverity.ERROR):
                serious.append(text)
    if serious:
        raise StepFailed(f"pkilint rejects the {kind}: " + "; ".join(serious))
    return tuple(findings)


def lint_certificate(der: bytes) -> tuple[str, ...]:
    return _lint(der, "certificate")


def lint_crl(der: bytes) -> tuple[str, ...]:
    return _lint(der, "crl")


def _sig_alg(spec: KeySpec) -> dict[str, Any]:
    """For the CSR, which has no linted twin; certificates and CRLs copy their linted twin's algorithm."""
    if spec.type == "rsa":
        return {"algorithm": "sha256_rsa", "parameters": core.Null()}  # RFC 4055: parameters are NULL
    if spec.type == "ec":
        return {"algorithm": {"P-256": "sha256_ecdsa", "P-384": "sha384_ecdsa", "P-521": "sha512_ecdsa"}[spec.curve]}
    return {"algorithm": "ed25519"}


def build_certificate(issuer_spec: KeySpec, sign: Signer, subject: x509.Name, issuer: x509.Name,
                      public_der: bytes, serial: int, days: int, ca: bool, path_length: int | None,
                      issuer_public_der: bytes, now: datetime.datetime | None = None,
                      extended_key_usage: tuple[str, ...] = (),
                      subject_alt_names: tuple[tuple[str, str], ...] = ()) -> Built:
    """``extended_key_usage``: server_auth / client_auth (RFC 5280 4.2.1.12); ``subject_alt_names``: ("dns", name)
    and ("ip", address) pairs (4.2.1.6), as TLS peers check them."""
    now = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
    pub = serialization.load_der_public_key(public_der)
    issuer_pub = serialization.load_der_public_key(issuer_public_der)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)  # type: ignore[arg-type]
         .serial_number(serial).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)  # type: ignore[arg-type]
         # RFC 5280 4.2.1.1 lets a self-signed root omit it; pkilint's PKIX profile (and path builders) want it
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pub),  # type: ignore[arg-type]
                        critical=False))
    if extended_key_usage:
        from cryptography.x509.oid import ExtendedKeyUsageOID
        oids = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
                "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}
        b = b.add_extension(x509.ExtendedKeyUsage([oids[u] for u in extended_key_usage]), critical=False)
    if subject_alt_names:
        import ipaddress
        names: list[x509.GeneralName] = [x509.DNSName(v) if k == "dns" else x509.IPAddress(ipaddress.ip_address(v))
                                         for k, v in subject_alt_names]
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    lint_cert = b.sign(_throwaway(issuer_spec), _hash(issuer_spec))
    findings = lint_certificate(lint_cert.public_bytes(serialization.Encoding.DER))
    tbs = lint_cert.tbs_certificate_bytes
    signature = sign(tbs)
    twin = ax509.Certificate.load(lint_cert.public_bytes(serialization.Encoding.DER))
    der = ax509.Certificate({"tbs_certificate": ax509.TbsCertificate.load(tbs),
                             "signature_algorithm": twin["signature_algorithm"].copy(),  # as linted, byte for byte
                             "signature_value": signature}).dump()
    final = x509.load_der_x509_certificate(der)
    if final.tbs_certificate_bytes != tbs:
        raise StepFailed("issued TBS differs from the linted TBS")
    verify_signature(issuer_public_der, final.signature, tbs, issuer_spec)
    lint_certificate(der)
    return Built(der, tbs, findings)


def build_csr(spec: KeySpec, sign: Signer, subject: x509.Name, public_der: bytes) -> Built:
    info = acsr.CertificationRequestInfo({
        "version": "v1", "subject": ax509.Name.load(subject.public_bytes()),
        "subject_pk_info": akeys.PublicKeyInfo.load(public_der), "attributes": []})
    tbs = info.dump()
    der = acsr.CertificationRequest({"certification_request_info": info,
                                     "signature_algorithm": algos.SignedDigestAlgorithm(_sig_alg(spec)),
                                     "signature": sign(tbs)}).dump()
    req = x509.load_der_x509_csr(der)
    if not req.is_signature_valid:
        raise StepFailed("the CSR's signature does not verify")
    return Built(der, tbs, ())


def build_crl(issuer_spec: KeySpec, sign: Signer, issuer: x509.Name, issuer_public_der: bytes, number: int,
              next_update_days: int, now: datetime.datetime | None = None) -> Built:
    now = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
    issuer_pub = serialization.load_der_public_key(issuer_public_der)
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer).last_update(now)
         .next_update(now + datetime.timedelta(days=next_update_days))
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pub),  # type: ignore[arg-type]
                        critical=False)
         .add_extension(x509.CRLNumber(number), critical=False))
    lint_crl_obj = b.sign(_throwaway(issuer_spec), _hash(issuer_spec))
    findings = lint_crl(lint_crl_obj.public_bytes(serialization.Encoding.DER))
    tbs = lint_crl_obj.tbs_certlist_bytes
    twin = acrl.CertificateList.load(lint_crl_obj.public_bytes(serialization.Encoding.DER))
    der = acrl.CertificateList({"tbs_cert_list": acrl.TbsCertList.load(tbs),
                                "signature_algorithm": twin["signature_algorithm"].copy(),
                                "signature": sign(tbs)}).dump()
    final = x509.load_der_x509_crl(der)
    if final.tbs_certlist_bytes != tbs:
        raise StepFailed("issued CRL TBS differs from the linted TBS")
    if not final.is_signature_valid(issuer_pub):  # type: ignore[arg-type]
        raise StepFailed("the CRL's signature does not verify")
    lint_crl(der)
    return Built(der, tbs, findings)


def verify_signature(public_der: bytes, signature: bytes, data: bytes, spec: KeySpec) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding
    pub = serialization.load_der_public_key(public_der)
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            h = _hash(spec)
            assert h is not None
            pub.verify(signature, data, ec.ECDSA(h))
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(signature, data)
    except InvalidSignature:
        raise StepFailed("the HSM's signature does not verify with the key's public key") from None
