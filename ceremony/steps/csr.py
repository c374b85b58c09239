"""csr: a certificate signing request signed by a key in the HSM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qrng.yaml_input import Fields

from ._certs import dn, key_ref_violations
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
    sha256_hex,
    subject_text,
)

if TYPE_CHECKING:
    from ..model import Plan


@dataclass(frozen=True)
class Params:
    key: str
    subject: dict[str, str]
    output: str


def parse(f: Fields) -> Params:
    return Params(f.text("key"), parse_subject(f, "subject"), output_name(f))


def check(step: Step, view: PlanView) -> list[str]:
    return key_ref_violations(step, view, "key")


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    from ..x509build import build_csr, subject_name
    p: Params = step.params
    spec, kid, pub = key_of(c, p.key)
    built = build_csr(spec, lambda tbs: c.hsm.sign(spec, kid, tbs), subject_name(p.subject), pub)
    outputs = {p.output: c.stage(step.id, p.output, pem(built.der, "CERTIFICATE REQUEST"))}
    c.event(step.id, "csr.created", {"subject": subject_name(p.subject).rfc4514_string(),
                                     "sha256": sha256_hex(built.der)}, files=outputs)
    return outputs, {"output": p.output}


def sheet(step: Step, plan: Plan) -> SheetRow:
    p: Params = step.params
    key = plan.script.step(p.key).params.key
    return SheetRow(("operator",),
                    f"A certificate signing request for '{subject_text(p.subject)}' is signed inside the HSM by key "
                    f"'{key.label}'.", ("Run the step.",),
                    (Fact("Subject", subject_text(p.subject)), Fact("Key", f"{key.label} ({key.describe()})"),
                     Fact("Written to", p.output)))


def record(log: StepLog) -> Section:
    d = log.data("csr.created")
    return Section(f"A certificate signing request for {dn(d.get('subject', ''))} was signed inside the HSM.",
                   (Fact("Subject", dn(d.get("subject", ""))),))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'key': 'the id of the generate_keypair step whose key the request is for (and signs it)',
    **SUBJECT_DOCS,
    **OUTPUT_DOCS,
}

KIND = StepKind("csr", parse, lambda p: f"CSR CN={p.subject['CN']} signed by key of {p.key}", run,
                outputs=lambda p: (p.output,), refs=lambda p: {"key": (p.key,)}, check=check, phase=PHASES[1],
                sheet=sheet, record=record, docs=DOCS)
