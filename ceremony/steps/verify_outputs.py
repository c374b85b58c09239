"""verify_outputs: the chain verifies with OpenSSL, CRLs verify with their issuer, every key signs in the HSM and
verifies with its exported public key, and every output matches the digest recorded in the log."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StepFailed
from .base import (
    PHASES,
    Fact,
    Section,
    SheetRow,
    Step,
    StepContext,
    StepKind,
    StepLog,
    StepResult,
    key_of,
)

if TYPE_CHECKING:
    from ..model import Plan


@dataclass(frozen=True)
class Params:
    pass


def _openssl_verify(ca: Path, cert: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    r = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(ca), str(cert)], capture_output=True,
                       text=True, env=env)
    if r.returncode != 0:
        raise StepFailed(f"openssl verify {cert.name}: {r.stdout.strip()} {r.stderr.strip()}")


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    from cryptography import x509

    from ..verify import check_output_digests
    from ..x509build import verify_signature
    checks: list[str] = []
    for s in c.script.steps:
        if s.type == "self_signed_root":
            root = c.out / s.params.output
            _openssl_verify(root, root)
            checks.append(f"openssl verify {root.name}: OK (self-signed)")
        elif s.type == "issue_certificate":
            root, cert = c.out / c.results[s.params.issuer]["output"], c.out / s.params.output
            _openssl_verify(root, cert)
            checks.append(f"openssl verify -CAfile {root.name} {cert.name}: OK")
        elif s.type == "crl":
            issuer = x509.load_pem_x509_certificate((c.out / c.results[s.params.issuer]["output"]).read_bytes())
            crl = x509.load_pem_x509_crl((c.out / s.params.output).read_bytes())
            if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                raise StepFailed(f"CRL {s.params.output} does not verify with its issuer")
            checks.append(f"CRL {s.params.output}: signature OK")
        elif s.type == "generate_keypair":
            spec, kid, pub = key_of(c, s.id)
            msg = b"qrng-ceremony key check " + os.urandom(16)
            verify_signature(pub, c.hsm.sign(spec, kid, msg), msg, spec)
            checks.append(f"key {spec.label}: signs in the HSM, verifies with the exported public key")
    count = check_output_digests(c.out, (c.out / "audit.log").read_bytes())
    checks.append(f"{count} output files match their logged SHA-256 digests")
    c.event(step.id, "outputs.verified", {"checks": checks})
    return {}, {"checks": checks}


def sheet(step: Step, plan: Plan) -> SheetRow:
    return SheetRow(("operator", "security_officer"),
                    "Everything made today is checked: certificate chains with OpenSSL, CRLs with their issuer, each "
                    "key signs inside the HSM and verifies with its exported public key, and every output file "
                    "matches the digest the log recorded.", ("Run the step; every check must say OK.",),
                    (Fact("Screen shows", f"[{step.id}] done"),))


def record(log: StepLog) -> Section:
    checks = log.data("outputs.verified").get("checks", [])
    return Section("The ceremony's outputs were checked; every check passed.",
                   tuple(Fact(f"Check {i}", text) for i, text in enumerate(checks, 1)))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {}

KIND = StepKind("verify_outputs", lambda f: Params(),
                lambda p: "chain verifies, keys sign, outputs match their recorded digests", run, phase=PHASES[2],
                sheet=sheet, record=record, docs=DOCS)
