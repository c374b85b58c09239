"""The run sheet: what people in the room read, do, compare and initial, one row per step. A pure function of the
plan the engine runs (and the bytes of the script and policy it was made from), so it cannot drift from it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..plan import Plan
from ..steps import REGISTRY
from .pgp import pgp_words
from .vocabulary import Fact, SheetRow

__all__ = ["RunSheet", "SheetPage", "SheetStep", "run_sheet"]


@dataclass(frozen=True)
class SheetStep:
    number: int
    id: str
    type: str
    actors: tuple[str, ...]  # as people are named in the room: "operator (Alice Operator)"
    row: SheetRow
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class SheetPage:
    phase: str
    steps: tuple[SheetStep, ...]


@dataclass(frozen=True)
class RunSheet:
    ceremony: str
    description: str
    simulator: bool
    cover: tuple[Fact, ...]
    digests: tuple[Fact, ...]  # script and policy: SHA-256 and PGP words
    roles: tuple[Fact, ...]
    witnesses: tuple[str, ...]
    initials: tuple[str, ...]  # column heads: Operator and one per witness
    pages: tuple[SheetPage, ...]


def _actor(name: str, plan: Plan) -> str:
    if name == "witnesses":
        return "witnesses"
    person = plan.script.roles.get(name)
    role = name.replace("_", " ")
    return f"{role} ({person})" if person else role


def short_name(witness: str) -> str:
    """The last part of a witness key name (witness.example/carol -> carol): a column head."""
    return witness.rsplit("/", 1)[-1]


def run_sheet(plan: Plan, script_bytes: bytes, policy_bytes: bytes) -> RunSheet:
    script, policy, profile = plan.script, plan.policy, plan.profile
    simulator = plan.entropy.source.type == "simulator" or bool(plan.entropy.source.emulator)
    pages: list[SheetPage] = []
    for n, (step, planned) in enumerate(zip(script.steps, plan.steps, strict=True), 1):
        kind = REGISTRY[step.type]
        row = kind.sheet(step, plan)
        item = SheetStep(n, step.id, step.type, tuple(_actor(a, plan) for a in row.actors), row, planned.outputs)
        if pages and pages[-1].phase == kind.phase:
            pages[-1] = SheetPage(kind.phase, pages[-1].steps + (item,))
        else:
            pages.append(SheetPage(kind.phase, (item,)))
    s_sha = hashlib.sha256(script_bytes).digest()
    p_sha = hashlib.sha256(policy_bytes).digest()
    cover = (Fact("Script", script.path.name), Fact("Policy", f"{policy.name} ({policy.path.name})"),
             Fact("Profile", f"{profile.name}: token '{profile.token_label}'"),
             Fact("PKCS#11 module", profile.module, digest=True),
             Fact("Entropy source", plan.source_label + (" - NOT A PHYSICAL DEVICE" if simulator and
                                                         "not a physical device" not in plan.source_label else "")),
             Fact("Claimed min-entropy", f"{plan.claimed_min_entropy:g} bits per sample"),
             Fact("Output folder", str(script.output), digest=True),
             Fact("Steps", f"{len(script.steps)} in {len(pages)} part(s)"))
    digests = (Fact("Script SHA-256", s_sha.hex(), digest=True), Fact("Script PGP words", pgp_words(s_sha)),
               Fact("Policy SHA-256", p_sha.hex(), digest=True), Fact("Policy PGP words", pgp_words(p_sha)))
    roles = tuple(Fact(k.replace("_", " "), v) for k, v in script.roles.items())
    initials = ("Operator",) + tuple(short_name(w) for w in script.witnesses)
    return RunSheet(script.ceremony, script.description, simulator, cover, digests, roles, script.witnesses,
                    initials, tuple(pages))
