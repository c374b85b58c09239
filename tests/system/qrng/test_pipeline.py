"""The pipeline fails closed and accounts for every block."""

from __future__ import annotations

import os

import pytest

from qrng.config import EntropyConfig, config_from_text
from qrng.errors import ConfigError, EntropyError, HealthTestFailure, PipelineFailed, SourceError
from qrng.pipeline import Pipeline
from qrng.sources.simulator import Fault

FAULTS = [
    ("stuck_at", HealthTestFailure),
    ("repeating_pattern", HealthTestFailure),
    ("saturation", HealthTestFailure),
    ("low_entropy", HealthTestFailure),
    ("supply_failure", SourceError),
]


@pytest.mark.parametrize("kind,exc", FAULTS)
def test_faults_fail_closed_and_stay_failed(kind, exc):
    p = Pipeline(EntropyConfig().with_faults((Fault(kind, 3000),)))
    with pytest.raises(exc):
        p.generate(64)
    assert p.failed and p.report().state == "failed"
    with pytest.raises(PipelineFailed):
        p.generate(1)
    with pytest.raises(PipelineFailed):
        p.seed(b"x")


def test_fault_after_output_stops_later_output():
    p = Pipeline(EntropyConfig().with_faults((Fault("stuck_at", 300000),)))
    first = p.generate(32)
    assert len(first) == 32
    with pytest.raises(EntropyError):
        while True:
            p.extracted(4096)
    with pytest.raises(PipelineFailed):
        p.generate(32)


def test_reset_respects_configuration():
    cfg = config_from_text("health: {allow_reset: false}\nsource: {faults: ['stuck_at@0']}")
    p = Pipeline(cfg)
    with pytest.raises(HealthTestFailure):
        p.generate(1)
    with pytest.raises(PipelineFailed, match="allow_reset"):
        p.reset()


def test_accounting_and_prediction_resistance():
    p = Pipeline(EntropyConfig())
    a = p.generate(100)
    b = p.generate(100, prediction_resistance=True)
    assert a != b
    r = p.report()
    assert r.accounting.bytes_out == 200 and r.accounting.reseeds == 1
    assert r.accounting.startup_samples == 1024
    assert r.accounting.extracted_bytes_used == 96  # instantiate 48 + prediction-resistance reseed 48
    assert r.accounting.raw_samples >= r.accounting.startup_samples + 131072
    assert r.health.samples_tested == r.accounting.raw_samples


def test_extracted_bytes_are_never_reused():
    p = Pipeline(EntropyConfig())
    chunks = [p.extracted(64) for _ in range(50)]
    assert len(set(chunks)) == 50


def test_fork_child_never_repeats_parent_bytes():
    p = Pipeline(EntropyConfig())
    p.generate(16)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, p.generate(32))
        os._exit(0)
    os.close(w)
    parent = p.generate(32)
    child = os.read(r, 64)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != parent


@pytest.mark.parametrize("extractor", ["sha256", "von_neumann"])
def test_other_extractors(extractor):
    p = Pipeline(config_from_text(f"extractor: {{type: {extractor}}}"))
    assert len(p.generate(64)) == 64 and p.report().accounting.extracted_bits > 0


@pytest.mark.parametrize("text,path", [
    ("source: {type: nope}", "source.type"),
    ("source: {type: file}", "source.claimed_min_entropy"),
    ("health: {alpha_log2: 3}", "health.alpha_log2"),
    ("drbg: {reseed_interval: 0}", "drbg.reseed_interval"),
    ("drbg: {typo: 1}", "drbg.typo"),
    ("source: {faults: [{kind: stuck_at, start: -1}]}", "source.faults[0].start"),
    ("version: 2", "version"),
    ("health: {startup_samples: 10}", "health.startup_samples"),
    ("a: 1\na: 2", "duplicate key"),
    ("source: [1, 2", "malformed YAML"),
])
def test_config_errors_name_the_field(text, path):
    with pytest.raises(ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
        config_from_text(text)


def test_large_request_crossing_the_reseed_interval():
    """A request spanning many 2^19-bit generates reseeds wherever the interval is reached."""
    p = Pipeline(config_from_text("drbg: {reseed_interval: 3}"))
    out = p.generate(10 * 65536 + 7)
    assert len(out) == 10 * 65536 + 7
    assert p.report().accounting.reseeds == 3  # requests 4, 7 and 10 of the 11 found the counter past 3


def test_prediction_resistance_reseeds_every_request():
    p = Pipeline(EntropyConfig())
    p.generate(3 * 65536, prediction_resistance=True)
    assert p.report().accounting.reseeds == 3


def test_periodic_assessment_fails_closed_when_the_estimate_drops():
    # the claim (7.5 bits) is far above what the model gives: the periodic SP 800-90B assessment refuses output
    cfg = config_from_text("source: {claimed_min_entropy: 7.5, seed: 3}\n"
                           "assessment: {every_samples: 100000, window_samples: 100000, max_shortfall: 0.5}\n"
                           "health: {alpha_log2: -40}")
    p = Pipeline(cfg)
    with pytest.raises(EntropyError, match="SP 800-90B assessment"):
        p.raw(250000)
    assert p.failed and p.last_assessment is not None and p.last_assessment < 7.0


def test_periodic_assessment_passes_an_honest_claim():
    cfg = config_from_text("source: {seed: 4}\nassessment: {every_samples: 100000, window_samples: 100000}")
    p = Pipeline(cfg)
    p.raw(250000)
    assert p.last_assessment is not None and p.last_assessment >= p.info.claimed_min_entropy


def test_auditor_rederivation_equals_the_pipeline_extraction():
    from qrng.extract import rederive
    p = Pipeline(EntropyConfig())
    samples = p.raw(300000)
    t = p._toeplitz
    assert rederive(samples, 8, p.extractor_seed, t.n_bits, t.m_bits) == p.extract_samples(samples)
