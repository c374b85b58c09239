"""health_check: start-up and continuous SP 800-90B 4.4 tests over a number of samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qrng.strictyaml import Fields

from .base import Step, StepContext, StepKind, StepResult, positive

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


KIND = StepKind("health_check", parse,
                lambda p: f"start-up and continuous SP 800-90B tests over {p.samples:,} samples", run)
