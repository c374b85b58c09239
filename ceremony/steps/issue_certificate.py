"""issue_certificate: a certificate for a CSR, signed in the HSM by an issuer's key; the issued TBS must equal
the linted one byte for byte; the serial comes from the QRNG."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qrng.strictyaml import Fields

from ..errors import StepFailed
from ._certs import key_ref_violations, profile_violations, step_ref_violations
from .base import (
    PlanView,
    Step,
    StepContext,
    StepKind,
    StepResult,
    key_of,
    output_name,
    pem,
    positive,
    qrng_serial,
    sha256_hex,
)


@dataclass(frozen=True)
class Params:
    issuer: str
    issuer_key: str
    csr: str
    profile: str
    validity_days: int
    output: str


def parse(f: Fields) -> Params:
    return Params(f.text("issuer"), f.text("issuer_key"), f.text("csr"), f.text("profile"),
                  positive(f, "validity_days", hi=36525), output_name(f))


def check(step: Step, view: PlanView) -> list[str]:
    return (key_ref_violations(step, view, "issuer_key") + profile_violations(step, view)
            + step_ref_violations(step, view, {"issuer": ("self_signed_root", "issue_certificate"),
                                               "csr": ("csr",)}))


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from ..x509build import build_certificate
    p: Params = step.params
    spec, kid, issuer_pub = key_of(c, p.issuer_key)
    issuer = x509.load_pem_x509_certificate((c.out / c.results[p.issuer]["output"]).read_bytes())
    if issuer.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo) != issuer_pub:
        raise StepFailed(f"{p.issuer_key} is not the key of certificate {p.issuer}")
    csr = x509.load_pem_x509_csr((c.out / c.results[p.csr]["output"]).read_bytes())
    if not csr.is_signature_valid:
        raise StepFailed("the CSR's signature does not verify")
    prof = c.plan.policy.cert_profiles[p.profile]
    serial = qrng_serial(c)
    subj_pub = csr.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    built = build_certificate(spec, lambda tbs: c.hsm.sign(spec, kid, tbs), csr.subject, issuer.subject, subj_pub,
                              serial, p.validity_days, prof.ca, prof.path_length, issuer_pub)
    outputs = {p.output: c.stage(step.id, p.output, pem(built.der, "CERTIFICATE"))}
    data = {"serial": format(serial, "x"), "subject": csr.subject.rfc4514_string(),
            "issuer": issuer.subject.rfc4514_string(), "tbs_sha256": sha256_hex(built.tbs),
            "lint_findings": list(built.lint_findings), "serial_source": "QRNG pipeline"}
    c.event(step.id, "certificate.issued", data, files=outputs)
    return outputs, {"output": p.output, "serial": data["serial"]}


KIND = StepKind("issue_certificate", parse,
                lambda p: f"certificate for CSR {p.csr} ({p.profile}, {p.validity_days} days) by {p.issuer}", run,
                outputs=lambda p: (p.output,),
                refs=lambda p: {"issuer": (p.issuer,), "issuer_key": (p.issuer_key,), "csr": (p.csr,)}, check=check)
