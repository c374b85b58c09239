"""Source -> SP 800-90B health tests -> extractor -> SP 800-90A DRBG, with accounting for every block.

Fail closed: a health failure or a source error raises an :class:`~qrng.errors.EntropyError` and leaves
the pipeline failed; nothing produced from the failing block, or after it, ever leaves. Only
:meth:`Pipeline.reset` (when the configuration allows it) clears the state, after which start-up tests run
again and the DRBG is instantiated afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import EntropyConfig
from .drbg import Drbg, DrbgStatus, fill, make_drbg
from .errors import AssessmentFailure, ConfigError, EntropyError, PipelineFailed
from .extract import Toeplitz, pack_samples, sha256_blocks, sha256_output_entropy, von_neumann
from .health import Cutoffs, HealthCounters, HealthTester
from .sources import Source, SourceInfo, open_source

__all__ = ["Accounting", "Pipeline", "PipelineReport"]

_LIVE: weakref.WeakSet[Pipeline] = weakref.WeakSet()
ASSESSMENT_NICE = 19  # the background SP 800-90B assessment yields the CPU to serving (Pipeline._assess_into)


def _after_fork_in_child() -> None:
    for p in list(_LIVE):
        p.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True)
class Accounting:
    raw_samples: int
    startup_samples: int
    entropy_credited_bits: float
    extracted_bits: int
    extracted_bytes_used: int
    bytes_out: int
    reseeds: int
    resets: int


@dataclass(frozen=True)
class PipelineReport:
    state: str
    source: SourceInfo
    cutoffs: Cutoffs
    health: HealthCounters
    accounting: Accounting
    drbg: DrbgStatus | None
    extractor: str
    extractor_seed_sha256: str
    config_origin: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["source"]["label"] = self.source.label
        return d


class Pipeline:
    def __init__(self, config: EntropyConfig, source: Source | None = None,
                 tap: Callable[[np.ndarray], None] | None = None, assess_in_background: bool = False) -> None:
        self.config = config
        self.tap = tap  # sees every raw block as read, before the health tests (qrngd's raw-sample ring)
        self.source = source if source is not None else open_source(config.source)
        info = self.source.info
        self.health = HealthTester(info.claimed_min_entropy, info.bits_per_sample, config.health.alpha_log2)
        self._lock = threading.RLock()
        ext = config.extractor
        self._samples_per_block = 0
        if ext.type == "toeplitz":
            seed_bits = 2 * ext.block_bits
            if ext.seed_file:
                try:
                    seed = Path(ext.seed_file).read_bytes()
                except OSError as exc:
                    raise ConfigError("extractor.seed_file", f"cannot read: {exc.strerror}") from None
            else:
                seed = os.urandom(seed_bits // 8)
            h_bit = info.claimed_min_entropy / info.bits_per_sample
            self._samples_per_block = -(-ext.block_bits // info.bits_per_sample)
            self._toeplitz: Toeplitz | None = Toeplitz(ext.block_bits, h_bit, seed, ext.eps_log2)
            self.extractor_seed_sha256 = hashlib.sha256(self._toeplitz.seed).hexdigest()
        else:
            self._toeplitz = None
            self.extractor_seed_sha256 = ""
            if ext.type == "sha256":
                # enough samples that h_in >= 2 * 256 (SP 800-90B 3.1.5.1.2 then gives ~256 bits out)
                self._samples_per_block = int(np.ceil(512 / info.claimed_min_entropy))
            else:
                self._samples_per_block = 4096
        self._pool = bytearray()
        self._drbg: Drbg | None = None
        self._started = False
        self._raw = self._startup = self._extracted_bits = self._used = self._out = 0
        self._reseeds = self._resets = 0
        self._credited = 0.0
        self._failure: EntropyError | None = None
        self._source_checked = 0.0
        self._pid = os.getpid()
        self._fork_salt = b""
        self._window = np.zeros(0, dtype=np.uint8)
        self._window_pos = self._window_filled = self._since_assessment = self._assessments = 0
        self._assessed_at = 0.0
        self._assess_in_background = assess_in_background
        self._assessing: threading.Thread | None = None
        self._assessed: tuple[float, int, str | None] | None = None
        self.last_assessment: float | None = None
        _LIVE.add(self)  # forked children never share DRBG state or pooled bytes with the parent

    # --- state ---------------------------------------------------------------------------------------
    @property
    def info(self) -> SourceInfo:
        return self.source.info

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def failure(self) -> EntropyError | None:
        """What failed the pipeline (a health test, a source error, a removed source), or None."""
        return self._failure

    def exclusive(self) -> threading.RLock:
        """The pipeline's lock, for a caller that talks to the source outside the pipeline's own methods
        (attestation, a presence check): the device answers one request at a time."""
        return self._lock

    def _fail(self, exc: EntropyError) -> EntropyError:
        self._failure = exc
        self._pool = bytearray()
        if self._drbg is not None:
            self._drbg.zeroize()
            self._drbg = None
        return exc

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise PipelineFailed(f"entropy pipeline failed earlier: {self._failure}; reset required")

    def after_fork(self) -> None:
        """Drop everything derived from the parent's state; the child reseeds from fresh samples.

        Runs in the forked child, where the lock may be held by a parent thread that does not exist here: it is
        replaced, never waited for (found by the PKCS#11 ABI fuzzer: a child hung on it)."""
        self._lock = threading.RLock()
        with self._lock:
            self._pid = os.getpid()
            self._pool = bytearray()
            self._assessing = self._assessed = None  # the assessment thread is the parent's
            if self._drbg is not None:
                self._drbg.zeroize()
            self._drbg = None
            # A replayed or seeded source gives the child the parent's samples; the personalization of the
            # child's DRBG makes its output distinct all the same (it adds no entropy credit).
            self._fork_salt = hashlib.sha384(os.getpid().to_bytes(8, "little") + os.urandom(32)).digest()

    def reset(self) -> None:
        """Clear a failure (if the configuration allows) and start over with start-up tests."""
        with self._lock:
            if not self.config.health.allow_reset:
                raise PipelineFailed("health.allow_reset is false: restart the service to clear the failure")
            self.health.reset()
            self._failure = None
            self._pool = bytearray()
            self._drbg = None
            self._started = False
            self._resets += 1

    # --- stages --------------------------------------------------------------------------------------
    def _read_tested(self, n: int) -> np.ndarray:
        """Read ``n`` samples, health-testing each block before it is used."""
        parts = []
        bs = self.config.health.block_samples
        got = 0
        while got < n:
            k = min(bs, n - got)
            try:
                block = self.source.read(k)
                if self.tap is not None:
                    self.tap(block)
                self.health.check(block)
            except EntropyError as exc:
                raise self._fail(exc) from None
            parts.append(block)
            got += k
            self._raw += k
            self._retain(block)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _retain(self, block: np.ndarray) -> None:
        """Keep the latest window of tested samples (a ring: no copy of the window per block); once the window
        is first full, and then every ``every_samples``, assess it (SP 800-90B 6.3, non-IID track) and fail
        closed when the estimate falls below the claim by more than ``max_shortfall``. In the background
        (qrngd), the verdict is applied at the next read or :meth:`check_source`, whichever comes first."""
        a = self.config.assessment
        if not a.every_samples:
            return
        self._apply_assessment()
        if self._window.size != a.window_samples:
            self._window = np.zeros(a.window_samples, dtype=block.dtype)
        tail = block[-a.window_samples:]
        end = self._window_pos + tail.size
        if end <= self._window.size:
            self._window[self._window_pos:end] = tail
        else:
            first = self._window.size - self._window_pos
            self._window[self._window_pos:] = tail[:first]
            self._window[:end - self._window.size] = tail[first:]
        self._window_pos = end % self._window.size
        self._window_filled = min(self._window.size, self._window_filled + block.size)
        self._since_assessment += block.size
        if self._window_filled < self._window.size or self._assessing is not None:
            return
        now = time.monotonic()
        if self._assessments and (self._since_assessment < a.every_samples
                                  or now - self._assessed_at < a.min_interval_s):
            return
        self._since_assessment = 0
        self._assessed_at = now
        self._assessments += 1
        window = np.concatenate([self._window[self._window_pos:], self._window[:self._window_pos]])
        if not self._assess_in_background:
            self._judge(self._assess(window), window.size)
            return
        t = threading.Thread(target=self._assess_into, args=(window,), name="qrng-sp800-90b-assessment",
                             daemon=True)
        self._assessing = t
        t.start()

    def _assess(self, window: np.ndarray) -> float:
        from .estimate.nonid import assess_non_iid
        return float(assess_non_iid(window, self.source.info.bits_per_sample).h_assessed)

    def _assess_into(self, window: np.ndarray) -> None:
        """The background thread: only computes; the pipeline's own thread applies the verdict. It runs at the
        lowest CPU priority (nice 19, this thread and the predictor threads it starts, which inherit it), so a
        busy daemon's serving is not slowed by its own periodic assessment; an idle machine runs it as fast."""
        with contextlib.suppress(OSError):  # Linux: the nice value is per thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ASSESSMENT_NICE)
        try:
            self._assessed = (self._assess(window), window.size, None)
        except Exception as exc:  # noqa: BLE001 - an assessment that cannot be made fails closed, named
            self._assessed = (float("nan"), window.size, f"{type(exc).__name__}: {exc}")

    def _apply_assessment(self) -> None:
        done = self._assessed
        if done is None:
            return
        self._assessed = None
        self._assessing = None
        h, n, error = done
        if error is not None:
            raise self._fail(AssessmentFailure(f"the SP 800-90B assessment of the last {n} samples could not be made "
                                          f"({error}); no output"))
        self._judge(h, n)

    def _judge(self, h: float, n: int) -> None:
        self.last_assessment = h
        info = self.source.info
        a = self.config.assessment
        if info.claimed_min_entropy - h > a.max_shortfall:
            raise self._fail(AssessmentFailure(
                f"SP 800-90B assessment of the last {n} samples gives {h:.4f} bits/sample, below "
                f"the claimed {info.claimed_min_entropy} by more than {a.max_shortfall}; no output"))

    SOURCE_CHECK_S = 0.1  # a source that can say it is there (USB) is asked at most this often

    def check_source(self) -> None:
        """Output comes from the DRBG between reseeds, without reading the source; a source that can tell whether
        it is still there and healthy (a USB device: GET_STATUS) is asked at most every 0.1 s, so a removed or
        failing device stops the output within that time. Fails the pipeline closed on a removed device or a
        device that reports its own health-test failure, and applies a finished background SP 800-90B assessment
        (an idle qrngd learns its verdict here, before it serves its pool)."""
        if self._failure is None:
            self._apply_assessment()
        check = getattr(self.source, "check", None)
        if check is None:
            return
        now = time.monotonic()
        if now - self._source_checked < self.SOURCE_CHECK_S:
            return
        self._source_checked = now
        try:
            check()
        except EntropyError as exc:
            raise self._fail(exc) from None

    def startup(self) -> None:
        """SP 800-90B 4.3: start-up tests over at least 1024 samples before any output; they are discarded."""
        with self._lock:
            self._check_usable()
            if self._started:
                return
            n = self.config.health.startup_samples
            self._read_tested(n)
            self._startup += n
            self._started = True

    def qualify(self) -> None:
        """Start-up tests, then one full assessment window read and assessed now, before any output: how a source
        serves again after an :class:`AssessmentFailure` (a reopened source would otherwise serve a window's
        worth of output before its first verdict). Nothing read here is output."""
        with self._lock:
            self.startup()
            a = self.config.assessment
            if not a.every_samples:
                return
            self._assessments += 1  # this is the window's assessment: the ring only keeps these samples
            window = self._read_tested(a.window_samples)
            self._startup += window.size
            self._since_assessment = 0
            self._judge(self._assess(window), window.size)

    def raw(self, n: int) -> np.ndarray:
        """Health-tested raw samples (for retention and offline assessment)."""
        with self._lock:
            self.startup()
            return self._read_tested(n)

    def _extract_block(self) -> None:
        info = self.source.info
        ext = self.config.extractor
        per = self._samples_per_block
        if ext.type == "sha256":  # as many conditioning blocks as one health-test block holds: one read, one call
            per *= max(1, self.config.health.block_samples // per)
        samples = self._read_tested(per)
        h = info.claimed_min_entropy
        if self._toeplitz is not None:
            out = self._toeplitz.extract(pack_samples(samples, info.bits_per_sample))
            usable = self._toeplitz.m_bits // 8
            self._pool += out[:usable]
            self._credited += samples.size * h
            self._extracted_bits += usable * 8
        elif ext.type == "sha256":
            n = self._samples_per_block
            h_in = min(n * h, 8.0 * n)  # per conditioning block of n one-byte samples
            out_h = sha256_output_entropy(n * 8, h_in)
            if out_h < 255.0:
                raise self._fail(EntropyError(f"SHA-256 conditioning output entropy {out_h:.2f} < 255 bits"))
            blocks = samples.size // n
            self._pool += sha256_blocks(samples.tobytes(), n)
            self._credited += h_in * blocks
            self._extracted_bits += 256 * blocks
        else:
            bits = np.unpackbits(samples[:, None], axis=1, bitorder="little")[:, :info.bits_per_sample]
            vn = von_neumann(bits.reshape(-1))
            vn = vn[: vn.size // 8 * 8]
            self._pool += np.packbits(vn, bitorder="little").tobytes()
            self._credited += samples.size * h
            self._extracted_bits += int(vn.size)

    @property
    def extractor_seed(self) -> bytes:
        """The Toeplitz seed (public); with retained raw samples an auditor re-runs the extraction."""
        if self._toeplitz is None:
            return b""
        return self._toeplitz.seed

    def toeplitz_lengths(self) -> tuple[int, int] | None:
        """(n, m) of the Toeplitz extractor (input and output bits per block), or None for other extractors."""
        return (self._toeplitz.n_bits, self._toeplitz.m_bits) if self._toeplitz is not None else None

    def extract_samples(self, samples: Any, seed: bytes | None = None) -> bytes:
        """Deterministic extraction over given (already health-tested) samples, block by block; a partial
        last block is not used. Pure: the same samples and seed give the same bytes. ``seed`` replaces the
        Toeplitz seed (an auditor's, or a resumed ceremony's, recorded seed)."""
        info = self.source.info
        n = self._samples_per_block
        t = self._toeplitz
        if t is not None and seed is not None and seed != t.seed:
            t = Toeplitz(t.n_bits, t.h_per_bit, seed, self.config.extractor.eps_log2)
        if t is None:
            return sha256_blocks(np.asarray(samples, dtype=np.uint8).tobytes(), n)
        out = bytearray()
        for i in range(0, len(samples) - n + 1, n):
            out += t.extract(pack_samples(samples[i:i + n], info.bits_per_sample))[:t.m_bits // 8]
        return bytes(out)

    def extracted(self, n: int) -> bytes:
        """``n`` bytes of extractor output, each used once."""
        with self._lock:
            self.startup()
            self.check_source()
            while len(self._pool) < n:
                self._extract_block()
            out = bytes(self._pool[:n])
            del self._pool[:n]
            self._used += n
            return out

    def _ensure_drbg(self) -> Drbg:
        if self._drbg is None:
            d = self.config.drbg
            personalization = hashlib.sha384(self.info.identity.encode() + self._fork_salt).digest()
            self._drbg = make_drbg(d.type, self.extracted(48), personalization, d.reseed_interval)
        return self._drbg

    def generate(self, n: int, additional_input: bytes = b"", prediction_resistance: bool | None = None) -> bytes:
        """``n`` DRBG bytes. With prediction resistance, the DRBG is reseeded from fresh extractor output first."""
        if n < 0:
            raise ValueError("n must be >= 0")
        out = bytearray(n)
        self.generate_into(memoryview(out), additional_input, prediction_resistance)
        return bytes(out)

    def generate_into(self, buf: Any, additional_input: bytes = b"", prediction_resistance: bool | None = None) -> None:
        """Fill the writable buffer ``buf`` with DRBG output (zero-copy for CTR_DRBG).

        The request is served as SP 800-90A generate requests of at most 2^19 bits; before each one the
        DRBG is reseeded from fresh extractor output when prediction resistance is asked for or the
        reseed interval is reached (9.3.1).
        """
        view = memoryview(buf).cast("B")
        pr = self.config.drbg.prediction_resistance if prediction_resistance is None else prediction_resistance
        with self._lock:
            self._check_usable()
            self.check_source()
            drbg = self._ensure_drbg()
            self._reseeds += fill(drbg, view, additional_input, pr, self.extracted)
            self._out += len(view)

    def seed(self, data: bytes) -> None:
        """Mix caller bytes in (PKCS#11 C_SeedRandom): reseed with fresh entropy and the bytes as additional input."""
        with self._lock:
            self._check_usable()
            drbg = self._ensure_drbg()
            fresh = self.extracted(drbg.seed_entropy_bytes)
            drbg.reseed(fresh, hashlib.sha384(data).digest())
            self._reseeds += 1

    def report(self) -> PipelineReport:
        with self._lock:
            state = "failed" if self.failed else ("operational" if self._started else "not started")
            return PipelineReport(
                state=state, source=self.info, cutoffs=self.health.cutoffs, health=self.health.counters(),
                accounting=Accounting(self._raw, self._startup, self._credited, self._extracted_bits, self._used,
                                      self._out, self._reseeds, self._resets),
                drbg=self._drbg.status() if self._drbg is not None else None,
                extractor=self._describe_extractor(), extractor_seed_sha256=self.extractor_seed_sha256,
                config_origin=self.config.origin,
            )

    def _describe_extractor(self) -> str:
        ext = self.config.extractor
        if self._toeplitz is not None:
            return (f"Toeplitz n={self._toeplitz.n_bits} m={self._toeplitz.m_bits} eps=2^{ext.eps_log2:g} "
                    f"(leftover hash lemma at {self._toeplitz.h_per_bit:.4f} bit/bit)")
        if ext.type == "sha256":
            return f"SHA-256 vetted conditioning over {self._samples_per_block} samples"
        return "Von Neumann debiasing (assumes independent bits)"

    def close(self) -> None:
        with self._lock:
            if self._drbg is not None:
                self._drbg.zeroize()
            self._pool = bytearray()
            self.source.close()

