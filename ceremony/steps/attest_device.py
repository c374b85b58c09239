"""attest_device: the entropy source's signed attestation over a fresh verifier nonce, chained to a manufacturer
root the policy names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrng.yaml_input import Fields

from ..errors import StepFailed
from .base import (
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
    sha256_hex,
    verifier_nonce,
)

if TYPE_CHECKING:
    from ..model import Plan


@dataclass(frozen=True)
class Params:
    pass


def parse(f: Fields) -> Params:
    return Params()


def recorded_counters(log: bytes) -> dict[str, int]:
    """The attestation counters a ceremony log records, per device serial (the highest of each). Pure."""
    out: dict[str, int] = {}
    for line in log.split(b"\n"):
        if b'"attestation.verified"' not in line:
            continue
        try:
            e = json.loads(line)
            serial, counter = e["data"]["serial"], int(e["data"]["counter"])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(serial, str):
            out[serial] = max(out.get(serial, 0), counter)
    return out


def last_counter(c: StepContext, serial: str) -> int:
    """The highest counter this device showed in this ceremony's log and in the logs of the profile's
    attestation_history folders (read only: nothing is written outside the ceremony's folder)."""
    if not serial:
        return 0
    best = 0
    for folder in (str(c.out), *c.plan.profile.attestation_history):
        log = Path(folder) / "audit.log"
        if log.is_file():
            best = max(best, recorded_counters(log.read_bytes()).get(serial, 0))
    return best


def check(step: Step, view: PlanView) -> list[str]:
    missing = [h for h in view.profile.attestation_history if not (Path(h) / "audit.log").is_file()]
    history = [f"profile {view.profile.name}: attestation_history {h} holds no ceremony log (audit.log)"
               for h in missing]
    if view.policy.manufacturer_roots:
        return history
    return [*history, f"{step.path}: attest_device needs attestation.manufacturer_roots in the policy"]


def run_usb(c: StepContext, step: Step) -> StepResult:
    """A USB device of the qrng-ceremony protocol attests itself: the verifier's nonce goes to the device, the
    device signs (qrng.attestation.usb checks chain, identity, nonce, counter), then the policy's firmware rule (a
    listed digest, or a transparency-log proof checked offline)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from qrng.attestation.statement import AttestationError
    from qrng.attestation.usb import bind_to_source, check_firmware, verify_usb_attestation
    src = c.pipeline.source
    nonce = verifier_nonce()
    c.event(step.id, "attestation.challenge", {"nonce": nonce.hex(), "transport": "USB"}, actor="verifier")
    statement, info_raw = src.attest(nonce)  # type: ignore[attr-defined]
    blob, chain = src.chain()  # type: ignore[attr-defined]
    record = {"transport": "USB (qrng-ceremony USB protocol v1)", "nonce": nonce.hex(),
              "statement": statement.encode().hex(), "device_info": info_raw.hex(),
              "chain_pem": [x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM).decode()
                            for d in chain]}
    out_blob = json.dumps(record, indent=1).encode()
    roots = [x509.load_pem_x509_certificate(p.read_bytes()) for p in c.plan.policy.manufacturer_roots]
    proof_path = c.plan.entropy.attestation.firmware_proof
    try:
        last = last_counter(c, getattr(getattr(src, "device_info", None), "serial", ""))
        r = verify_usb_attestation(statement, info_raw, chain, nonce, roots, c.plan.policy.allow_simulator,
                                   last_counter=last)  # a counter that goes back fails: a replayed statement
        bind_to_source(r, getattr(src, "device_info", None))  # the identity the pipeline uses is the attested one
        firmware = check_firmware(r.info, c.plan.policy.firmware, proof_path.read_text() if proof_path else None) \
            if c.plan.policy.firmware.active else {"firmware_accepted_by": "no firmware rule in the policy"}
    except (AttestationError, OSError) as exc:
        c.event(step.id, "attestation.failed", {"reason": str(exc), "record_sha256": sha256_hex(out_blob)},
                actor="verifier")
        raise
    outputs = {"attestation.json": c.stage(step.id, "attestation.json", out_blob)}
    c.event(step.id, "attestation.verified", {
        "transport": "USB", "serial": r.serial, "model": r.model, "simulator": r.emulator, "counter": r.counter,
        "firmware_sha256": r.firmware_sha256, "firmware_version": r.firmware_version, "manufacturer": r.manufacturer,
        "device_status": {"flags": r.status.flags, "rct_failures": r.status.rct_failures,
                          "apt_failures": r.status.apt_failures, "samples": r.status.samples},
        "device_certificate_sha256": sha256_hex(chain[0]), **firmware}, files=outputs, actor="verifier")
    c.progress(f"[{step.id}] device {r.serial} attested over USB" + (" (EMULATOR)" if r.emulator else "")
               + f"; firmware accepted by {firmware['firmware_accepted_by']}")
    return outputs, {"serial": r.serial, "statement_sha256": sha256_hex(out_blob), "simulator": r.emulator,
                     "counter": r.counter}


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from qrng.attestation.statement import AttestationError, attest, verify_attestation
    if getattr(c.pipeline.source, "protocol", False):
        return run_usb(c, step)
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
    c.progress(f"[{step.id}] device {r.serial} attested" + (" (SIMULATOR)" if r.simulator else ""))
    return outputs, {"serial": r.serial, "statement_sha256": sha256_hex(blob), "simulator": r.simulator}


def sheet(step: Step, plan: Plan) -> SheetRow:
    from qrng.attestation.statement import AttestationError, certified_device
    att = plan.entropy.attestation
    try:
        device = certified_device(att.certificate) if att.certificate else {}
    except AttestationError:
        device = {}
    serial = device.get("serial") or plan.entropy.source.serial or "(the serial on the device's label)"
    expect = [Fact("Device serial", str(serial)), Fact("Model", str(device.get("model", plan.source_label)))]
    if device.get("simulator", plan.entropy.source.type == "simulator"):
        expect.append(Fact("Simulator", "YES: a software model, for rehearsals only; not a physical device"))
    expect += [Fact("Chains to", ", ".join(r.name for r in plan.policy.manufacturer_roots) or "(policy names none)"),
               Fact("Screen shows", f"[{step.id}] device {serial} attested")]
    return SheetRow(("operator", "security_officer"),
                    "We check that the entropy source is the certified device: the computer sends it a fresh random "
                    "challenge and verifies its signed answer against the manufacturer's root.",
                    ("Connect the device; the security officer reads its serial from the label.",
                     "Run the step; compare the serial on screen with the label and with this sheet."),
                    tuple(expect))


def record(log: StepLog) -> Section:
    if log.has("attestation.failed"):
        return Section(f"Attestation FAILED: {log.data('attestation.failed').get('reason', '')}.")
    d = log.data("attestation.verified")
    sim = " It is the SIMULATOR, a software model used for rehearsals, not a physical device." \
        if d.get("simulator") else ""
    if d.get("transport") == "USB":
        fw = d.get("firmware_accepted_by", "")
        how = (f"found in the firmware transparency log {d.get('firmware_log')} (entry {d.get('firmware_log_index')} "
               f"of {d.get('firmware_log_size')}, proof checked offline with the log's key and witnesses)"
               if fw == "transparency log" else f"accepted by {fw}")
        emu = " It is the USB EMULATOR, a software device, not a physical or quantum source." \
            if d.get("simulator") else ""
        return Section(
            "Over USB, the verifier sent the device a fresh 32-byte challenge; the device signed it with its "
            "counter, its identity and firmware digest and its own health status. The signature chains to "
            f"{d.get('manufacturer')}, the identity matches the device certificate, and the firmware was {how}.{emu}",
            (Fact("Device serial", str(d.get("serial", ""))), Fact("Model", str(d.get("model", ""))),
             Fact("Challenge (nonce)", log.data("attestation.challenge").get("nonce", ""), digest=True),
             Fact("Signature counter", str(d.get("counter", ""))),
             Fact("Firmware", f"version {d.get('firmware_version', '')}"),
             Fact("Firmware SHA-256", d.get("firmware_sha256", ""), digest=True),
             Fact("Firmware accepted by", fw),
             *((Fact("Firmware log root (SHA-256)", d.get("firmware_log_root", ""), digest=True),)
               if fw == "transparency log" else ()),
             Fact("Device's own health tests", f"{d.get('device_status', {}).get('rct_failures', 0)} RCT and "
                                                f"{d.get('device_status', {}).get('apt_failures', 0)} APT failures"),
             Fact("Device certificate SHA-256", d.get("device_certificate_sha256", ""), digest=True)))
    return Section(
        "The verifier sent the entropy source a fresh 32-byte challenge from the operating system. The source "
        "answered with a signed statement naming its model, serial and firmware digest; the signature chains to "
        f"the manufacturer root {d.get('manufacturer', '')}, and the firmware and serial match the certified "
        f"values.{sim}",
        (Fact("Device serial", str(d.get("serial", ""))), Fact("Model", str(d.get("model", ""))),
         Fact("Challenge (nonce)", log.data("attestation.challenge").get("nonce", ""), digest=True),
         Fact("Firmware SHA-256", d.get("firmware_sha256", ""), digest=True),
         Fact("Device certificate SHA-256", d.get("device_certificate_sha256", ""), digest=True),
         Fact("Entropy configuration SHA-256", d.get("entropy_config_sha256", ""), digest=True)))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {}

KIND = StepKind("attest_device", parse, lambda p: "verify the entropy source's signed attestation with a fresh nonce",
                run, outputs=lambda p: ("attestation.json",), check=check, phase=PHASES[0], sheet=sheet,
                record=record, docs=DOCS)
