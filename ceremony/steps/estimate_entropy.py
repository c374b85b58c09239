"""estimate_entropy: SP 800-90B non-IID assessment (6.3) of the samples a collect_entropy step kept; fails closed
when the estimate is below the policy's floor, or below the source's claim by more than the policy allows."""

from __future__ import annotations

from dataclasses import dataclass
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
    samples_from: str
    bits_per_symbol: int | None = None


def parse(f: Fields) -> Params:
    bits = f.integer("bits_per_symbol", None, lo=1, hi=8)
    return Params(f.text("samples_from"), bits)


def check(step: Step, view: PlanView) -> list[str]:
    src = view.earlier.get(step.params.samples_from)
    if src is None or src.type != "collect_entropy":
        return [f"{step.path}.samples_from must name an earlier collect_entropy step "
                f"(got {step.params.samples_from!r})"]
    return []


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    import numpy as np

    from qrng.estimate.nonid import assess_non_iid
    p: Params = step.params
    src = c.script.step(p.samples_from)
    bits = p.bits_per_symbol or c.pipeline.info.bits_per_sample
    samples = np.frombuffer((c.out / src.params.output).read_bytes(), dtype=np.uint8)
    a = assess_non_iid(samples, bits, lambda m: c.progress(f"[{step.id}] {m}"))
    claimed = c.pipeline.info.claimed_min_entropy
    pol = c.plan.policy
    data = {"samples": int(samples.size), "bits_per_symbol": bits, "h_original": a.h_original,
            "h_bitstring": a.h_bitstring, "h_assessed": a.h_assessed, "claimed_min_entropy": claimed,
            "estimators": {e.name + (" (bit string)" if e in a.bitstring else ""): e.h
                           for e in a.literal + a.bitstring}}
    c.event(step.id, "entropy.estimated", data)
    c.progress(f"[{step.id}] SP 800-90B estimate {a.h_assessed:.4f} bits per sample (claimed {claimed})")
    if pol.min_estimated_entropy is not None and a.h_assessed < pol.min_estimated_entropy:
        raise StepFailed(f"SP 800-90B estimate {a.h_assessed:.4f} bits/sample is below the policy's floor "
                         f"{pol.min_estimated_entropy}")
    if claimed - a.h_assessed > pol.max_estimate_shortfall:
        raise StepFailed(f"SP 800-90B estimate {a.h_assessed:.4f} bits/sample is below the claimed {claimed} by "
                         f"more than the policy's {pol.max_estimate_shortfall}")
    return {}, data


def sheet(step: Step, plan: Plan) -> SheetRow:
    pol = plan.policy
    h = plan.claimed_min_entropy
    floor = h - pol.max_estimate_shortfall
    if pol.min_estimated_entropy is not None:
        floor = max(floor, pol.min_estimated_entropy)
    return SheetRow(("operator",),
                    f"The samples of step {step.params.samples_from} are assessed with the ten estimators of "
                    "SP 800-90B 6.3 (non-IID track). The lowest estimate must not fall below the source's claim by "
                    "more than the policy allows.",
                    ("Run the step (it takes a while; the screen shows progress with an estimate of the time left).",
                     "Read aloud the estimate; witnesses compare it with the minimum below."),
                    (Fact("Claimed", f"{h:g} bits per sample"),
                     Fact("Minimum accepted (policy)", f"{floor:g} bits per sample"),
                     Fact("Screen shows", f"[{step.id}] SP 800-90B estimate ... bits per sample")))


def record(log: StepLog) -> Section:
    d = log.data("entropy.estimated")
    h, claimed = d.get("h_assessed", 0.0), d.get("claimed_min_entropy", 0.0)
    verdict = "at or above" if h >= claimed else "below"
    facts = [Fact("Samples assessed", f"{d.get('samples', 0):,} symbols of {d.get('bits_per_symbol', '')} bits"),
             Fact("Claimed min-entropy", f"{claimed:g} bits per sample"),
             Fact("Assessed min-entropy", f"{h:.4f} bits per sample"),
             Fact("H_original / H_bitstring", f"{d.get('h_original', 0):.4f} / {d.get('h_bitstring', 0):.4f}")]
    facts += [Fact(name, f"{value:.4f}") for name, value in sorted(d.get("estimators", {}).items(),
                                                                  key=lambda kv: kv[1])]
    return Section(f"The SP 800-90B 6.3 assessment gives {h:.4f} bits per sample, {verdict} the claimed {claimed:g}. "
                   "The estimators' values are listed lowest first (bit-string estimators per bit).", tuple(facts))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'samples_from': 'the id of an earlier collect_entropy step whose kept samples are assessed',
    'bits_per_symbol': "bits per sample for the assessment; default: the source's own",
}

KIND = StepKind("estimate_entropy", parse, lambda p: f"SP 800-90B assessment of the samples of step {p.samples_from}",
                run, refs=lambda p: {"samples_from": (p.samples_from,)}, check=check, phase=PHASES[0], sheet=sheet,
                record=record, docs=DOCS)
