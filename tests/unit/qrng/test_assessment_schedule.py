"""The periodic SP 800-90B assessment's schedule, window and verdict (issue 22: the entropy floor measured by
default in qrngd). The estimator itself is replaced by a recorder here; tests/system/qrng/test_pipeline.py runs
the real one."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from qrng.config import DAEMON_ASSESS_EVERY, config_from_text
from qrng.errors import AssessmentFailure, EntropyError
from qrng.pipeline import Pipeline


class Recorder(Pipeline):
    """A pipeline whose assessment returns ``h`` and records the windows it was given."""

    h = 8.0
    gate: threading.Event | None = None

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.windows: list[np.ndarray] = []
        self.tapped: list[np.ndarray] = []
        super().__init__(*args, tap=lambda b: self.tapped.append(b.copy()), **kwargs)

    def _assess(self, window: np.ndarray) -> float:
        if self.gate is not None:
            assert self.gate.wait(10)
        self.windows.append(window)
        return self.h


def _pipeline(every: int | None, window: int = 10_000, background: bool = False, claim: float = 7.0,
              shortfall: float = 0.0) -> Recorder:
    assessment = "" if every is None else (f"assessment: {{every_samples: {every}, window_samples: {window}, "
                                           f"max_shortfall: {shortfall}}}\n")
    cfg = config_from_text(f"source: {{seed: 5, claimed_min_entropy: {claim}}}\nhealth: {{block_samples: 1024}}\n"
                           f"{assessment}")
    return Recorder(cfg, assess_in_background=background)


@pytest.mark.parametrize(("every", "window", "reads", "expected"), [
    (None, 10_000, [50_000], 0),                 # absent: a pipeline in a consumer's process does not assess
    (0, 10_000, [50_000], 0),                    # 0: off
    (100_000, 10_000, [5_000], 0),               # the window (with the start-up samples) is not full yet
    (100_000, 10_000, [20_000], 1),              # first assessment as soon as the window is full
    (100_000, 10_000, [20_000, 80_000], 1),      # the next only after every_samples more
    (100_000, 10_000, [20_000, 110_000], 2),
    (30_000, 10_000, [200_000], 7),              # 1,024-sample blocks: at 10,240, then every 30,720
])
def test_assessment_schedule(every: int | None, window: int, reads: list[int], expected: int) -> None:
    p = _pipeline(every, window)
    for n in reads:
        p.raw(n)
    assert len(p.windows) == expected


@pytest.mark.parametrize("window", [10_000, 12_345, 100_003])
def test_the_window_is_the_latest_samples_in_order(window: int) -> None:
    p = _pipeline(window, window)  # assessed every window: each one sees exactly the samples since the last
    for n in (7_000, 50_001, 133_333):
        p.raw(n)
    assert p.windows
    stream = np.concatenate(p.tapped)
    last = p.windows[-1]
    assert last.size == window
    # the assessment ran at the end of some block; the window is the `window` samples read up to that point
    ends = np.cumsum([b.size for b in p.tapped])
    assert any(np.array_equal(last, stream[e - window:e]) for e in ends if e >= window)


def test_a_verdict_below_the_claim_fails_closed() -> None:
    p = _pipeline(50_000, 10_000, claim=7.0, shortfall=0.5)
    p.h = 6.4
    with pytest.raises(AssessmentFailure, match="below the claimed 7.0 by more than 0.5"):
        p.raw(20_000)
    assert p.failed and p.last_assessment == 6.4
    with pytest.raises(EntropyError):
        p.generate(16)


def test_background_verdict_is_applied_by_the_next_check_before_anything_else_is_served() -> None:
    p = _pipeline(50_000, 10_000, background=True)
    p.h, p.gate = 5.0, threading.Event()
    p.raw(20_000)                       # the assessment starts in its thread and waits at the gate
    assert p._assessing is not None and not p.failed
    p.raw(1_000)                        # serving goes on meanwhile (no verdict yet)
    p.gate.set()
    p._assessing.join(10)
    assert not p.failed                 # computed, not yet applied: the pipeline's own thread applies it
    with p.exclusive(), pytest.raises(EntropyError, match="SP 800-90B assessment"):
        p.check_source()                # an idle qrngd's source thread asks this every 50 ms
    assert p.failed and p.last_assessment == 5.0


def test_background_assessment_that_cannot_be_made_fails_closed_and_names_why() -> None:
    class Broken(Recorder):
        def _assess(self, window: np.ndarray) -> float:
            raise MemoryError("no room")

    cfg = config_from_text("source: {seed: 6}\nassessment: {every_samples: 50000, window_samples: 10000}\n")
    p = Broken(cfg, assess_in_background=True)
    p.raw(20_000)
    assert p._assessing is not None
    p._assessing.join(10)
    with pytest.raises(EntropyError, match="could not be made .MemoryError: no room"):
        p.raw(100)


@pytest.mark.parametrize(("text", "expected"), [
    ("", DAEMON_ASSESS_EVERY),                                   # absent: measured by default in qrngd
    ("assessment: {every_samples: 0}\n", 0),                     # switched off
    ("assessment: {every_samples: 1000000}\n", 1_000_000),
])
def test_qrngd_assesses_unless_switched_off(text: str, expected: int) -> None:
    from qrngd.run import _assessed_by_default
    assert _assessed_by_default(config_from_text(text)).assessment.every_samples == expected
    assert config_from_text(text).assessment.every_samples == (None if not text else expected)


@pytest.mark.parametrize(("h", "serves"), [(8.0, True), (6.0, False)])
def test_qualify_assesses_one_full_window_before_any_output(h: float, serves: bool) -> None:
    p = _pipeline(1 << 26, 10_000)
    p.h = h
    if serves:
        p.qualify()
        assert len(p.windows) == 1 and p.windows[0].size == 10_000
        assert p.report().accounting.bytes_out == 0 and len(p.generate(32)) == 32
        assert len(p.windows) == 1  # the window was this assessment's: no second one at once
    else:
        with pytest.raises(AssessmentFailure):
            p.qualify()
        assert p.failed and p.report().accounting.bytes_out == 0


def test_min_interval_spaces_assessments_in_time() -> None:
    cfg = config_from_text("source: {seed: 5}\nhealth: {block_samples: 1024}\n"
                           "assessment: {every_samples: 10000, window_samples: 10000, min_interval_s: 3600}\n")
    p = Recorder(cfg)
    p.raw(200_000)  # twenty intervals' worth of samples, within the hour: only the first assessment
    assert len(p.windows) == 1


def test_qrngd_default_is_at_most_once_a_minute() -> None:
    from qrng.config import DAEMON_ASSESS_MIN_INTERVAL_S
    from qrngd.run import _assessed_by_default
    assert _assessed_by_default(config_from_text("")).assessment.min_interval_s == DAEMON_ASSESS_MIN_INTERVAL_S
    assert _assessed_by_default(config_from_text("assessment: {every_samples: 5}\n")).assessment.min_interval_s == 0


@pytest.mark.parametrize(("text", "message"), [
    ("assessment: {every_samples: -1}", "assessment.every_samples must be at least 0 (got -1)"),  # not "and None"
    ("assessment: {every_samples: 1.5}", "assessment.every_samples must be an integer, got float"),
    ("assessment: {every_samples: '../etc'}", "assessment.every_samples must be an integer, got str"),
    ("assessment: {min_interval_s: .nan}", "assessment.min_interval_s must be a finite number, got nan"),
    ("assessment: {min_interval_s: .inf}", "assessment.min_interval_s must be a finite number, got inf"),
    ("assessment: {min_interval_s: -5}", "assessment.min_interval_s must be between 0.0 and 86400.0 (got -5)"),
    ("assessment: {window_samples: 99999999999}", "assessment.window_samples must be between 10000 and"),
    ("assessment: {every: 5}", "assessment.every"),
])
def test_hostile_assessment_settings_are_refused_naming_the_field(text: str, message: str) -> None:
    from qrng.errors import ConfigError
    with pytest.raises(ConfigError) as info:
        config_from_text(text)
    assert message in str(info.value)


def test_the_background_assessment_yields_the_cpu_to_serving() -> None:
    """qrngd's periodic assessment runs at nice 19, it and the predictor threads it starts (they inherit it);
    the thread that serves keeps its priority. Before, the assessment's threads took both cores of a 2-core machine
    and a saturated `qrngd --stream` lost a third to a half of its throughput while it assessed."""
    import os

    from qrng.pipeline import ASSESSMENT_NICE

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen: dict[str, int] = {}

    class Niceness(Recorder):
        def _assess(self, window: np.ndarray) -> float:
            seen["assessment"] = nice()
            child = threading.Thread(target=lambda: seen.__setitem__("started by it", nice()))
            child.start()
            child.join()
            return super()._assess(window)

    serving = nice()
    cfg = config_from_text("source: {seed: 6}\nassessment: {every_samples: 50000, window_samples: 10000}\n")
    p = Niceness(cfg, assess_in_background=True)
    p.raw(20_000)
    assert p._assessing is not None
    p._assessing.join(10)
    assert seen == {"assessment": ASSESSMENT_NICE, "started by it": ASSESSMENT_NICE} and ASSESSMENT_NICE == 19
    assert nice() == serving
