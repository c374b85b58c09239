"""Runs a validated ceremony plan: one log entry per event, a signed checkpoint after every step.

Resume: the audit log is the state. A step with ``step.completed`` in the log is done; its results are read
back from the log. A step that was ``step.started`` but not completed is run again, and a key generation
adopts the key it created (same label and CKA_ID, drawn before generation and logged) instead of making a
second one. Outputs are staged, recorded with their digests, then linked into place: never overwritten.

The environment variable QRNG_CEREMONY_TEST_KILL=<step-id>:<point> (point: started, completed, placed,
checkpointed) sends SIGKILL to this process at that boundary. It is a test hook for crash recovery.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from qrng.audit.log import AuditLog
from qrng.audit.note import ALG_COSIGNATURE_V1, Checkpoint, Signer, cosign, ecdsa_signer, load_ed25519_signer
from qrng.audit.verify import parse_log, verify_log
from qrng.errors import EntropyError
from qrng.pipeline import Pipeline

from . import provenance, transcript
from .errors import CeremonyError, StepFailed
from .hsm import Hsm
from .model import KeySpec, Step
from .plan import Plan
from .x509build import build_certificate, build_crl, build_csr, subject_name

__all__ = ["Ceremony", "RunResult", "log_origin"]

Progress = Callable[[str], None]


def log_origin(ceremony: str) -> str:
    return f"qrng-ceremony/{ceremony}"


@dataclass
class RunResult:
    output: Path
    log: Path
    log_key: str
    steps_run: list[str] = field(default_factory=list)
    steps_skipped: list[str] = field(default_factory=list)
    tree_size: int = 0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kill_hook(step: str, point: str) -> None:
    if os.environ.get("QRNG_CEREMONY_TEST_KILL") == f"{step}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


class Ceremony:
    def __init__(self, plan: Plan, hsm: Hsm, progress: Progress | None = None) -> None:
        self.plan = plan
        self.script = plan.script
        self.hsm = hsm
        self.progress = progress or (lambda m: None)
        self.out = self.script.output
        self.staging = self.out / ".staging"
        self.results: dict[str, dict[str, Any]] = {}
        self.extracted = b""
        self.pipeline: Pipeline | None = None
        self.origin = log_origin(self.script.ceremony)
        self.signer = self._log_signer()
        self.log: AuditLog | None = None

    # --- set-up --------------------------------------------------------------------------------------------
    def _log_signer(self) -> Signer:
        prof = self.plan.profile
        if prof.log_key_label:
            der, sign = self.hsm.log_signer(prof.log_key_label)
            return ecdsa_signer(self.origin, der, sign)
        return _rename_file_key(Path(prof.log_key_file).read_text(), self.origin)

    def _script_digest(self) -> str:
        return _sha(self.script.path.read_bytes())

    def _load_state(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], set[str]]:
        """Completed and started steps from an existing log, after checking its signed part."""
        path = self.out / "audit.log"
        completed: dict[str, dict[str, Any]] = {}
        started: dict[str, dict[str, Any]] = {}
        done_markers: set[str] = set()
        if not path.exists():
            return completed, started, done_markers
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        data = data[:cut]  # a torn tail is recovered (and recorded) when the log is reopened
        view = parse_log(data)
        if view.checkpoints:
            last = view.checkpoints[-1]
            signed_part = b"".join(x + b"\n" for x in data.split(b"\n")[:-1]
                                   if b'"kind":"entry"' not in x or json.loads(x)["seq"] < last.position)
            verify_log(signed_part, [self.signer.verifier], origin=self.origin)
        for line in view.entries:
            e = json.loads(line)
            if e["event"] == "ceremony.started" and e["data"].get("script_sha256") != self._script_digest():
                raise CeremonyError(f"{self.script.path} changed since this ceremony began; resume refused "
                                    f"(log {path})")
            if e["event"] == "step.started":
                started[e["step"]] = e["data"]
            elif e["event"] == "step.completed":
                completed[e["step"]] = e["data"]
            elif e["event"] in ("transcript.written", "ceremony.completed"):
                done_markers.add(e["event"])
        return completed, started, done_markers

    def event(self, step: str, event: str, data: dict[str, Any] | None = None,
              files: dict[str, str] | None = None, actor: str = "") -> None:
        assert self.log is not None
        self.log.append(step, actor or self.script.roles.get("operator", "operator"), event, files, data)

    def qrng(self, n: int) -> bytes:
        assert self.pipeline is not None
        return self.pipeline.generate(n)

    # --- outputs ---------------------------------------------------------------------------------------------
    def stage(self, step: str, name: str, data: bytes) -> str:
        d = self.staging / step
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / name)
        return _sha(data)

    def place(self, step: str, outputs: dict[str, str]) -> None:
        for name, digest in outputs.items():
            final = self.out / name
            staged = self.staging / step / name
            if final.exists():
                if _sha(final.read_bytes()) != digest:
                    raise CeremonyError(f"{final} exists and differs from what step {step} recorded")
                staged.unlink(missing_ok=True)
                continue
            if not staged.exists() or _sha(staged.read_bytes()) != digest:
                raise CeremonyError(f"output {name} of step {step} is missing from {self.staging}")
            os.link(staged, final)  # fails rather than overwrite
            staged.unlink()
        fd = os.open(self.out, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    # --- run -------------------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        self.out.mkdir(parents=True, exist_ok=True)
        completed, started, markers = self._load_state()
        fresh = not (self.out / "audit.log").exists()
        if all(s.id in completed for s in self.script.steps) and "transcript.written" in markers and \
                self._sealed():
            self.progress("ceremony already completed; nothing to do (verify it with qrng ceremony verify)")
            return RunResult(self.out, self.out / "audit.log", str(self.signer.verifier),
                             steps_skipped=[s.id for s in self.script.steps],
                             tree_size=len(parse_log((self.out / "audit.log").read_bytes()).entries))
        self._preflight(started)
        self.log = AuditLog(self.out / "audit.log", self.origin, self.signer, ceremony=self.script.ceremony,
                            recover=True)
        if not (self.out / "log.pub").exists():
            (self.out / "log.pub").write_text(str(self.signer.verifier) + "\n")
        result = RunResult(self.out, self.out / "audit.log", str(self.signer.verifier))
        try:
            if fresh:
                self.event("ceremony", "ceremony.started", {
                    "script": str(self.script.path), "script_sha256": self._script_digest(),
                    "policy": self.plan.policy.name, "policy_sha256": _sha(self.plan.policy.path.read_bytes()),
                    "profile": self.plan.profile.name, "token": self.hsm.token_info(),
                    "entropy_source": self.plan.source_label, "simulator": "SIMULATOR" in self.plan.source_label,
                    "log_key": str(self.signer.verifier), "roles": self.script.roles,
                    "witnesses": list(self.script.witnesses)})
                self.log.checkpoint()
            else:
                self.event("ceremony", "ceremony.resumed", {"completed_steps": sorted(completed)})
            self.pipeline = Pipeline(self.plan.entropy)
            for step in self.script.steps:
                if step.id in completed:
                    self.results[step.id] = completed[step.id].get("results", {})
                    self.place(step.id, completed[step.id].get("outputs", {}))
                    result.steps_skipped.append(step.id)
                    self.progress(f"[{step.id}] already completed; skipped")
                    if step.type == "collect_entropy":
                        self._rederive_entropy(step)
                    if step.type == "witness_signoff":
                        self._cosign_missing(step)
                    continue
                if step.type == "witness_signoff" and "transcript.written" not in markers:
                    self._write_transcript()
                    markers.add("transcript.written")
                self._run_step(step, started.get(step.id))
                result.steps_run.append(step.id)
            if "witness_signoff" not in [s.type for s in self.script.steps] and "transcript.written" not in markers:
                self._write_transcript()
            self.log.checkpoint()
            result.tree_size = self.log.size
            return result
        finally:
            if self.pipeline is not None:
                self.pipeline.close()
            self.log.close()

    def _sealed(self) -> bool:
        """The last checkpoint covers every entry and, if witnesses sign off, carries their quorum."""
        view = parse_log((self.out / "audit.log").read_bytes())
        if not view.checkpoints or view.checkpoints[-1].position != len(view.entries):
            return False
        if any(s.type == "witness_signoff" for s in self.script.steps):
            return len(view.checkpoints[-1].cosignatures) >= max(self.plan.policy.witness_quorum,
                                                                 len(self.script.witnesses))
        return True

    def _preflight(self, started: dict[str, dict[str, Any]]) -> None:
        """Before the log or any step acts: no key label this ceremony will create may exist already
        (unless this ceremony created it in a run that was interrupted)."""
        for step in self.script.steps:
            if step.type != "generate_keypair" or step.id in started:
                continue
            label = step.params["key"].label
            if self.hsm.private_keys(label):
                raise CeremonyError(f"{step.path}: a key labelled '{label}' already exists on token "
                                    f"'{self.plan.profile.token_label}'; refusing to run (choose another label)")

    def _run_step(self, step: Step, started: dict[str, Any] | None) -> None:
        assert self.log is not None
        self.progress(f"[{step.id}] {step.type} ...")
        prepared = started if started is not None else self._prepare(step)
        if started is None:
            self.event(step.id, "step.started", {"type": step.type, **prepared})
        else:
            self.event(step.id, "step.resumed", {"type": step.type})
        _kill_hook(step.id, "started")
        try:
            outputs, results = STEPS[step.type](self, step, prepared)
        except (CeremonyError, EntropyError, OSError) as exc:
            self.event(step.id, "step.failed", {"error": str(exc)})
            self.log.checkpoint()
            raise StepFailed(f"step {step.id} ({step.type}) failed: {exc}") from exc
        self.event(step.id, "step.completed", {"outputs": outputs, "results": results}, files=outputs)
        _kill_hook(step.id, "completed")
        self.place(step.id, outputs)
        self.results[step.id] = results
        _kill_hook(step.id, "placed")
        if step.type == "witness_signoff":
            self._cosign_missing(step)
        else:
            self.log.checkpoint()
        _kill_hook(step.id, "checkpointed")
        self.progress(f"[{step.id}] done" + (f": {', '.join(outputs)}" if outputs else ""))

    def _prepare(self, step: Step) -> dict[str, Any]:
        """Values drawn before a step acts, logged in step.started so a resumed run reuses them."""
        if step.type == "generate_keypair":
            return {"label": step.params["key"].label, "key_id": self.qrng(16).hex(),
                    "key": step.params["key"].describe()}
        return {}

    # --- entropy helpers -------------------------------------------------------------------------------------------
    def _rederive_entropy(self, step: Step) -> None:
        """After a resume, extraction is re-run from the retained raw samples (deterministic)."""
        import numpy as np
        res = self.results[step.id]
        raw = (self.out / step.params["output"]).read_bytes()
        seed = (self.out / (step.params["output"] + ".seed")).read_bytes()
        assert self.pipeline is not None
        self.extracted = self.pipeline.extract_samples(np.frombuffer(raw, dtype=np.uint8), seed)
        if _sha(self.extracted) != res["extracted_sha256"]:
            raise CeremonyError("re-derived entropy does not match the log")

    def _cosign_missing(self, step: Step) -> None:
        assert self.log is not None
        self.log.checkpoint()
        view = parse_log((self.out / "audit.log").read_bytes())
        have = set()
        cp = view.checkpoints[-1]
        for line in cp.cosignatures:
            have.add(line.split(" ")[1])
        text = Checkpoint(self.origin, self.log.size, self.log.root()).text()
        count = len(have)
        for name in self.script.witnesses:
            if name in have:
                continue
            key_file = Path(self.plan.profile.witness_keys[name])
            w = load_ed25519_signer(key_file.read_text(), ALG_COSIGNATURE_V1)
            if w.name != name:
                raise StepFailed(f"witness key {key_file} belongs to {w.name}, not {name}")
            self.log.add_cosignature(self.log.size, cosign(text, w, int(datetime.datetime.now(
                datetime.UTC).timestamp())))
            count += 1
            self.progress(f"[{step.id}] cosigned by {name}")
        if count < self.plan.policy.witness_quorum:
            raise StepFailed(f"{count} witness cosignatures; policy quorum is {self.plan.policy.witness_quorum}")

    def _write_transcript(self) -> None:
        assert self.log is not None
        self.log.checkpoint()
        view = parse_log((self.out / "audit.log").read_bytes())
        entries = [json.loads(x) for x in view.entries]
        meta = {"ceremony": self.script.ceremony, "policy": self.plan.policy.name, "profile": self.plan.profile.name,
                "module": self.plan.profile.module, "token": self.plan.profile.token_label,
                "source": self.plan.source_label, "origin": self.origin, "log_key": str(self.signer.verifier),
                "simulator": "SIMULATOR" in self.plan.source_label}
        md = transcript.render_markdown(meta, entries, view.checkpoints[-1].note, list(self.script.witnesses))
        outs = {"transcript.md": self.stage("transcript", "transcript.md", md.encode()),
                "transcript.html": self.stage("transcript", "transcript.html",
                                              transcript.render_html(md, self.script.ceremony).encode())}
        self.event("transcript", "transcript.written", {"outputs": outs}, files=outs)
        self.place("transcript", outs)
        self.log.checkpoint()


def _rename_file_key(text: str, name: str) -> Signer:
    """A file key signs under the log's origin as its key name (the key ID depends on the name)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from qrng.audit.note import ed25519_signer
    signer = load_ed25519_signer(text)
    raw = base64.b64decode(text.strip().split("+", 4)[4])[1:]
    return ed25519_signer(name, ed25519.Ed25519PrivateKey.from_private_bytes(raw)) if signer.name != name else signer


# --- steps ----------------------------------------------------------------------------------------------------------
StepResult = tuple[dict[str, str], dict[str, Any]]


def step_attest_device(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    from qrng.attestation import AttestationError, attest, verify_attestation
    att = c.plan.entropy.attestation
    if att.certificate is None or att.key is None:
        raise StepFailed("the entropy configuration names no attestation certificate and key")
    assert c.pipeline is not None
    nonce = os.urandom(32)  # the verifier's challenge, from the OS, never from the device under test
    c.event(step.id, "attestation.challenge", {"nonce": nonce.hex()}, actor="verifier")
    c.pipeline.startup()
    h = c.pipeline.health.counters()
    cfg = c.script.entropy_config
    config_digest = _sha(cfg.read_bytes()) if cfg else _sha(b"built-in default")  # an auditor can recompute it
    health = {"rct_failures": h.rct_failures, "apt_failures": h.apt_failures, "samples_tested": h.samples_tested}
    env = attest(c.pipeline.source, nonce, health, config_digest, att.key, att.certificate)
    roots = [x509.load_pem_x509_certificate(p.read_bytes()) for p in c.plan.policy.manufacturer_roots]
    blob = json.dumps(env, indent=1).encode()
    try:
        r = verify_attestation(env, nonce, roots, c.plan.policy.allow_simulator)
    except AttestationError as exc:
        c.event(step.id, "attestation.failed", {"reason": str(exc), "envelope_sha256": _sha(blob)}, actor="verifier")
        raise
    outputs = {"attestation.json": c.stage(step.id, "attestation.json", blob)}
    stmt = r.statement
    c.event(step.id, "attestation.verified", {
        "serial": r.serial, "model": stmt["device"]["model"], "simulator": r.simulator,
        "firmware_sha256": stmt["firmware_sha256"], "manufacturer": r.manufacturer.subject.rfc4514_string(),
        "entropy_config_sha256": config_digest,
        "device_certificate_sha256": _sha(r.device_certificate.public_bytes(serialization.Encoding.DER))},
        files=outputs, actor="verifier")
    return outputs, {"serial": r.serial, "statement_sha256": _sha(blob), "simulator": r.simulator}


def step_health_check(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    assert c.pipeline is not None
    c.pipeline.startup()
    n = step.params["samples"]
    done = 0
    while done < n:
        k = min(1 << 20, n - done)
        c.pipeline.raw(k)
        done += k
        c.progress(f"[{step.id}] {done:,}/{n:,} samples tested")
    rep = c.pipeline.report()
    data = {"samples": n, "cutoffs": {"rct": rep.cutoffs.rct, "apt": rep.cutoffs.apt, "window": rep.cutoffs.window,
                                      "alpha_log2": rep.cutoffs.alpha_log2},
            "claimed_min_entropy": rep.source.claimed_min_entropy, "rct_failures": rep.health.rct_failures,
            "apt_failures": rep.health.apt_failures, "samples_tested": rep.health.samples_tested}
    c.event(step.id, "health.passed", data)
    return {}, data


def step_collect_entropy(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    import numpy as np
    assert c.pipeline is not None
    n = step.params["samples"]
    samples = np.concatenate([c.pipeline.raw(min(1 << 20, n - i)) for i in range(0, n, 1 << 20)])
    raw = samples.tobytes()
    commitment = _sha(raw)
    c.event(step.id, "entropy.committed", {"samples": n, "raw_sha256": commitment,
                                           "bits_per_sample": c.pipeline.info.bits_per_sample})
    name = step.params["output"]
    outputs = {name: c.stage(step.id, name, raw),
               name + ".seed": c.stage(step.id, name + ".seed", c.pipeline.extractor_seed)}
    c.extracted = c.pipeline.extract_samples(samples)
    if len(c.extracted) < 64:
        raise StepFailed(f"{n} samples gave only {len(c.extracted)} extracted bytes; collect more")
    rep = c.pipeline.report()
    data = {"raw_sha256": commitment, "extracted_bytes": len(c.extracted), "extracted_sha256": _sha(c.extracted),
            "extractor": rep.extractor, "extractor_seed_sha256": _sha(c.pipeline.extractor_seed),
            "toeplitz_n": c.pipeline._toeplitz.n_bits if c.pipeline._toeplitz else None,  # noqa: SLF001
            "toeplitz_m": c.pipeline._toeplitz.m_bits if c.pipeline._toeplitz else None,  # noqa: SLF001
            "bits_per_sample": c.pipeline.info.bits_per_sample,
            "entropy_credited_bits": n * rep.source.claimed_min_entropy}
    c.event(step.id, "entropy.extracted", data, files=outputs)
    return outputs, data


def step_seed_hsm(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    n = step.params.get("bytes", 48)
    if len(c.extracted) < n:
        raise StepFailed("no extracted entropy: a collect_entropy step must come first")
    seed = c.extracted[:n]
    status = c.hsm.seed_random(seed)
    data = {"bytes": n, "seed_sha256": _sha(seed), "status": status,
            "verifiable": False, "note": "C_SeedRandom mixes into the token's own generator; that use of QRNG "
                                         "output cannot be verified from outside the HSM"}
    c.event(step.id, "hsm.seeded" if status == "accepted" else "hsm.seed_refused", data)
    pol = c.plan.policy
    if status != "accepted" and (pol.seed_required or not pol.allow_seed_unsupported):
        raise StepFailed(f"the token answered {status} to C_SeedRandom and the policy requires seeding")
    return {}, data


def step_generate_keypair(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    spec: KeySpec = step.params["key"]
    key_id = bytes.fromhex(prep["key_id"])
    existing = c.hsm.find(spec, key_id)
    if existing is None:
        gk = c.hsm.generate(spec, key_id)
        event = "key.generated"
    else:
        gk = existing
        event = "key.adopted"  # generated by this step before a crash: never a second key
    pub_sha = _sha(gk.public_der)
    attrs = {k: (v if isinstance(v, bool | int | str) or v is None else str(v)) for k, v in gk.attributes.items()}
    c.event(step.id, event, {"label": spec.label, "key_id": key_id.hex(), "key": spec.describe(),
                             "public_key_sha256": pub_sha, "attributes_read_back": attrs, "template": gk.template,
                             "cka_id_source": "QRNG pipeline (DRBG seeded from extracted samples)"})
    log_state = {"origin": c.origin, "tree_size": c.log.size if c.log else 0}
    pred = {"ceremony": c.script.ceremony, "step": step.id, "time": _now(), "hsm": c.hsm.token_info(),
            "template": gk.template, "attributes_read_back": attrs, "key_id": key_id.hex(),
            "attestation": c.results.get(_first(c, "attest_device"), {}),
            "entropy": {k: v for k, v in c.results.get(_first(c, "collect_entropy"), {}).items()
                        if k in ("raw_sha256", "extracted_sha256", "extractor")},
            "seed_hsm": c.results.get(_first(c, "seed_hsm"), {}).get("status", "not seeded"), "log": log_state}
    stmt = provenance.statement(spec.label, gk.public_der, pred)
    env = provenance.sign_statement(stmt, c.signer.sign, str(c.signer.verifier))
    blob = json.dumps(env, indent=1).encode()
    name = f"{spec.label}.provenance.json"
    outputs = {name: c.stage(step.id, name, blob)}
    c.event(step.id, "provenance.written", {"label": spec.label, "statement_sha256": _sha(blob)}, files=outputs)
    return outputs, {"label": spec.label, "key_id": key_id.hex(), "spec": [spec.type, spec.size, spec.curve],
                     "public_der": base64.b64encode(gk.public_der).decode()}


def _first(c: Ceremony, kind: str) -> str:
    return next((s.id for s in c.script.steps if s.type == kind), "")


def _key(c: Ceremony, step_id: str) -> tuple[KeySpec, bytes, bytes]:
    r = c.results[step_id]
    t, size, curve = r["spec"]
    return KeySpec(r["label"], t, size, curve), bytes.fromhex(r["key_id"]), base64.b64decode(r["public_der"])


def _serial(c: Ceremony) -> int:
    raw = bytearray(c.qrng(16))
    raw[0] &= 0x7F  # positive
    raw[0] |= 0x40  # at least 127 bits: comfortably over the 64 the policy requires
    return int.from_bytes(raw, "big")


def _pem(der: bytes, kind: str) -> bytes:
    b64 = base64.encodebytes(der).decode().replace("\n", "")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def step_self_signed_root(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    p = step.params
    spec, kid, pub = _key(c, p["key"])
    prof = c.plan.policy.cert_profiles[p["profile"]]
    name = subject_name(p["subject"])
    serial = _serial(c)
    built = build_certificate(spec, lambda tbs: c.hsm.sign(spec, kid, tbs), name, name, pub, serial,
                              p["validity_days"], prof.ca, prof.path_length, pub)
    outputs = {p["output"]: c.stage(step.id, p["output"], _pem(built.der, "CERTIFICATE"))}
    data = {"serial": format(serial, "x"), "subject": name.rfc4514_string(), "tbs_sha256": _sha(built.tbs),
            "lint": "pkilint PKIX: no error before or after signing", "lint_findings": list(built.lint_findings),
            "serial_source": "QRNG pipeline"}
    c.event(step.id, "certificate.issued", data, files=outputs)
    return outputs, {"output": p["output"], "serial": data["serial"]}


def step_csr(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    p = step.params
    spec, kid, pub = _key(c, p["key"])
    built = build_csr(spec, lambda tbs: c.hsm.sign(spec, kid, tbs), subject_name(p["subject"]), pub)
    outputs = {p["output"]: c.stage(step.id, p["output"], _pem(built.der, "CERTIFICATE REQUEST"))}
    c.event(step.id, "csr.created", {"subject": subject_name(p["subject"]).rfc4514_string()}, files=outputs)
    return outputs, {"output": p["output"]}


def step_issue_certificate(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    p = step.params
    spec, kid, issuer_pub = _key(c, p["issuer_key"])
    issuer = x509.load_pem_x509_certificate((c.out / c.results[p["issuer"]]["output"]).read_bytes())
    if issuer.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo) != issuer_pub:
        raise StepFailed(f"{p['issuer_key']} is not the key of certificate {p['issuer']}")
    csr = x509.load_pem_x509_csr((c.out / c.results[p["csr"]]["output"]).read_bytes())
    if not csr.is_signature_valid:
        raise StepFailed("the CSR's signature does not verify")
    prof = c.plan.policy.cert_profiles[p["profile"]]
    serial = _serial(c)
    subj_pub = csr.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    built = build_certificate(spec, lambda tbs: c.hsm.sign(spec, kid, tbs), csr.subject, issuer.subject, subj_pub,
                              serial, p["validity_days"], prof.ca, prof.path_length, issuer_pub)
    outputs = {p["output"]: c.stage(step.id, p["output"], _pem(built.der, "CERTIFICATE"))}
    data = {"serial": format(serial, "x"), "subject": csr.subject.rfc4514_string(),
            "issuer": issuer.subject.rfc4514_string(), "tbs_sha256": _sha(built.tbs),
            "lint_findings": list(built.lint_findings), "serial_source": "QRNG pipeline"}
    c.event(step.id, "certificate.issued", data, files=outputs)
    return outputs, {"output": p["output"], "serial": data["serial"]}


def step_crl(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    p = step.params
    spec, kid, issuer_pub = _key(c, p["issuer_key"])
    issuer = x509.load_pem_x509_certificate((c.out / c.results[p["issuer"]]["output"]).read_bytes())
    built = build_crl(spec, lambda tbs: c.hsm.sign(spec, kid, tbs), issuer.subject, issuer_pub, 1,
                      p["next_update_days"])
    outputs = {p["output"]: c.stage(step.id, p["output"], _pem(built.der, "X509 CRL"))}
    c.event(step.id, "crl.issued", {"issuer": issuer.subject.rfc4514_string(), "crl_number": 1,
                                    "lint_findings": list(built.lint_findings)}, files=outputs)
    return outputs, {"output": p["output"]}


def step_export_public(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    outputs = {}
    for ref in step.params["keys"]:
        spec, _, pub = _key(c, ref)
        pem = serialization.load_der_public_key(pub).public_bytes(serialization.Encoding.PEM,
                                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        outputs[f"{spec.label}.pub.pem"] = c.stage(step.id, f"{spec.label}.pub.pem", pem)
    c.event(step.id, "public_keys.exported", {"keys": list(step.params["keys"])}, files=outputs)
    return outputs, {}


def step_verify_outputs(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    checks: list[str] = []
    roots = [s for s in c.script.steps if s.type == "self_signed_root"]
    issued = [s for s in c.script.steps if s.type == "issue_certificate"]
    for r in roots:
        root = c.out / r.params["output"]
        _openssl_verify(root, root, [])
        checks.append(f"openssl verify {root.name}: OK (self-signed)")
    for s in issued:
        root = c.out / c.results[s.params["issuer"]]["output"]
        cert = c.out / s.params["output"]
        _openssl_verify(root, cert, [])
        checks.append(f"openssl verify -CAfile {root.name} {cert.name}: OK")
    for s in c.script.steps:
        if s.type == "crl":
            issuer = x509.load_pem_x509_certificate((c.out / c.results[s.params["issuer"]]["output"]).read_bytes())
            crl = x509.load_pem_x509_crl((c.out / s.params["output"]).read_bytes())
            if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                raise StepFailed(f"CRL {s.params['output']} does not verify with its issuer")
            checks.append(f"CRL {s.params['output']}: signature OK")
        if s.type == "generate_keypair":
            spec, kid, pub = _key(c, s.id)
            msg = b"qrng-ceremony key check " + os.urandom(16)
            sig = c.hsm.sign(spec, kid, msg)
            from .x509build import _verify
            _verify(pub, sig, msg, spec)
            checks.append(f"key {spec.label}: signs in the HSM, verifies with the exported public key")
    view = parse_log((c.out / "audit.log").read_bytes())
    recorded: dict[str, str] = {}
    for line in view.entries:
        recorded.update(json.loads(line).get("files", {}))
    for name, digest in recorded.items():
        if _sha((c.out / name).read_bytes()) != digest:
            raise StepFailed(f"{name} no longer matches the digest in the log")
    checks.append(f"{len(recorded)} output files match their logged SHA-256 digests")
    c.event(step.id, "outputs.verified", {"checks": checks})
    return {}, {"checks": checks}


def _openssl_verify(ca: Path, cert: Path, untrusted: list[Path]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    r = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(ca), str(cert)], capture_output=True,
                       text=True, env=env)
    if r.returncode != 0:
        raise StepFailed(f"openssl verify {cert.name}: {r.stdout.strip()} {r.stderr.strip()}")


def step_witness_signoff(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    c.event(step.id, "witness.signoff.requested", {"witnesses": list(c.script.witnesses),
                                                   "quorum": c.plan.policy.witness_quorum})
    return {}, {"witnesses": list(c.script.witnesses)}


def step_estimate_entropy(c: Ceremony, step: Step, prep: dict[str, Any]) -> StepResult:
    """SP 800-90B non-IID assessment of the raw samples retained by a collect_entropy step; fails closed when
    the estimate is below the policy's floor, or below the source's claim by more than the policy allows."""
    import numpy as np

    from qrng.estimate.nonid import assess_non_iid
    src = c.script.step(step.params["samples_from"])
    if src.type != "collect_entropy":
        raise StepFailed(f"{step.path}.samples_from must name a collect_entropy step")
    assert c.pipeline is not None
    bits = step.params.get("bits_per_symbol", c.pipeline.info.bits_per_sample)
    samples = np.frombuffer((c.out / src.params["output"]).read_bytes(), dtype=np.uint8)
    a = assess_non_iid(samples, bits, lambda m: c.progress(f"[{step.id}] {m}"))
    claimed = c.pipeline.info.claimed_min_entropy
    pol = c.plan.policy
    data = {"samples": int(samples.size), "bits_per_symbol": bits, "h_original": a.h_original,
            "h_bitstring": a.h_bitstring, "h_assessed": a.h_assessed, "claimed_min_entropy": claimed,
            "estimators": {e.name + (" (bit string)" if e in a.bitstring else ""): e.h
                           for e in a.literal + a.bitstring}}
    c.event(step.id, "entropy.estimated", data)
    if pol.min_estimated_entropy is not None and a.h_assessed < pol.min_estimated_entropy:
        raise StepFailed(f"SP 800-90B estimate {a.h_assessed:.4f} bits/sample is below the policy's floor "
                         f"{pol.min_estimated_entropy}")
    if claimed - a.h_assessed > pol.max_estimate_shortfall:
        raise StepFailed(f"SP 800-90B estimate {a.h_assessed:.4f} bits/sample is below the claimed {claimed} by "
                         f"more than the policy's {pol.max_estimate_shortfall}")
    return {}, data


STEPS: dict[str, Callable[[Ceremony, Step, dict[str, Any]], StepResult]] = {
    "attest_device": step_attest_device, "health_check": step_health_check, "collect_entropy": step_collect_entropy,
    "seed_hsm": step_seed_hsm, "generate_keypair": step_generate_keypair, "self_signed_root": step_self_signed_root,
    "csr": step_csr, "issue_certificate": step_issue_certificate, "crl": step_crl,
    "export_public": step_export_public, "verify_outputs": step_verify_outputs,
    "witness_signoff": step_witness_signoff, "estimate_entropy": step_estimate_entropy,
}
