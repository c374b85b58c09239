"""attest_device: the entropy source's signed attestation over a fresh verifier nonce, chained to a manufacturer
root the policy names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from qrng.strictyaml import Fields

from ..errors import StepFailed
from .base import PlanView, Step, StepContext, StepKind, StepResult, sha256_hex, verifier_nonce


@dataclass(frozen=True)
class Params:
    pass


def parse(f: Fields) -> Params:
    return Params()


def check(step: Step, view: PlanView) -> list[str]:
    if view.policy.manufacturer_roots:
        return []
    return [f"{step.path}: attest_device needs attestation.manufacturer_roots in the policy"]


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from qrng.attestation import AttestationError, attest, verify_attestation
    att = c.plan.entropy.attestation
    if att.certificate is None or att.key is None:
        raise StepFailed("the entropy configuration names no attestation certificate and key")
    nonce = verifier_nonce()
    c.event(step.id, "attestation.challenge", {"nonce": nonce.hex()}, actor="verifier")
    c.pipeline.startup()
    h = c.pipeline.health.counters()
    cfg = c.script.entropy_config
    config_digest = sha256_hex(cfg.read_bytes()) if cfg else sha256_hex(b"built-in default")
    health = {"rct_failures": h.rct_failures, "apt_failures": h.apt_failures, "samples_tested": h.samples_tested}
    env = attest(c.pipeline.source, nonce, health, config_digest, att.key, att.certificate)
    roots = [x509.load_pem_x509_certificate(p.read_bytes()) for p in c.plan.policy.manufacturer_roots]
    blob = json.dumps(env, indent=1).encode()
    try:
        r = verify_attestation(env, nonce, roots, c.plan.policy.allow_simulator)
    except AttestationError as exc:
        c.event(step.id, "attestation.failed", {"reason": str(exc), "envelope_sha256": sha256_hex(blob)},
                actor="verifier")
        raise
    outputs = {"attestation.json": c.stage(step.id, "attestation.json", blob)}
    stmt = r.statement
    c.event(step.id, "attestation.verified", {
        "serial": r.serial, "model": stmt["device"]["model"], "simulator": r.simulator,
        "firmware_sha256": stmt["firmware_sha256"], "manufacturer": r.manufacturer.subject.rfc4514_string(),
        "entropy_config_sha256": config_digest,
        "device_certificate_sha256": sha256_hex(r.device_certificate.public_bytes(serialization.Encoding.DER))},
        files=outputs, actor="verifier")
    return outputs, {"serial": r.serial, "statement_sha256": sha256_hex(blob), "simulator": r.simulator}


KIND = StepKind("attest_device", parse, lambda p: "verify the entropy source's signed attestation with a fresh nonce",
                run, outputs=lambda p: ("attestation.json",), check=check)
