"""seed_hsm: C_SeedRandom with extracted bytes. The log says honestly that this use cannot be verified from
outside the HSM (the token mixes the seed into its own generator)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qrng.yaml_input import Fields

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
    positive,
    sha256_hex,
)

if TYPE_CHECKING:
    from ..model import Plan

MAX_BYTES = 4096


@dataclass(frozen=True)
class Params:
    bytes: int = 48


def parse(f: Fields) -> Params:
    return Params(positive(f, "bytes", 48, hi=MAX_BYTES))


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    n = step.params.bytes
    if len(c.extracted) < n:
        raise StepFailed(f"{len(c.extracted)} extracted bytes available, {n} needed: a collect_entropy step of "
                         "enough samples must come first")
    seed = c.extracted[:n]
    status = c.hsm.seed_random(seed)
    data = {"bytes": n, "seed_sha256": sha256_hex(seed), "status": status,
            "verifiable": False, "note": "C_SeedRandom mixes into the token's own generator; that use of QRNG "
                                         "output cannot be verified from outside the HSM"}
    c.event(step.id, "hsm.seeded" if status == "accepted" else "hsm.seed_refused", data)
    pol = c.plan.policy
    if status != "accepted" and (pol.seed_required or not pol.allow_seed_unsupported):
        raise StepFailed(f"the token answered {status} to C_SeedRandom and the policy requires seeding")
    return {}, data


def sheet(step: Step, plan: Plan) -> SheetRow:
    pol = plan.policy
    rule = "required" if pol.seed_required else ("optional" if pol.allow_seed_unsupported else "required when offered")
    return SheetRow(("operator",),
                    f"The HSM's own random generator is given {step.params.bytes} extracted bytes (C_SeedRandom). "
                    "The HSM mixes them into its generator; this use cannot be checked from outside the HSM.",
                    ("Run the step.",),
                    (Fact("Bytes", str(step.params.bytes)), Fact("Seeding (policy)", rule),
                     Fact("Screen shows", f"[{step.id}] done")))


def record(log: StepLog) -> Section:
    d = log.data("hsm.seeded") or log.data("hsm.seed_refused")
    status = d.get("status", "")
    text = (f"The token accepted {d.get('bytes')} extracted bytes through C_SeedRandom." if status == "accepted"
            else f"The token answered {status} to C_SeedRandom; the policy allows a token that cannot be seeded.")
    return Section(text + " This use of QRNG output cannot be verified from outside the HSM.",
                   (Fact("Status", status), Fact("Seed SHA-256", d.get("seed_sha256", ""), digest=True)))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'bytes': 'extracted bytes given to the HSM with C_SeedRandom',
}

KIND = StepKind("seed_hsm", parse, lambda p: f"C_SeedRandom with {p.bytes} extracted bytes", run,
                requires=("collect_entropy",), phase=PHASES[0], sheet=sheet, record=record, docs=DOCS)
