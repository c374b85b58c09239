"""issue_certificate: a certificate for a CSR, signed in the HSM by an issuer's key; the issued TBS must equal
the linted one byte for byte; the serial comes from the QRNG."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qrng.errors import ConfigError
from qrng.yaml_input import Fields

from ..errors import StepFailed
from ._certs import certificate_data, certificate_facts, key_ref_violations, profile_violations, step_ref_violations
from .base import (
    OUTPUT_DOCS,
    PHASES,
    Fact,
    PlanView,
    Section,
    SheetRow,
    Step,
    StepContext,
    StepKind,
    StepLog,
    StepResult,
    key_of,
    output_name,
    pem,
    positive,
    qrng_serial,
    sha256_hex,
    subject_text,
)

if TYPE_CHECKING:
    from ..model import Plan


@dataclass(frozen=True)
class Params:
    issuer: str
    issuer_key: str
    csr: str
    profile: str
    validity_days: int
    output: str
    subject_alt_names: tuple[tuple[str, str], ...] = ()  # ("dns", name) / ("ip", address), RFC 5280 4.2.1.6


def _alt_names(f: Fields) -> tuple[tuple[str, str], ...]:
    if not f.has("subject_alt_names"):
        return ()
    import ipaddress
    sf = f.sub("subject_alt_names")
    out: list[tuple[str, str]] = []
    for i, name in enumerate(sf.strings("dns", [])):
        labels = name.split(".")
        if len(labels) < 2:  # pkilint (RFC 5280 4.2.1.6's preferred name syntax) refuses a single label
            raise ConfigError(sf.p(f"dns[{i}]"), f"{name!r} is not a fully qualified DNS name (such as "
                                                 "qrngd.example.org); use ip for a loopback address")
        if len(name) > 253 or not all(0 < len(x) <= 63 and x.replace("-", "").isalnum() and x.isascii()
                                      and not x.startswith("-") and not x.endswith("-") for x in labels):
            raise ConfigError(sf.p(f"dns[{i}]"), f"{name!r} is not a DNS name (letters, digits, '-', dots)")
        out.append(("dns", name.lower()))
    for i, addr in enumerate(sf.strings("ip", [])):
        try:
            out.append(("ip", str(ipaddress.ip_address(addr))))
        except ValueError:
            raise ConfigError(sf.p(f"ip[{i}]"), f"{addr!r} is not an IPv4 or IPv6 address") from None
    sf.done()
    if not out:
        raise ConfigError(f.p("subject_alt_names"), "needs at least one dns or ip name")
    return tuple(out)


def parse(f: Fields) -> Params:
    return Params(f.text("issuer"), f.text("issuer_key"), f.text("csr"), f.text("profile"),
                  positive(f, "validity_days", hi=36525), output_name(f), _alt_names(f))


def check(step: Step, view: PlanView) -> list[str]:
    v = (key_ref_violations(step, view, "issuer_key") + profile_violations(step, view)
         + step_ref_violations(step, view, {"issuer": ("self_signed_root", "issue_certificate"),
                                            "csr": ("csr", "import_csr")}))
    prof = view.policy.cert_profiles.get(step.params.profile)
    if prof is not None and "server_auth" in prof.extended_key_usage and not step.params.subject_alt_names:
        v.append(f"{step.path}.subject_alt_names: a TLS server certificate (profile {step.params.profile}) needs "
                 "the names clients connect to")
    if prof is not None and prof.ca and step.params.subject_alt_names:
        v.append(f"{step.path}.subject_alt_names: not for a CA profile ({step.params.profile})")
    return v


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
                              serial, p.validity_days, prof.ca, prof.path_length, issuer_pub,
                              extended_key_usage=prof.extended_key_usage, subject_alt_names=p.subject_alt_names)
    outputs = {p.output: c.stage(step.id, p.output, pem(built.der, "CERTIFICATE"))}
    data = {"serial": format(serial, "x"), "subject": csr.subject.rfc4514_string(),
            "issuer": issuer.subject.rfc4514_string(), "tbs_sha256": sha256_hex(built.tbs),
            "lint_findings": list(built.lint_findings), "serial_source": "QRNG pipeline", **certificate_data(built.der)}
    if prof.extended_key_usage:
        data["extended_key_usage"] = list(prof.extended_key_usage)
    if p.subject_alt_names:
        data["subject_alt_names"] = [f"{k}:{v}" for k, v in p.subject_alt_names]
    c.progress(f"[{step.id}] certificate {p.output}: serial {data['serial']}")
    c.event(step.id, "certificate.issued", data, files=outputs)
    return outputs, {"output": p.output, "serial": data["serial"]}


def sheet(step: Step, plan: Plan) -> SheetRow:
    p: Params = step.params
    prof = plan.policy.cert_profiles[p.profile]
    subject = subject_text(plan.script.step(p.csr).params.subject)  # csr and import_csr both state it
    issuer = subject_text(plan.script.step(p.issuer).params.subject) \
        if plan.script.step(p.issuer).type == "self_signed_root" else f"the certificate of step {p.issuer}"
    key = plan.script.step(p.issuer_key).params.key
    return SheetRow(("operator", "security_officer"),
                    f"The certificate for '{subject}' is issued from the request of step {p.csr}, checked with "
                    f"pkilint and signed inside the HSM by key '{key.label}' of '{issuer}'.",
                    ("Run the step; read aloud the serial number shown.",),
                    (Fact("Subject", subject), Fact("Issuer", issuer),
                     Fact("Validity", f"{p.validity_days} days (policy {p.profile}: at most {prof.max_validity_days})"),
                     Fact("Basic constraints", f"CA, path length {prof.path_length}" if prof.ca else "not a CA"),
                     *((Fact("Extended key usage", ", ".join(prof.extended_key_usage)),) if prof.extended_key_usage
                       else ()),
                     *((Fact("Subject alternative names", ", ".join(f"{k.upper()}:{v}"
                                                                   for k, v in p.subject_alt_names)),)
                       if p.subject_alt_names else ()),
                     Fact("Screen shows", f"[{step.id}] certificate {p.output}: serial ...")))


def record(log: StepLog) -> Section:
    d = log.data("certificate.issued")
    return Section(f"The certificate {log.results.get('output', '')} was issued for the request's subject, linted, "
                   "and signed inside the HSM; the signed TBS is byte for byte the linted one.", certificate_facts(d))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'issuer': 'the id of the earlier self_signed_root or issue_certificate step whose certificate issues',
    'issuer_key': 'the id of the generate_keypair step whose key signs',
    'csr': 'the id of the earlier csr or import_csr step whose request is certified',
    'profile': 'a certificate profile of the policy (certificates.<profile>)',
    'validity_days': "days from now to notAfter; at most the profile's max_validity_days",
    'subject_alt_names': 'the subjectAltName extension (a TLS server profile needs it)',
    'subject_alt_names.dns': 'DNS names',
    'subject_alt_names.ip': 'IP addresses',
    **OUTPUT_DOCS,
}

KIND = StepKind("issue_certificate", parse,
                lambda p: f"certificate for CSR {p.csr} ({p.profile}, {p.validity_days} days) by {p.issuer}", run,
                outputs=lambda p: (p.output,),
                refs=lambda p: {"issuer": (p.issuer,), "issuer_key": (p.issuer_key,), "csr": (p.csr,)}, check=check,
                phase=PHASES[1], sheet=sheet, record=record, docs=DOCS)
