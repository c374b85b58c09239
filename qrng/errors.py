"""Exceptions of the entropy core: one root, narrow subclasses.

Every failure that means "no bytes" derives from :class:`EntropyError`; callers at a boundary
(the CLI, the PKCS#11 module, the ceremony engine) catch that one root and map it.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EntropyError",
    "HealthTestFailure",
    "NativeUnavailable",
    "PipelineFailed",
    "SourceError",
    "SourceRemoved",
]


class EntropyError(Exception):
    """Root of every entropy-core failure. Never caught silently: it means no output."""


class ConfigError(EntropyError, ValueError):
    """Configuration is malformed; the message names the YAML path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path} {message}" if path else message)
        self.path = path


class SourceError(EntropyError):
    """The source could not deliver samples (I/O error, supply failure, short read)."""


class SourceRemoved(SourceError):
    """The source device is gone (unplugged, not found)."""


class HealthTestFailure(EntropyError):
    """An SP 800-90B section 4.4 continuous health test fired (fail closed)."""

    def __init__(self, test: str, sample_index: int, cutoff: int, observed: int, value: int) -> None:
        super().__init__(
            f"{test} failed at sample {sample_index}: value {value} reached count {observed} "
            f"(cutoff {cutoff}); no output is produced until the source is reset"
        )
        self.test = test
        self.sample_index = sample_index
        self.cutoff = cutoff
        self.observed = observed
        self.value = value


class PipelineFailed(EntropyError):
    """The pipeline is in the failed state after an earlier failure; an explicit reset is needed."""


class NativeUnavailable(EntropyError):
    """The compiled kernel (qrng._native) is not built; run `make setup`."""
