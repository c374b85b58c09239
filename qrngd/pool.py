"""A qrngd source's pool: one configured source, its (re)opening with start-up tests, its thread, the pool of
extracted output ready to be served, and what became of every extracted byte (docs/daemon-protocol.md
"Behaviour"). A source sees only its :class:`SourceEnv` (options, the stop event, the kernel feed, attestation
and the event sink), never the daemon: the pool's rules are driven step by step in tests/unit with a fake
seed source.

Fail closed: a failed or removed source drops its pool (counted as dropped) and is opened again, at most once
every REOPEN_S, with its start-up tests (SP 800-90B 4.3); with ``health.allow_reset: false`` it stays failed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from qrng.errors import AssessmentFailure, EntropyError, NativeUnavailable

from .seed_source import REPORT_COUNTERS, SeedSource

__all__ = ["REOPEN_S", "DaemonOptions", "KernelFeed", "Source", "SourceEnv"]

REOPEN_S = 1.0


@dataclass(frozen=True)
class DaemonOptions:
    """How sources are run (``qrng daemon`` options; docs/daemon-protocol.md "Behaviour").

    stream: read every source continuously at the device's rate, health-testing every sample; extracted output
        beyond the pool goes to the kernel feed or is discarded (counted), never queued without bound.
    pool_bytes: extracted output kept ready per source (a seed is served from it without waiting for extraction).
    chunk_bytes: extracted per step of a source's thread.
    seed_wait_s: how long a SEED waits for a source's pool before the source counts as not serving.
    """

    stream: bool = False
    pool_bytes: int = 1 << 16
    chunk_bytes: int = 1 << 14
    seed_wait_s: float = 2.0
    history_interval_s: float = 10.0
    max_conns_per_user: int = 64  # connections one user (SO_PEERCRED uid) may hold on the Unix socket


class KernelFeed(Protocol):
    """Where extracted output beyond the pool may go (qrngd/kernel.py: RNDADDENTROPY or a FIFO)."""

    fed: int
    error: str

    def wants(self) -> bool: ...

    def offer(self, data: bytes) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SourceEnv:
    """Everything a source may use of the daemon around it, given explicitly.

    attest: verifies a freshly opened (or due) seed source's device and returns the attestation record, or None
        when the daemon attests nothing; raises AttestationError (an EntropyError) when it fails.
    attest_every: seconds between re-attestations (0: only when opened).
    event: records a daemon event (stderr and the signed audit log)."""

    options: DaemonOptions
    stopping: threading.Event
    feed: KernelFeed | None = None
    attest: Callable[[SeedSource], dict[str, Any] | None] = lambda seed: None
    attest_every: float = 0.0
    event: Callable[..., None] = lambda name, **data: None


class Source:
    """One configured source: its pipeline and (re)opening, its thread, its pool of extracted output ready to be
    served, and what became of every extracted byte (served, pooled, fed to the kernel, discarded)."""

    def __init__(self, name: str, open_pipeline: Callable[[Source], SeedSource], env: SourceEnv) -> None:
        self.name, self._open, self.env = name, open_pipeline, env
        self.opts = env.options
        self.pipeline: SeedSource | None = None
        self.error = "not started"
        self._tried = 0.0
        self.latched = False  # a failure with health.allow_reset false: no reopening until restart
        self._qualify = False  # an assessment failed: the next pipeline assesses a full window before serving
        self._down_said = False  # source.failed was said for the current outage (reopening fails say nothing more)
        self._estimate: float | None = None  # the latest SP 800-90B estimate, kept across reopening
        self.cond = threading.Condition()
        self.pool = bytearray()
        self._stamps: deque[list[float]] = deque()  # [monotonic time, bytes] of each chunk in the pool, oldest first
        self.contributed = 0  # bytes mixed into served seeds (credited 8 bits each)
        self.discarded = 0    # extracted bytes neither needed by the pool nor taken by the kernel feed
        self.dropped = 0      # pooled bytes thrown away because the source failed (fail closed)
        self.fed = 0          # extracted bytes fed to the kernel
        self.received = 0     # extracted bytes this daemon took from the extractor (the sum of the five above)
        self.opens = 0
        self._refilling = True  # topping the pool up to full (refilling starts again when it is half empty)
        # a source that is down keeps the identity it had (metrics labels stay the same series)
        self.last_label, self.last_identity, self.last_simulator = name, name, False
        self.last_claim = 0.0  # kept while down: QrngEntropyBelowClaim compares the kept estimate with it
        # counters of pipelines closed before (a failed source is opened again from scratch): the reported
        # counters stay monotonic across reopening, as Prometheus counters must
        self._past: dict[str, float] = {k: 0 for k in REPORT_COUNTERS}
        self.first_try = threading.Event()  # the first open attempt has finished (opened or failed)
        self.ring: Any = None
        self.attested: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._run, name=f"qrngd-source-{name}", daemon=True)

    # --- the source's thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.env.stopping.is_set():
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - a bug must not silently end the source's thread
                p = self.pipeline
                if p is not None:
                    self._close_failed(p, f"internal error: {type(exc).__name__}: {exc}")
                self.env.stopping.wait(REOPEN_S)

    def _step(self) -> None:
        """One turn of the source's thread: (re)open, re-attest when due, then extract into the pool (or idle)."""
        stop = self.env.stopping
        p = self._ensure()
        if p is None:
            stop.wait(0.1)
            return
        if self._attestation_due():
            try:
                with p.exclusive():  # the device answers one request at a time
                    self.attested = self.env.attest(p)
            except (EntropyError, OSError) as exc:
                self._close_failed(p, f"attestation failed: {exc}")
                return
        feed = self.env.feed
        with self.cond:
            room = self.opts.pool_bytes - len(self.pool)
        feeding = feed is not None and feed.wants()
        # refill once the pool is half empty (not after every request: fewer wake-ups, the same freshness bound)
        if not (room >= self.opts.pool_bytes // 2 or (room > 0 and self._refilling) or self.opts.stream or feeding):
            self._refilling = False
            try:
                with p.exclusive():  # one check of a removed device under the source's lock
                    p.check_source()
            except EntropyError:
                self._drop_pool()
                return
            with self.cond:
                self.cond.wait(0.05)
            return
        # on demand, take only what the pool lacks (the extractor keeps the rest); streaming or feeding, a chunk
        n = self.opts.chunk_bytes if self.opts.stream or feeding else min(self.opts.chunk_bytes, max(room, 1))
        self._refilling = True
        try:
            chunk = p.extracted(n)
        except EntropyError:
            self._drop_pool()
            return
        with self.cond:  # every extracted byte is accounted for under this lock, in one step
            self.received += len(chunk)
            if self.pipeline is not p or p.failed:
                self.dropped += len(chunk)
                return
            room = max(0, self.opts.pool_bytes - len(self.pool))
            self.pool += chunk[:room]
            if chunk[:room]:
                self._stamps.append([time.monotonic(), float(len(chunk[:room]))])
            rest = chunk[room:]
            self.cond.notify_all()
            if rest and feed is not None:
                taken = feed.offer(rest)
                self.fed += taken
                rest = rest[taken:]
            self.discarded += len(rest)

    def _attestation_due(self) -> bool:
        every = self.env.attest_every
        return bool(every and self.attested and time.time() - self.attested["verified_at"] >= every)

    def _close_failed(self, p: SeedSource, error: str) -> None:
        """Stop serving from ``p`` (fail closed) for a reason the pipeline does not know (attestation)."""
        self.error = error
        self._drop_pool()
        with self.cond:
            self.pipeline = None
        self.attested = {"valid": False, "error": error, "verified_at": time.time()}
        self._retire(p)
        self._tried = time.monotonic()
        self.env.event("source.failed", source=self.name, error=error)
        self._down_said = True

    def _retire(self, p: SeedSource) -> None:
        """Close a pipeline for good, keeping its counters."""
        try:
            r = p.report()
            for k in self._past:
                self._past[k] += r[k]
        except Exception:  # noqa: BLE001 - counters of a broken pipeline are lost, never the service
            pass
        with contextlib.suppress(Exception):
            p.close()

    def _drop_pool(self) -> None:
        """The source failed: its pooled output is dropped (fail closed) and the raw-sample ring is flushed, so the
        samples the health test fired on are on disk for `qrng estimate` (they were written before the test)."""
        with self.cond:
            self.dropped += len(self.pool)
            self.pool = bytearray()
            self._stamps.clear()
            self.cond.notify_all()
        if self.ring is not None:
            with contextlib.suppress(OSError):
                self.ring.flush()

    def _ensure(self) -> SeedSource | None:
        """The pipeline, opened (again) if it is failed or missing and a second has passed since the last try."""
        p = self.pipeline
        if p is not None and not p.failed:
            return p
        if p is not None:  # failed: keep the reason, close, and try again from scratch
            self.error = str(p.failure or "pipeline failed")
            # not transient: the next pipeline serves only once a fresh full window assesses at the claim
            self._qualify = self._qualify or isinstance(p.failure, AssessmentFailure)
            estimate = p.report().get("estimate")  # the failing verdict is the latest estimate
            if estimate is not None:
                self._estimate = estimate
            self._drop_pool()
            with self.cond:
                self.pipeline = None
            self._retire(p)
            self.env.event("source.failed", source=self.name, error=self.error)
            self._down_said = True
            if p.latches:
                # health.allow_reset: false (README): the failure stays until qrngd is restarted, as it does in
                # the PKCS#11 modules until they are initialised again
                self.latched = True
                self.error += " (health.allow_reset is false: restart qrngd to clear the failure)"
        if self.latched:
            return None
        now = time.monotonic()
        if self._tried and now - self._tried < REOPEN_S:
            return None
        self._tried = now
        p = None
        try:
            p = self._open(self)
            p.startup(qualify=self._qualify)  # SP 800-90B 4.3 (and re-assessment) before any output
            self.attested = self.env.attest(p)
        except (EntropyError, NativeUnavailable, OSError) as exc:
            self.error = str(exc)
            self.first_try.set()
            from qrng.attestation.statement import AttestationError
            if isinstance(exc, AttestationError):
                self.attested = {"valid": False, "error": str(exc), "verified_at": time.time()}
                self.error = f"attestation failed: {exc}"
            if p is not None:
                self._retire(p)
            if not self._down_said:  # a source that cannot be opened at all is said once, as a failure is
                self._down_said = True
                self.env.event("source.failed", source=self.name, error=self.error)
            return None
        with self.cond:
            self.pipeline, self.error = p, ""
        self._qualify = self._down_said = False
        self.opens += 1
        self.last_label, self.last_identity, self.last_simulator = p.info.label, p.info.identity, p.info.simulator
        self.last_claim = p.info.claimed_min_entropy
        self.first_try.set()
        self.env.event("source.ready" if self.opens == 1 else "source.recovered", source=self.name,
                          label=p.info.label, identity=p.info.identity, simulator=p.info.simulator)
        return p

    # --- serving ------------------------------------------------------------------------------------------
    def serving(self) -> bool:
        p = self.pipeline
        return p is not None and not p.failed

    def take(self, n: int) -> bytes | None:
        """n bytes of this source's extracted output, each used once; None if it fails or cannot within
        seed_wait_s (the caller then mixes from the others: never less credit)."""
        deadline = time.monotonic() + self.opts.seed_wait_s
        with self.cond:
            while len(self.pool) < n:
                left = deadline - time.monotonic()
                if left <= 0 or not self.serving():
                    return None
                self.cond.wait(min(left, 0.05))
            if not self.serving():
                return None
            out = bytes(self.pool[:n])
            del self.pool[:n]
            left = float(n)
            while left > 0 and self._stamps:
                used = min(left, self._stamps[0][1])
                self._stamps[0][1] -= used
                left -= used
                if self._stamps[0][1] <= 0:
                    self._stamps.popleft()
            self.contributed += n
            if len(self.pool) < self.opts.pool_bytes // 2:
                self.cond.notify_all()  # the source's thread refills (waking it per request would cost each one)
            return out

    def pool_age(self) -> float | None:
        with self.cond:
            return round(time.monotonic() - self._stamps[0][0], 3) if self._stamps else None

    def report(self) -> dict[str, Any]:
        age = self.pool_age()
        with self.cond:  # one consistent snapshot: received = contributed + pooled + fed + discarded + dropped
            entry: dict[str, Any] = {"name": self.name, "contributed_bytes": self.contributed,
                                     "credited_bits": self.contributed * 8, "pooled_bytes": len(self.pool),
                                     "discarded_bytes": self.discarded, "dropped_bytes": self.dropped,
                                     "kernel_fed_bytes": self.fed, "received_bytes": self.received,
                                     "retained_bytes": self.ring.size if self.ring is not None else 0,
                                     "retain_error": (self.ring.error or None) if self.ring is not None else None,
                                     "pool_age_s": age, "attestation": self.attested}
        out = self._current(entry)
        # the latest estimate stays the latest across a reopen (a failing one included: QrngEntropyBelowClaim)
        if out.get("estimate") is None:
            out["estimate"] = self._estimate
        else:
            self._estimate = out["estimate"]
        for k, v in self._past.items():
            out[k] += v
        return out

    def close(self) -> None:
        """Stop the thread (the env's stopping event is set) and close the pipeline and the raw-sample ring."""
        with self.cond:
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        p = self.pipeline
        self.pipeline = None
        self.pool = bytearray()
        if p is not None:
            self._retire(p)
        if self.ring is not None:
            self.ring.close()

    def _current(self, entry: dict[str, Any]) -> dict[str, Any]:
        p = self.pipeline
        if p is None:
            return entry | {"state": "unhealthy", "error": self.error, "label": self.last_label,
                            "identity": self.last_identity, "simulator": self.last_simulator,
                            "claimed_min_entropy": self.last_claim, "raw_samples": 0, "entropy_credited_bits": 0.0,
                            "extracted_bytes": 0, "rct_failures": 0, "apt_failures": 0, "estimate": None}
        return entry | p.report() | ({"error": self.error} if self.error else {})
