"""What every ceremony step type is made of, and what the runner hands it.

A step type is one module in this package that defines a frozen params dataclass and a :class:`StepKind`:
how its YAML fields parse (strictly, once), its plan line, its outputs and step references, its policy checks,
values it draws before acting (logged, so a resumed run reuses them), its run function, and its lines on paper:
its row of the printed run sheet (:class:`SheetRow`, from the plan) and its section of the transcript
(:class:`Section`, from its verified log entries). Steps reach the
world only through the :class:`StepContext` the runner gives them (log, HSM interface, output writer, entropy
pipeline); they never import the runner.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from qrng.errors import ConfigError
from qrng.yaml_input import Fields, check_plain

from ..hsmapi import HsmApi
from ..keys import KeySpec
from ..model import Step
from ..papers.vocabulary import PHASES, Fact, LogEvent, Section, SheetRow, StepLog

if TYPE_CHECKING:
    from qrng.pipeline import Pipeline
    from transparency.log import AuditLog

    from ..model import Plan, Policy, Profile, Script

__all__ = ["Fact", "LogEvent", "PHASES", "PlanView", "Section", "SheetRow", "Step", "StepContext", "StepKind",
           "StepLog", "StepResult", "key_of", "output_name", "parse_subject", "pem", "qrng_serial", "sha256_hex",
           "step_ids"]


P = TypeVar("P")
StepResult = tuple[dict[str, str], dict[str, Any]]  # (outputs: name -> SHA-256, results kept in the log)


class StepContext(Protocol):
    """What the runner hands a step."""

    plan: Plan
    script: Script
    out: Path
    hsm: HsmApi
    pipeline: Pipeline
    results: dict[str, dict[str, Any]]
    extracted: bytes
    origin: str
    signer: Any
    log: AuditLog

    def event(self, step: str, event: str, data: dict[str, Any] | None = None,
              files: dict[str, str] | None = None, actor: str = "") -> None: ...

    def qrng(self, n: int) -> bytes: ...

    def stage(self, step: str, name: str, data: bytes) -> str: ...

    def progress(self, msg: str) -> None: ...

    def checkpoint(self) -> None: ...


@dataclass(frozen=True)
class PlanView:
    """What a step's policy check sees: the policy, the profile, the script and the steps before this one."""

    policy: Policy
    profile: Profile
    script: Script
    earlier: dict[str, Step] = field(default_factory=dict)

    def keys(self) -> dict[str, KeySpec]:
        return {sid: s.params.key for sid, s in self.earlier.items() if s.type == "generate_keypair"}


# --- the step's lines on paper ----------------------------------------------------------------------------------
def _default_sheet(step: Step, plan: Plan) -> SheetRow:
    return SheetRow(("operator",), f"Step {step.id}: {step.type.replace('_', ' ')}.",
                    ("Start the step and wait for it to finish.",))


def _default_record(log: StepLog) -> Section:
    return Section(f"Step {log.id} ({log.type}) ran.")


def _no_outputs(params: Any) -> tuple[str, ...]:
    return ()


def _no_refs(params: Any) -> dict[str, tuple[str, ...]]:
    return {}


def _no_check(step: Step, view: PlanView) -> list[str]:
    return []


def _no_prepare(ctx: StepContext, step: Step) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class StepKind(Generic[P]):
    """A step type. ``parse`` reads the step's own fields (not ``id``/``type``) and raises ConfigError naming the
    YAML path; ``refs`` names the earlier steps it uses (field -> step ids); ``check`` returns policy violations."""

    name: str
    parse: Callable[[Fields], P]
    summary: Callable[[P], str]
    run: Callable[[StepContext, Step, dict[str, Any]], StepResult]
    outputs: Callable[[P], tuple[str, ...]] = _no_outputs
    refs: Callable[[P], dict[str, tuple[str, ...]]] = _no_refs
    check: Callable[[Step, PlanView], list[str]] = _no_check
    prepare: Callable[[StepContext, Step], dict[str, Any]] = _no_prepare
    requires: tuple[str, ...] = ()  # step types that must come before (checked by the plan)
    on_resume: Callable[[StepContext, Step], None] | None = None  # a completed step met again on resume
    after: Callable[[StepContext, Step], None] | None = None  # instead of the checkpoint that follows a step
    preflight: Callable[[StepContext, Step], None] | None = None  # before the log opens (not for a started step)
    seals: bool = False  # witnesses sign the final state: it must be the script's last step
    # with ``seals``: whether the final checkpoint, with these cosignature lines, is sealed as the kind requires
    sealed: Callable[[Plan, list[str]], bool] | None = None
    # facts ceremony.started records when the script has a step of this kind (the auditor reads them back)
    started: Callable[[Plan], dict[str, Any]] | None = None
    phase: str = PHASES[0]  # the run sheet page this step's row goes on (consecutive steps of a phase share one)
    sheet: Callable[[Step, Plan], SheetRow] = _default_sheet
    record: Callable[[StepLog], Section] = _default_record
    # files a step writes whose names depend on earlier steps (export_public: <label>.pub.pem); with ``outputs``
    # every file a step writes is declared, so the plan refuses two steps writing one name
    declared: Callable[[Step, PlanView], tuple[str, ...]] = lambda step, view: ()
    # what each field does (its YAML path inside the step), for docs/ceremony-reference.md (ceremony.reference)
    docs: dict[str, str] = field(default_factory=dict)


# --- parsing helpers ---------------------------------------------------------------------------------------------
_SUBJECT_KEYS = ("CN", "O", "OU", "C", "L", "ST")
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
# files the ceremony keeps itself (no step may write them), and the names users may not choose for outputs
CEREMONY_FILES = frozenset({"audit.log", "log.pub", "transcript.md", "transcript.html", "transcript.pdf", ".lock",
                            ".audit.log.rewrite", ".staging"})
RESERVED = CEREMONY_FILES | {"attestation.json"}


def parse_subject(f: Fields, key: str) -> dict[str, str]:
    sf = f.sub(key)
    # each key read with its default (absent), so the reference shows them all
    subject = {k: check_plain(v, sf.p(k)) for k in _SUBJECT_KEYS if (v := sf.text(k, None)) is not None}
    sf.done()
    if "CN" not in subject:
        raise ConfigError(f.p(key) + ".CN", "is required")
    if "C" in subject and (len(subject["C"]) != 2 or not subject["C"].isalpha()):
        raise ConfigError(f.p(key) + ".C", "must be a two-letter country code")
    return subject


# the documentation of the fields the helpers above and below read, shared by the step types that use them
SUBJECT_DOCS = {
    "subject": "the distinguished name: a mapping of the keys below",
    "subject.CN": "commonName (required)", "subject.O": "organizationName", "subject.OU": "organizationalUnitName",
    "subject.C": "countryName, two letters", "subject.L": "localityName", "subject.ST": "stateOrProvinceName",
}
OUTPUT_DOCS = {"output": "the file it writes in the ceremony's output folder: a plain name (letters, digits, '-', "
                         "'_', '.'), not a file the ceremony writes itself"}


def subject_text(subject: dict[str, str]) -> str:
    """A script's subject as people read it: CN first."""
    order = ("CN", "OU", "O", "L", "ST", "C")
    return ", ".join(f"{k}={subject[k]}" for k in order if k in subject)


def output_name(f: Fields, key: str = "output") -> str:
    """A plain file name inside the ceremony folder: letters, digits, '-', '_', '.'; not hidden, not reserved."""
    name: str = f.text(key)
    if not name or not set(name) <= _SAFE or name.startswith(".") or len(name) > 128:
        raise ConfigError(f.p(key), "must be a plain file name inside the ceremony's output folder "
                                    "(letters, digits, '-', '_', '.'; not starting with '.')")
    if name in RESERVED:
        raise ConfigError(f.p(key), f"{name!r} is a file the ceremony writes itself; choose another name")
    return name


def step_ids(f: Fields, key: str) -> tuple[str, ...]:
    items = f.items(key)
    if not items or not all(isinstance(x, str) and x for x in items):
        raise ConfigError(f.p(key), "must be a non-empty list of step ids")
    return tuple(items)


def positive(f: Fields, key: str, default: Any = ..., hi: int | None = None) -> int:
    v: int = f.integer(key, lo=1, hi=hi) if default is ... else f.integer(key, default, lo=1, hi=hi)
    return v


# --- run helpers ---------------------------------------------------------------------------------------------------
def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pem(der: bytes, kind: str) -> bytes:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def key_of(ctx: StepContext, step_id: str) -> tuple[KeySpec, bytes, bytes]:
    """(spec, CKA_ID, DER public key) of the key a generate_keypair step made, from its logged results."""
    r = ctx.results[step_id]
    t, size, curve = r["spec"]
    return KeySpec(r["label"], t, size, curve), bytes.fromhex(r["key_id"]), base64.b64decode(r["public_der"])


def first_of(ctx: StepContext, kind: str) -> str:
    return next((s.id for s in ctx.script.steps if s.type == kind), "")


def qrng_serial(ctx: StepContext) -> int:
    """A certificate serial from the QRNG pipeline: positive, at least 127 bits (policy asks 64 or more)."""
    raw = bytearray(ctx.qrng(16))
    raw[0] &= 0x7F
    raw[0] |= 0x40
    return int.from_bytes(raw, "big")


def verifier_nonce() -> bytes:
    """The verifier's challenge, from the OS: never from the device under test."""
    return os.urandom(32)
