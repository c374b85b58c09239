"""A qrngd source's pool against a FAKE seed source (named as such: it stands for a pipeline or an upstream so the
pool's rules can be driven step by step, no processes, no threads). Issue 21: the source thread sees only the
SeedSource protocol; the accounting invariant received = contributed + pooled + fed + discarded + dropped holds
after every step, and the refill rule is the table below."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from qrng.errors import AssessmentFailure, EntropyError
from qrng.sources import SourceInfo
from qrngd.pool import DaemonOptions, Source, SourceEnv
from qrngd.seed_source import REPORT_COUNTERS, SeedSource


class FakeSeed:
    """FAKE seed source: counts what it hands out, can be failed on demand."""

    latches = False
    device = None

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.checks = 0
        self.closed = False
        self._failure: EntropyError | None = None
        self._lock = threading.RLock()

    info = SourceInfo(kind="fake", identity="fake:0", bits_per_sample=8, claimed_min_entropy=8.0, simulator=True,
                      quantum=False, model="FAKE seed source (test)", serial="0")

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def failure(self) -> EntropyError | None:
        return self._failure

    def fail(self, failure: EntropyError | None = None) -> None:
        self._failure = failure or EntropyError("FAKE failure")

    def exclusive(self) -> threading.RLock:
        return self._lock

    def startup(self, qualify: bool = False) -> None:
        self.qualified = qualify

    def extracted(self, n: int) -> bytes:
        if self._failure is not None:
            raise self._failure
        self.asked.append(n)
        return bytes([len(self.asked) % 251 + 1]) * n

    def check_source(self) -> None:
        self.checks += 1

    def report(self) -> dict[str, Any]:
        return {"state": "failed" if self.failed else "healthy", "raw_samples": sum(self.asked),
                "entropy_credited_bits": 8.0 * sum(self.asked), "extracted_bytes": sum(self.asked),
                "rct_failures": 0, "apt_failures": 0}

    def close(self) -> None:
        self.closed = True


class FakeFeed:
    """FAKE kernel feed: wants seed material while ``wanting``, takes up to ``room`` bytes per offer."""

    def __init__(self, wanting: bool, room: int) -> None:
        self.wanting, self.room, self.got = wanting, room, 0

    def wants(self) -> bool:
        return self.wanting

    def offer(self, data: bytes) -> int:
        n = min(self.room, len(data))
        self.got += n
        return n


def _source(opts: DaemonOptions, feed: Any = None) -> tuple[Any, FakeSeed]:
    seed = FakeSeed()
    _: SeedSource = seed  # the fake is a SeedSource (mypy checks the protocol here)
    env = SourceEnv(options=opts, stopping=threading.Event(), feed=feed)  # no daemon: only what a source may use
    return Source("fake", lambda src: seed, env), seed


def _invariant(src: Any) -> None:
    r = src.report()
    assert r["received_bytes"] == (r["contributed_bytes"] + r["pooled_bytes"] + r["kernel_fed_bytes"]
                                   + r["discarded_bytes"] + r["dropped_bytes"]), r


# pool 1000 bytes, chunk 300; (bytes already pooled, refilling, stream) -> bytes asked of the source (0: none)
REFILL = [
    pytest.param(0, True, False, 300, id="empty: a chunk"),
    pytest.param(400, False, False, 300, id="half empty or more: refilling starts"),
    pytest.param(600, False, False, 0, id="less than half empty, not refilling: wait"),
    pytest.param(600, True, False, 300, id="refilling continues below full"),
    pytest.param(950, True, False, 50, id="refilling asks only what the pool lacks"),
    pytest.param(1000, True, False, 0, id="full: refilling stops"),
    pytest.param(1000, False, True, 300, id="streaming: a chunk even when full"),
]


@pytest.mark.parametrize(("pooled", "refilling", "stream", "asked"), REFILL)
def test_refill_rule(pooled: int, refilling: bool, stream: bool, asked: int) -> None:
    src, seed = _source(DaemonOptions(pool_bytes=1000, chunk_bytes=300, stream=stream))
    src._step()  # opens the source
    seed.asked.clear()
    with src.cond:
        src.pool = bytearray(pooled)
        src.received = src.contributed = 0
        src.dropped = src.discarded = src.fed = 0
        src.received = pooled
    src._refilling = refilling
    src._step()
    assert sum(seed.asked) == asked
    assert seed.checks == (0 if asked else 1)  # waiting, the source is checked (a removed device is noticed)
    assert src._refilling == bool(asked)
    _invariant(src)


def test_feeding_takes_a_chunk_and_the_kernel_gets_the_overflow() -> None:
    feed = FakeFeed(wanting=True, room=100)
    src, seed = _source(DaemonOptions(pool_bytes=1000, chunk_bytes=300), feed)
    for _ in range(5):
        src._step()
        _invariant(src)
    r = src.report()
    assert r["pooled_bytes"] == 1000 and r["kernel_fed_bytes"] == feed.got == 100 + 100  # overflow of steps 4, 5
    assert r["discarded_bytes"] == 5 * 300 - 1000 - 200


def test_accounting_invariant_under_random_requests_and_failures() -> None:
    rng = random.Random(21)
    feed = FakeFeed(wanting=False, room=64)
    src, seed = _source(DaemonOptions(pool_bytes=512, chunk_bytes=128, seed_wait_s=0.0), feed)
    src.cond.wait = lambda timeout=None: False  # no idling: each step is one decision of the rule
    src.env.stopping.wait = lambda timeout=None: False
    served = 0
    for i in range(400):
        action = rng.random()
        if action < 0.5:
            src._step()
        elif action < 0.85:
            out = src.take(rng.choice([16, 32, 48, 64]))
            served += len(out or b"")
        elif action < 0.9:
            feed.wanting = not feed.wanting
        elif action < 0.93 and src.pipeline is not None:
            seed.fail()  # the pool is dropped, the source reopened after REOPEN_S (here: never, no sleep)
            src._step()
            assert src.pool == bytearray() and seed.closed
            seed = FakeSeed()
            src._open = lambda s, fresh=seed: fresh
            src._tried = 0.0
        _invariant(src)
        assert src.report()["contributed_bytes"] == served, i
    assert served > 0


def test_a_retired_source_keeps_its_counters_monotonic() -> None:
    src, seed = _source(DaemonOptions(pool_bytes=256, chunk_bytes=256))
    src._step()
    before = {k: src.report()[k] for k in REPORT_COUNTERS}
    assert before["extracted_bytes"] == 256
    seed.fail()
    src._step()
    after = {k: src.report()[k] for k in REPORT_COUNTERS}
    assert after == before  # the failed source's counters stay in the sums, the pipeline is gone
    assert src.pipeline is None and src.report()["dropped_bytes"] == 256


def test_a_failure_flushes_the_raw_sample_ring() -> None:
    """Issue 22 (on-call): the ring's buffered tail (the samples the health test fired on) stayed in memory until
    the buffer filled or the daemon stopped, so `qrng estimate` on the ring missed the failure. A failure flushes."""
    class FakeRing:  # FAKE raw-sample ring: counts flushes
        flushes = 0
        size, error = 0, ""

        def flush(self) -> None:
            self.flushes += 1

    src, seed = _source(DaemonOptions(pool_bytes=256, chunk_bytes=256))
    src.ring = ring = FakeRing()
    src._step()
    assert ring.flushes == 0
    seed.fail()
    src._step()
    assert ring.flushes == 1 and src.report()["dropped_bytes"] == 256


def test_after_an_assessment_failure_the_next_source_qualifies_before_serving_and_the_estimate_stays() -> None:
    """A source reopened after the periodic SP 800-90B assessment failed it assesses a full window before any
    output (not transient, unlike a removed device); the latest estimate survives the reopening."""
    seeds: list[FakeSeed] = []

    def opener(src: Any) -> FakeSeed:
        seeds.append(FakeSeed())
        return seeds[-1]

    env = SourceEnv(options=DaemonOptions(pool_bytes=1000, chunk_bytes=300), stopping=threading.Event())
    src = Source("fake", opener, env)
    src._tried = -10.0
    failures = [AssessmentFailure("FAKE: SP 800-90B assessment below the claim"), EntropyError("FAKE: unplugged"),
                None]
    for failure in failures:
        src._tried = -10.0  # no one-second wait between reopenings here
        src._step()
        current = seeds[-1]
        original = current.report

        def with_estimate(fake: FakeSeed = current, report: Any = original) -> dict[str, Any]:
            return report() | {"estimate": 6.25 if fake is seeds[0] else None}
        current.report = with_estimate  # type: ignore[method-assign]
        assert src.report()["estimate"] == 6.25  # the first source's, kept after it is gone
        if failure is not None:
            current.fail(failure)
    assert [s.qualified for s in seeds] == [False, True, False]


def test_a_source_that_cannot_be_opened_says_source_failed_once_per_outage() -> None:
    """Regression (game day): a device refused at start (attestation) logged no source.failed at all; a source
    retried every second must not log one per try either."""
    events: list[tuple[str, dict[str, Any]]] = []
    opens: list[bool] = [False, False, False, True]

    def opener(src: Any) -> FakeSeed:
        if not opens.pop(0):
            raise EntropyError("FAKE: cannot open")
        return FakeSeed()

    env = SourceEnv(options=DaemonOptions(pool_bytes=1000, chunk_bytes=300), stopping=threading.Event(),
                    event=lambda name, **data: events.append((name, data)))
    src = Source("fake", opener, env)
    for _ in range(4):
        src._tried = -10.0  # no one-second wait between tries here
        src._step()
    assert [name for name, _ in events] == ["source.failed", "source.ready"], events
    assert events[0][1]["error"] == "FAKE: cannot open"


def test_a_source_that_is_down_keeps_its_claim() -> None:
    """Regression (game day): a down source exported a claim of 0, so QrngEntropyBelowClaim (estimate < claim)
    could never fire once the assessment had failed the source."""
    src, seed = _source(DaemonOptions(pool_bytes=1000, chunk_bytes=300))
    src._step()
    seed.fail(AssessmentFailure("FAKE: below the claim"))
    src._tried = 1e12  # no reopening in this step: the source stays down
    src._step()
    r = src.report()
    assert r["state"] == "unhealthy" and r["claimed_min_entropy"] == FakeSeed.info.claimed_min_entropy == 8.0
