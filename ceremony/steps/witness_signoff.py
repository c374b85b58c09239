"""witness_signoff: each witness named by the script cosigns the ceremony's final checkpoint
(c2sp.org/tlog-cosignature v1); the policy sets the quorum. It seals the ceremony: it must be the last step, and
the transcript, rendered after it, shows the cosigned checkpoint."""

from __future__ import annotations

import datetime
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
)

if TYPE_CHECKING:
    from ..model import Plan


@dataclass(frozen=True)
class Params:
    pass


def load_witness_policy(path: str) -> Any:
    """The profile's C2SP tlog-policy (witnesses reached over tlog-witness), parsed strictly."""
    from transparency.policy import load_policy
    return load_policy(path)


def check(step: Step, view: PlanView) -> list[str]:
    v = []
    if len(view.script.witnesses) < view.policy.witness_quorum:
        v.append(f"policy quorum is {view.policy.witness_quorum} witnesses; the script names "
                 f"{len(view.script.witnesses)}")
    if view.profile.witness_policy:
        from transparency.errors import AuditError
        try:
            pol = load_witness_policy(view.profile.witness_policy)
        except (OSError, AuditError) as exc:
            return v + [f"profile {view.profile.name}: witness_policy: {exc}"]
        by_key = {w.key.name: w for w in pol.witnesses.values()}
        missing = [w for w in view.script.witnesses if w not in by_key or not by_key[w].url]
        if missing:
            v.append(f"profile {view.profile.name}: witness_policy {view.profile.witness_policy} has no witness with "
                     f"a URL for {', '.join(missing)}")
        return v
    missing = [w for w in view.script.witnesses if w not in view.profile.witness_keys]
    if missing:
        v.append(f"profile {view.profile.name} has no key for witness(es) {', '.join(missing)}")
    return v


KeyIds = set[tuple[str, bytes]]  # (key name, key ID) of cosignatures: a key is never counted by its name alone


def required_cosignatures(plan: Any) -> int:
    """How many distinct witness keys must cosign the sealing checkpoint: the policy's quorum, and without a
    tlog-policy every witness the script names."""
    if plan.profile.witness_policy:
        return int(plan.policy.witness_quorum)
    return max(int(plan.policy.witness_quorum), len(plan.script.witnesses))


def witness_requirement(plan: Any) -> dict[str, Any]:
    """What ceremony.started records for the auditor (transparency.verdict.recorded_requirement reads it back): the
    number of distinct witness keys the final checkpoint needs and, with a tlog-policy, the policy's text."""
    out: dict[str, Any] = {"witness_quorum": required_cosignatures(plan)}
    if plan.profile.witness_policy:
        out["witness_policy"] = Path(plan.profile.witness_policy).read_bytes().decode("utf-8", "surrogateescape")
    return out


def cosigned_ids(lines: list[str]) -> KeyIds:
    """(name, key ID) of the cosignature lines of a checkpoint record."""
    from transparency.verify import signature_line_ids
    return signature_line_ids(lines)


def quorum_met(plan: Any, have: KeyIds) -> bool:
    """The ceremony policy's count of distinct keys and, with a witness policy, its quorum rule, matched by key."""
    if len(have) < required_cosignatures(plan):
        return False
    if plan.profile.witness_policy:
        pol = load_witness_policy(plan.profile.witness_policy)
        return bool(pol.met_by(w.key for w in pol.witnesses.values() if (w.key.name, w.key.key_id) in have))
    return True


def _from_witnesses(c: StepContext, step: Step, have: KeyIds) -> None:
    """Ask the policy's witnesses over tlog-witness (in parallel, 409 resent, answers verified) and add their
    cosignatures to the log."""
    from transparency.merkle import TreeLevels
    from transparency.note import parse_note
    from transparency.verify import _with_cosignatures, parse_log
    from transparency.witness_client import collect_cosignatures
    pol = load_witness_policy(c.plan.profile.witness_policy)
    view = parse_log((c.out / "audit.log").read_bytes())
    last = view.checkpoints[-1]
    tree = TreeLevels(view.leaf_hashes[:last.position])
    lines, outcomes, _ = collect_cosignatures(last.note, pol, lambda old: tree.consistency_proof(old, last.position))
    for ln in lines:
        sig = next(s for s in parse_note(_with_cosignatures(last) + ln)[1] if s.line() == ln)
        if (sig.name, sig.key_id) not in have:
            c.log.add_cosignature(c.log.size, sig)
            have.add((sig.name, sig.key_id))
    for o in outcomes:
        c.progress(f"[{step.id}] witness {o.name}: {o.status} ({o.detail})")
    if not quorum_met(c.plan, have):
        raise StepFailed(f"witness quorum of {c.plan.profile.witness_policy} not met: "
                         + "; ".join(f"{o.name} {o.status}: {o.detail}" for o in outcomes))


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    c.event(step.id, "witness.signoff.requested", {"witnesses": list(c.script.witnesses),
                                                   "quorum": required_cosignatures(c.plan)})
    return {}, {"witnesses": list(c.script.witnesses)}


def cosign_missing(c: StepContext, step: Step) -> None:
    """Checkpoint, then add the cosignature of every witness that has not cosigned it yet."""
    from transparency.note import ALG_COSIGNATURE_V1, Checkpoint, cosign, load_ed25519_signer
    from transparency.verify import parse_log
    c.checkpoint()
    view = parse_log((c.out / "audit.log").read_bytes())
    have = cosigned_ids(view.checkpoints[-1].cosignatures)
    if c.plan.profile.witness_policy:
        _from_witnesses(c, step, have)
        return
    text = Checkpoint(c.origin, c.log.size, c.log.root()).text()
    for name in c.script.witnesses:
        key_file = Path(c.plan.profile.witness_keys[name])
        w = load_ed25519_signer(key_file.read_text(), ALG_COSIGNATURE_V1)
        if w.name != name:
            raise StepFailed(f"witness key {key_file} belongs to {w.name}, not {name}")
        if (w.name, w.verifier.key_id) in have:
            continue
        c.log.add_cosignature(c.log.size, cosign(text, w, int(datetime.datetime.now(datetime.UTC).timestamp())))
        have.add((w.name, w.verifier.key_id))
        c.progress(f"[{step.id}] cosigned by {name}")
    if not quorum_met(c.plan, have):
        raise StepFailed(f"{len(have)} witness cosignatures; the policy requires {required_cosignatures(c.plan)} "
                         "distinct witness keys")


def _parse(f: Fields) -> Params:
    return Params()


def sheet(step: Step, plan: Plan) -> SheetRow:
    return SheetRow(("witnesses",),
                    "Each witness cosigns the ceremony's final checkpoint with their own key, then signs the sign-off "
                    "page of this sheet.",
                    ("Run the step; each witness's cosignature is reported on screen.",
                     "Each witness signs the sign-off page."),
                    (Fact("Witnesses", ", ".join(plan.script.witnesses)),
                     Fact("Quorum (policy)", str(plan.policy.witness_quorum)),
                     Fact("Screen shows", f"[{step.id}] cosigned by ... (one line per witness)")))


def record(log: StepLog) -> Section:
    d = log.data("witness.signoff.requested")
    return Section("The witnesses were asked to cosign the ceremony's final checkpoint (C2SP tlog-cosignature); "
                   "their cosignatures are on the cover of this transcript.",
                   (Fact("Witnesses", ", ".join(d.get("witnesses", []))), Fact("Quorum", str(d.get("quorum", "")))))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {}

KIND = StepKind("witness_signoff", _parse, lambda p: "each witness cosigns the ceremony's current checkpoint", run,
                check=check, on_resume=cosign_missing, after=cosign_missing, seals=True, phase=PHASES[2],
                sheet=sheet, record=record, sealed=lambda plan, lines: quorum_met(plan, cosigned_ids(lines)),
                started=witness_requirement, docs=DOCS)
