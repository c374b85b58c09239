"""import_csr: a certificate signing request made outside the HSM, brought into the ceremony to be certified.

For keys that must live in a file, such as the TLS key of qrngd's mutual-TLS endpoint (Python's ssl reads its
key from a file; docs/daemon-protocol.md "Other hosts"). Before any HSM is touched the plan checks that the file
is inside the script's folder, is a CSR (PEM or DER, at most 64 KiB) whose self-signature verifies (PKCS#10,
RFC 2986 4.2), whose subject is exactly the one the script states, and whose key the policy allows. At run time
it is checked again, and a copy is staged as an output, so the log's digests cover what was certified."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from qrng.errors import ConfigError
from qrng.yaml_input import Fields

from ..errors import StepFailed
from ..keys import CURVES, KeySpec
from ._certs import dn
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
    output_name,
    parse_subject,
    pem,
    sha256_hex,
    subject_text,
)
from .generate_keypair import allowed, allowed_text

if TYPE_CHECKING:
    from ..model import Plan

MAX_CSR = 64 * 1024


@dataclass(frozen=True)
class Params:
    file: str
    subject: dict[str, str]
    output: str


def parse(f: Fields) -> Params:
    file: str = f.text("file")
    parts = PurePosixPath(file).parts
    if not file or file.startswith("/") or ".." in parts or "\\" in file or len(file) > 256 \
            or any(ord(ch) < 0x20 for ch in file):
        raise ConfigError(f.p("file"), "must be a relative path inside the script's folder (no '..', not absolute)")
    return Params(file, parse_subject(f, "subject"), output_name(f))


def _load(script: Path, p: Params) -> tuple[Any, bytes]:
    """The CSR and its DER; ValueError naming what is wrong."""
    import os
    import stat

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    folder = script.parent.resolve()
    path = script.parent / p.file
    # no symbolic link anywhere on the way: a linked folder ("csrs -> /etc") would bring a file from outside
    if path.is_symlink() or not path.resolve().is_relative_to(folder) or path.resolve() != folder / p.file:
        raise ValueError(f"{p.file}: must be a regular file inside the script's folder, reached without a symbolic "
                         "link")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise ValueError(f"{p.file}: no such regular file beside the script") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError(f"{p.file}: not a regular file")
        data = fh.read(MAX_CSR + 1)
    if len(data) > MAX_CSR:
        raise ValueError(f"{p.file}: larger than {MAX_CSR} bytes; not a CSR")
    try:
        csr = x509.load_pem_x509_csr(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_csr(data)
    except ValueError:
        raise ValueError(f"{p.file}: not a PKCS#10 certificate signing request (PEM or DER)") from None
    if not csr.is_signature_valid:
        raise ValueError(f"{p.file}: the request's signature does not verify")
    return csr, csr.public_bytes(serialization.Encoding.DER)


def _key_spec(csr: Any) -> KeySpec:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    pub = csr.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        return KeySpec("external", "rsa", size=pub.key_size)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return KeySpec("external", "ec", curve=names.get(pub.curve.name, pub.curve.name))
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return KeySpec("external", "ed25519")
    return KeySpec("external", type(pub).__name__)


def _violations(script: Path, step: Step, policy_view: PlanView) -> list[str]:
    from ..x509build import subject_name
    p: Params = step.params
    try:
        csr, _ = _load(script, p)
    except (OSError, ValueError) as exc:
        return [f"{step.path}.file: {exc}"]
    v = []
    if csr.subject != subject_name(p.subject):
        v.append(f"{step.path}.subject: the request's subject is {dn(csr.subject.rfc4514_string())}, not "
                 f"{subject_text(p.subject)}")
    spec = _key_spec(csr)
    if spec.type not in ("rsa", "ec", "ed25519") or (spec.type == "ec" and spec.curve not in CURVES) \
            or not allowed(policy_view, spec):
        v.append(f"{step.path}.file: the request's key ({spec.type} {spec.curve or spec.size or ''}".rstrip()
                 + f") is not allowed by policy {policy_view.policy.name} (allowed: {allowed_text(policy_view)})")
    return v


def check(step: Step, view: PlanView) -> list[str]:
    return _violations(view.script.path, step, view)


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    p: Params = step.params
    view = PlanView(c.plan.policy, c.plan.profile, c.plan.script)
    problems = _violations(c.plan.script.path, step, view)
    if problems:  # the file changed since the plan was checked
        raise StepFailed("; ".join(problems))
    csr, der = _load(c.plan.script.path, p)
    from cryptography.hazmat.primitives import serialization
    spki = csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    outputs = {p.output: c.stage(step.id, p.output, pem(der, "CERTIFICATE REQUEST"))}
    data = {"subject": csr.subject.rfc4514_string(), "sha256": sha256_hex(der), "source_file": p.file,
            "key": _key_spec(csr).describe(), "spki_sha256": sha256_hex(spki)}
    c.progress(f"[{step.id}] request for {dn(data['subject'])} imported: SHA-256 {data['sha256']}")
    c.event(step.id, "csr.imported", data, files=outputs)
    return outputs, {"output": p.output}


def sheet(step: Step, plan: Plan) -> SheetRow:
    p: Params = step.params
    return SheetRow(("operator", "security_officer"),
                    f"The certificate signing request in '{p.file}', made outside the HSM, is checked (signature, "
                    f"subject, key allowed by the policy) and copied into the ceremony's folder.",
                    ("Run the step; read aloud the SHA-256 shown and compare it with the requester's.",),
                    (Fact("Subject", subject_text(p.subject)), Fact("File", p.file), Fact("Written to", p.output),
                     Fact("Screen shows", f"[{step.id}] request for ... imported: SHA-256 ...")))


def record(log: StepLog) -> Section:
    d = log.data("csr.imported")
    return Section(f"A certificate signing request for {dn(d.get('subject', ''))}, made outside the HSM, was "
                   "checked and imported.",
                   (Fact("Subject", dn(d.get("subject", ""))), Fact("Key", d.get("key", "")),
                    Fact("Request SHA-256", d.get("sha256", ""), digest=True),
                    Fact("Key SPKI SHA-256", d.get("spki_sha256", ""), digest=True)))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'file': "the request (PEM or DER): a relative path inside the script's folder",
    **SUBJECT_DOCS,
    **OUTPUT_DOCS,
}

KIND = StepKind("import_csr", parse, lambda p: f"import CSR {p.file} (CN={p.subject['CN']})", run,
                outputs=lambda p: (p.output,), refs=lambda p: {}, check=check, phase=PHASES[1], sheet=sheet,
                record=record, docs=DOCS)
