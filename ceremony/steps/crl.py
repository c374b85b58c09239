"""crl: the issuer's (initial) certificate revocation list, signed in the HSM and linted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qrng.yaml_input import Fields

from ._certs import colons, crl_data, dn, key_ref_violations, step_ref_violations
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
)

if TYPE_CHECKING:
    from ..model import Plan


@dataclass(frozen=True)
class Params:
    issuer: str
    issuer_key: str
    next_update_days: int
    output: str


def parse(f: Fields) -> Params:
    return Params(f.text("issuer"), f.text("issuer_key"), positive(f, "next_update_days", hi=3660), output_name(f))


def check(step: Step, view: PlanView) -> list[str]:
    return key_ref_violations(step, view, "issuer_key") + step_ref_violations(
        step, view, {"issuer": ("self_signed_root", "issue_certificate")})


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    from cryptography import x509

    from ..x509build import build_crl
    p: Params = step.params
    spec, kid, issuer_pub = key_of(c, p.issuer_key)
    issuer = x509.load_pem_x509_certificate((c.out / c.results[p.issuer]["output"]).read_bytes())
    built = build_crl(spec, lambda tbs: c.hsm.sign(spec, kid, tbs), issuer.subject, issuer_pub, 1, p.next_update_days)
    outputs = {p.output: c.stage(step.id, p.output, pem(built.der, "X509 CRL"))}
    c.event(step.id, "crl.issued", {"issuer": issuer.subject.rfc4514_string(), "crl_number": 1,
                                    "lint_findings": list(built.lint_findings), **crl_data(built.der)}, files=outputs)
    return outputs, {"output": p.output}


def sheet(step: Step, plan: Plan) -> SheetRow:
    p: Params = step.params
    key = plan.script.step(p.issuer_key).params.key
    return SheetRow(("operator",),
                    f"The first certificate revocation list of the certificate of step {p.issuer} (revoking nothing) "
                    f"is signed inside the HSM by key '{key.label}'.", ("Run the step.",),
                    (Fact("Next update", f"in {p.next_update_days} days"), Fact("CRL number", "1"),
                     Fact("Written to", p.output)))


def record(log: StepLog) -> Section:
    d = log.data("crl.issued")
    findings = d.get("lint_findings") or []
    return Section(f"The initial CRL of {dn(d.get('issuer', ''))} (revoking nothing) was signed inside the HSM and "
                   "linted.",
                   (Fact("Issuer", dn(d.get("issuer", ""))), Fact("CRL number", str(d.get("crl_number", ""))),
                    Fact("This update", str(d.get("this_update", ""))),
                    Fact("Next update", str(d.get("next_update", ""))),
                    Fact("SHA-256 fingerprint", colons(d.get("fingerprint_sha256", "")), digest=True),
                    Fact("pkilint", "no finding" if not findings else "; ".join(map(str, findings)))))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'issuer': 'the id of the earlier self_signed_root or issue_certificate step whose certificate issues the CRL',
    'issuer_key': 'the id of the generate_keypair step whose key signs',
    'next_update_days': 'days from now to nextUpdate',
    **OUTPUT_DOCS,
}

KIND = StepKind("crl", parse, lambda p: f"CRL by {p.issuer}, next update in {p.next_update_days} days", run,
                outputs=lambda p: (p.output,), refs=lambda p: {"issuer": (p.issuer,), "issuer_key": (p.issuer_key,)},
                check=check, phase=PHASES[1], sheet=sheet, record=record, docs=DOCS)
