"""health_check: start-up and continuous SP 800-90B 4.4 tests over a number of samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qrng.yaml_input import Fields

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
)

if TYPE_CHECKING:
    from ..model import Plan

MAX_SAMPLES = 1 << 34


@dataclass(frozen=True)
class Params:
    samples: int


def parse(f: Fields) -> Params:
    return Params(positive(f, "samples", hi=MAX_SAMPLES))


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    c.pipeline.startup()
    n = step.params.samples
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


def sheet(step: Step, plan: Plan) -> SheetRow:
    from qrng.health import cutoffs
    n = step.params.samples
    bits = plan.entropy.source.bits_per_sample
    cut = cutoffs(plan.claimed_min_entropy, bits, plan.entropy.health.alpha_log2)
    return SheetRow(("operator",),
                    f"The source's start-up and continuous health tests (SP 800-90B 4.4) run over {n:,} samples. "
                    "Any failure stops the ceremony: no random bytes are used after a failed test.",
                    ("Run the step; watch the count of tested samples reach the total.",),
                    (Fact("Samples", f"{n:,}"),
                     Fact("Repetition count cutoff", f"{cut.rct} identical samples in a row (4.4.1)"),
                     Fact("Adaptive proportion cutoff", f"{cut.apt} in a window of {cut.window} (4.4.2)"),
                     Fact("False alarm rate", f"alpha = 2^{cut.alpha_log2:g} per test"),
                     Fact("Screen shows", f"[{step.id}] {n:,}/{n:,} samples tested")))


def record(log: StepLog) -> Section:
    d = log.data("health.passed")
    cut = d.get("cutoffs", {})
    return Section(
        f"The health tests of SP 800-90B 4.4 ran over {d.get('samples', 0):,} samples from the source and none "
        "failed.",
        (Fact("Samples tested", f"{d.get('samples_tested', 0):,}"),
         Fact("Claimed min-entropy", f"{d.get('claimed_min_entropy', '')} bits per sample"),
         Fact("Repetition count test (4.4.1)", f"cutoff {cut.get('rct')}; {d.get('rct_failures', 0)} failures"),
         Fact("Adaptive proportion test (4.4.2)",
              f"cutoff {cut.get('apt')} in {cut.get('window')}; {d.get('apt_failures', 0)} failures"),
         Fact("False alarm rate", f"alpha = 2^{cut.get('alpha_log2', '')}")))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'samples': 'raw samples run through the start-up and continuous health tests',
}

KIND = StepKind("health_check", parse,
                lambda p: f"start-up and continuous SP 800-90B tests over {p.samples:,} samples", run,
                phase=PHASES[0], sheet=sheet, record=record, docs=DOCS)
