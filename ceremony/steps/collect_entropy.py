"""collect_entropy: commit to raw samples (SHA-256, logged before extraction), keep them and the extractor seed,
extract. An auditor re-runs the extraction from what is kept (ceremony.verify)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qrng.strictyaml import Fields

from ..errors import StepFailed
from .base import Step, StepContext, StepKind, StepResult, output_name, positive, sha256_hex

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


KIND = StepKind("collect_entropy", parse,
                lambda p: f"commit to {p.samples:,} raw samples (SHA-256), keep them, extract", run,
                outputs=lambda p: (p.output, p.output + ".seed"), on_resume=resume)
