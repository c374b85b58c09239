"""What a qrngd source thread draws seeds from: the :class:`SeedSource` protocol, implemented by
:class:`PipelineSeed` (a local entropy pipeline: source, SP 800-90B health tests, extractor) and by
:class:`qrngd.tls.Upstream` (another qrngd over mutual TLS). The source thread names no concrete class and
asks no ``hasattr``: every difference between the two lives behind these methods."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

from qrng.errors import DeviceHealthFailure

if TYPE_CHECKING:
    from qrng.errors import EntropyError
    from qrng.pipeline import Pipeline
    from qrng.sources import SourceInfo

__all__ = ["REPORT_COUNTERS", "PipelineSeed", "SeedSource"]

# the counters every report carries; the daemon keeps their sums across reopened sources (Prometheus counters)
REPORT_COUNTERS = ("raw_samples", "entropy_credited_bits", "extracted_bytes", "rct_failures", "apt_failures")


class SeedSource(Protocol):
    @property
    def info(self) -> SourceInfo: ...

    @property
    def failed(self) -> bool: ...

    @property
    def failure(self) -> EntropyError | None: ...

    @property
    def latches(self) -> bool:
        """A failure stays until the daemon restarts (``health.allow_reset: false``)."""
        ...

    @property
    def device(self) -> Any:
        """The device to attest (None: nothing here to attest, e.g. an upstream that attests its own)."""
        ...

    def exclusive(self) -> threading.RLock:
        """Held around a request to the device outside ``extracted`` (attestation, a presence check)."""
        ...

    def startup(self, qualify: bool = False) -> None:
        """Before any output: SP 800-90B 4.3 start-up tests; with ``qualify`` (after an assessment failure) also a
        full window assessed now (an upstream qrngd assesses its own sources: nothing more to do here)."""
        ...

    def extracted(self, n: int) -> bytes: ...

    def check_source(self) -> None: ...

    def report(self) -> dict[str, Any]:
        """The source's state for STATUS and metrics, with every key of :data:`REPORT_COUNTERS`."""
        ...

    def close(self) -> None: ...


class PipelineSeed:
    """A local :class:`~qrng.pipeline.Pipeline` as a seed source."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    @property
    def info(self) -> SourceInfo:
        return self.pipeline.info

    @property
    def failed(self) -> bool:
        return self.pipeline.failed

    @property
    def failure(self) -> EntropyError | None:
        return self.pipeline.failure

    @property
    def latches(self) -> bool:
        return not self.pipeline.config.health.allow_reset

    @property
    def device(self) -> Any:
        return self.pipeline.source

    def exclusive(self) -> threading.RLock:
        return self.pipeline.exclusive()

    def startup(self, qualify: bool = False) -> None:
        if qualify:
            self.pipeline.qualify()  # start-up tests and a full window assessed before any output
        else:
            self.pipeline.startup()  # SP 800-90B 4.3 before any output

    def extracted(self, n: int) -> bytes:
        return self.pipeline.extracted(n)

    def check_source(self) -> None:
        self.pipeline.check_source()

    def report(self) -> dict[str, Any]:
        r = self.pipeline.report()
        # a device that reports a failure of its own health tests fails the pipeline before the host's tests see
        # its samples: its counts are health-test failures too (the metric, the alert, the runbook)
        device = self.pipeline.failure if isinstance(self.pipeline.failure, DeviceHealthFailure) else None
        return {
            "state": "healthy" if r.state == "operational" else r.state, "label": r.source.label,
            "identity": r.source.identity, "simulator": r.source.simulator,
            "claimed_min_entropy": r.source.claimed_min_entropy, "raw_samples": r.accounting.raw_samples,
            "entropy_credited_bits": r.accounting.entropy_credited_bits,
            "extracted_bytes": r.accounting.extracted_bytes_used,  # taken from the extractor by this daemon
            "extractor_buffered_bytes": r.accounting.extracted_bits // 8 - r.accounting.extracted_bytes_used,
            "rct_failures": r.health.rct_failures + (device.rct_failures if device else 0),
            "apt_failures": r.health.apt_failures + (device.apt_failures if device else 0),
            "estimate": self.pipeline.last_assessment}

    def close(self) -> None:
        self.pipeline.close()
