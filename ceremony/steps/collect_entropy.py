"""collect_entropy: commit to raw samples (SHA-256, logged before extraction), keep them and the extractor seed,
extract. An auditor re-runs the extraction from what is kept (ceremony.verify)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qrng.yaml_input import Fields

from ..errors import StepFailed
from .base import (
    OUTPUT_DOCS,
    PHASES,
    Fact,
    Section,
    SheetRow,
    Step,
    StepContext,
    StepKind,
    StepLog,
    StepResult,
    output_name,
    positive,
    sha256_hex,
)

if TYPE_CHECKING:
    from ..model import Plan

MAX_SAMPLES = 1 << 30  # kept in memory and on disk: 1 GiB of 8-bit samples at most


@dataclass(frozen=True)
class Params:
    samples: int
    output: str


def parse(f: Fields) -> Params:
    return Params(positive(f, "samples", hi=MAX_SAMPLES), output_name(f))


def run(c: StepContext, step: Step, prep: dict[str, Any]) -> StepResult:
    import numpy as np
    p: Params = step.params
    n = p.samples
    samples = np.concatenate([c.pipeline.raw(min(1 << 20, n - i)) for i in range(0, n, 1 << 20)])
    raw = samples.tobytes()
    commitment = sha256_hex(raw)
    c.event(step.id, "entropy.committed", {"samples": n, "raw_sha256": commitment,
                                           "bits_per_sample": c.pipeline.info.bits_per_sample})
    outputs = {p.output: c.stage(step.id, p.output, raw),
               p.output + ".seed": c.stage(step.id, p.output + ".seed", c.pipeline.extractor_seed)}
    c.progress(f"[{step.id}] raw samples committed: SHA-256 {commitment[:16]}...")
    from qrng.health import statistics
    cut = c.pipeline.report().cutoffs
    stats = statistics(samples, cut.window)
    c.event(step.id, "health.statistics", {
        "samples": n, "window": cut.window, "rct_cutoff": cut.rct, "apt_cutoff": cut.apt, "max_run": stats.max_run,
        "max_apt": stats.max_apt, "run_lengths": [list(x) for x in stats.run_lengths],
        "apt_counts": [list(x) for x in stats.apt_counts]})
    c.extracted = c.pipeline.extract_samples(samples)
    if len(c.extracted) < 64:
        raise StepFailed(f"{n} samples gave only {len(c.extracted)} extracted bytes; collect more")
    rep = c.pipeline.report()
    lengths = c.pipeline.toeplitz_lengths()
    data = {"raw_sha256": commitment, "extracted_bytes": len(c.extracted), "extracted_sha256": sha256_hex(c.extracted),
            "extractor": rep.extractor, "extractor_seed_sha256": sha256_hex(c.pipeline.extractor_seed),
            "toeplitz_n": lengths[0] if lengths else None, "toeplitz_m": lengths[1] if lengths else None,
            "bits_per_sample": c.pipeline.info.bits_per_sample,
            "entropy_credited_bits": n * rep.source.claimed_min_entropy}
    c.event(step.id, "entropy.extracted", data, files=outputs)
    return outputs, data


def resume(c: StepContext, step: Step) -> None:
    """After a resume, extraction is re-run from the retained raw samples (deterministic)."""
    import numpy as np
    p: Params = step.params
    raw = (c.out / p.output).read_bytes()
    seed = (c.out / (p.output + ".seed")).read_bytes()
    c.extracted = c.pipeline.extract_samples(np.frombuffer(raw, dtype=np.uint8), seed)
    if sha256_hex(c.extracted) != c.results[step.id]["extracted_sha256"]:
        raise StepFailed("re-derived entropy does not match the log")


def sheet(step: Step, plan: Plan) -> SheetRow:
    p: Params = step.params
    h = plan.claimed_min_entropy
    return SheetRow(("operator",),
                    f"We collect {p.samples:,} raw samples, commit to them with SHA-256 before anything else uses "
                    f"them, keep them in {p.output} for the auditors, and extract random bytes from them "
                    f"({plan.entropy.extractor.type}).",
                    ("Run the step.", "Read aloud the first 16 hex digits of the commitment shown on screen; "
                                      "witnesses write them in their notes."),
                    (Fact("Samples", f"{p.samples:,}"),
                     Fact("Entropy credited", f"{p.samples * h:,.0f} bits ({h:g} bits per sample claimed)"),
                     Fact("Kept as", f"{p.output} and {p.output}.seed"),
                     Fact("Screen shows", f"[{step.id}] raw samples committed: SHA-256 ...")))


def record(log: StepLog) -> Section:
    c, x, s = log.data("entropy.committed"), log.data("entropy.extracted"), log.data("health.statistics")
    facts = [Fact("Raw samples", f"{c.get('samples', 0):,} of {c.get('bits_per_sample', '')} bits"),
             Fact("Commitment (SHA-256 of the raw samples)", c.get("raw_sha256", ""), digest=True),
             Fact("Extractor", str(x.get("extractor", ""))),
             Fact("Extractor seed SHA-256", x.get("extractor_seed_sha256", ""), digest=True),
             Fact("Extracted", f"{x.get('extracted_bytes', 0):,} bytes"),
             Fact("Extracted SHA-256", x.get("extracted_sha256", ""), digest=True),
             Fact("Entropy credited", f"{x.get('entropy_credited_bits', 0):,.0f} bits")]
    if s:
        facts += [Fact("Longest run observed", f"{s['max_run']} (repetition count cutoff {s['rct_cutoff']})"),
                  Fact("Highest window count observed",
                       f"{s['max_apt']} of {s['window']} (adaptive proportion cutoff {s['apt_cutoff']})")]
    return Section("The raw samples were committed to with SHA-256 before extraction and kept with the "
                   "extractor's seed, so that an auditor can re-run the extraction and obtain the same bytes.",
                   tuple(facts))


# what each field does, for docs/ceremony-reference.md (ceremony.reference)
DOCS: dict[str, str] = {
    'samples': 'raw samples to read, commit to (SHA-256, logged before extraction) and keep',
    **OUTPUT_DOCS,
}

KIND = StepKind("collect_entropy", parse,
                lambda p: f"commit to {p.samples:,} raw samples (SHA-256), keep them, extract", run,
                outputs=lambda p: (p.output, p.output + ".seed"), on_resume=resume, phase=PHASES[0], sheet=sheet,
                record=record, docs=DOCS)
