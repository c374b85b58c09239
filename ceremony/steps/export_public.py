"""export_public: the public keys of generate_keypair steps as PEM files (``<label>.pub.pem``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qrng.yaml_input import Fields

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
    key_of,
    step_ids,
)

if TYPE_CHECKING:
    from ..model import Plan


@dataclass(frozen=True)
class Params:
    keys: tuple[str, ...]


def parse(f: Fields) -> Params:
    return Params(step_ids(f, "keys"))


def check(step: Step, view: PlanView) -> list[str]:
    keys = view.keys()
    return [f"{step.path}.keys[{i}] must name an earlier generate_keypair step (got {ref!r})"
            for i, ref in enumerate(step.params.keys) if ref not in keys]


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    from cryptography.hazmat.primitives import serialization
    outputs = {}
    for ref in step.params.keys:
        spec, _, pub = key_of(c, ref)
        pem = serialization.load_der_public_key(pub).public_bytes(serialization.Encoding.PEM,
                                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        outputs[f"{spec.label}.pub.pem"] = c.stage(step.id, f"{spec.label}.pub.pem", pem)
    c.event(step.id, "public_keys.exported", {"keys": list(step.params.keys)}, files=outputs)
    return outputs, {}


def sheet(step: Step, plan: Plan) -> SheetRow:
    labels = [plan.script.step(k).params.key.label for k in step.params.keys]
    return SheetRow(("operator",), "The public keys are written out as PEM files for publication.",
                    ("Run the step.",), tuple(Fact("Written to", f"{label}.pub.pem") for label in labels))


def record(log: StepLog) -> Section:
    files = log.data("public_keys.exported")
    names = sorted(next((e.files for e in log.events if e.event == "public_keys.exported"), {}))
    return Section("The public keys were exported as PEM files: " + ", ".join(names) + ".",
                   tuple(Fact("Key of step", k) for k in files.get("keys", [])))


def declared(step: Step, view: PlanView) -> tuple[str, ...]:
    keys = view.keys()
    return tuple(f"{keys[ref].label}.pub.pem" for ref in step.params.keys if ref in keys)


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'keys': 'ids of earlier generate_keypair steps; each public key is written as <label>.pub.pem',
}

KIND = StepKind("export_public", parse, lambda p: "public keys of " + ", ".join(p.keys), run,
                refs=lambda p: {"keys": p.keys}, check=check, phase=PHASES[2], sheet=sheet, record=record,
                declared=declared, docs=DOCS)
