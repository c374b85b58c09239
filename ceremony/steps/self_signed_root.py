"""self_signed_root: a self-signed root certificate signed in the HSM, linted with pkilint before signing (on a
throw-away key with an identical TBS) and after; the serial comes from the QRNG."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qrng.yaml_input import Fields

from ._certs import certificate_data, certificate_facts, key_ref_violations, profile_violations
from .base import (
    OUTPUT_DOCS,
    PHASES,
    SUBJECT_DOCS,
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
    parse_subject,
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
    key: str
    subject: dict[str, str]
    validity_days: int
    profile: str
    output: str


def parse(f: Fields) -> Params:
    return Params(f.text("key"), parse_subject(f, "subject"), positive(f, "validity_days", hi=36525),
                  f.text("profile"), output_name(f))


def check(step: Step, view: PlanView) -> list[str]:
    return key_ref_violations(step, view, "key") + profile_violations(step, view)


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    from ..x509build import build_certificate, subject_name
    p: Params = step.params
    spec, kid, pub = key_of(c, p.key)
    prof = c.plan.policy.cert_profiles[p.profile]
    name = subject_name(p.subject)
    serial = qrng_serial(c)
    built = build_certificate(spec, lambda tbs: c.hsm.sign(spec, kid, tbs), name, name, pub, serial,
                              p.validity_days, prof.ca, prof.path_length, pub)
    outputs = {p.output: c.stage(step.id, p.output, pem(built.der, "CERTIFICATE"))}
    data = {"serial": format(serial, "x"), "subject": name.rfc4514_string(), "tbs_sha256": sha256_hex(built.tbs),
            "lint": "pkilint PKIX: no error before or after signing", "lint_findings": list(built.lint_findings),
            "serial_source": "QRNG pipeline", **certificate_data(built.der)}
    c.progress(f"[{step.id}] certificate {p.output}: serial {data['serial']}")
    c.event(step.id, "certificate.issued", data, files=outputs)
    return outputs, {"output": p.output, "serial": data["serial"]}


def sheet(step: Step, plan: Plan) -> SheetRow:
    p: Params = step.params
    prof = plan.policy.cert_profiles[p.profile]
    key = plan.script.step(p.key).params.key
    return SheetRow(("operator", "security_officer"),
                    f"The root certificate for '{subject_text(p.subject)}' is built, checked with pkilint, and signed "
                    f"inside the HSM by key '{key.label}'. Its serial number comes from the QRNG.",
                    ("Run the step; read aloud the serial number shown.",),
                    (Fact("Subject", subject_text(p.subject)),
                     Fact("Validity", f"{p.validity_days} days (policy {p.profile}: at most {prof.max_validity_days})"),
                     Fact("Basic constraints", f"CA, path length {prof.path_length}" if prof.ca else "not a CA"),
                     Fact("Signing key", f"{key.label} ({key.describe()})"),
                     Fact("Screen shows", f"[{step.id}] certificate {p.output}: serial ...")))


def record(log: StepLog) -> Section:
    d = log.data("certificate.issued")
    return Section(f"The self-signed root certificate {log.results.get('output', '')} was linted with pkilint "
                   "before signing (on an identical TBS) and after, and signed inside the HSM.", certificate_facts(d))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'key': 'the id of the generate_keypair step whose key signs (and is certified)',
    **SUBJECT_DOCS,
    'validity_days': "days from now to notAfter; at most the profile's max_validity_days",
    'profile': 'a certificate profile of the policy (certificates.<profile>)',
    **OUTPUT_DOCS,
}

KIND = StepKind("self_signed_root", parse,
                lambda p: f"self-signed root CN={p.subject['CN']}, {p.validity_days} days, by key of {p.key}", run,
                outputs=lambda p: (p.output,), refs=lambda p: {"key": (p.key,)}, check=check, phase=PHASES[1],
                sheet=sheet, record=record, docs=DOCS)
