"""Exceptions of the entropy core: two roots by boundary, narrow subclasses.

Every failure that means "no bytes" derives from :class:`EntropyError` (exit 3, CKR_DEVICE_ERROR); every problem
of configuration or installation derives from :class:`SetupError` (exit 2, CKR_GENERAL_ERROR): a user's file or
a missing build, never a fault of the device. Callers at a boundary (the CLI, the PKCS#11 module, the ceremony
engine) catch the roots and map them through one table each.
"""

from __future__ import annotations

__all__ = [
    "DeviceHealthFailure",
    "UsageError",
    "ConfigError",
    "EntropyError",
    "ExtractionFailed",
    "HealthTestFailure",
    "NativeUnavailable",
    "PipelineFailed",
    "ResourceBusy",
    "SetupError",
    "SourceError",
    "SourceRemoved",
]


class ResourceBusy(OSError):
    """A file or folder is held by another process (a ceremony folder, an audit log being appended to)."""


class EntropyError(Exception):
    """Root of every entropy-core failure. Never caught silently: it means no output."""


class SetupError(Exception):
    """Root of configuration and installation problems: the user can fix them; the device is not at fault."""


class UsageError(SetupError, ValueError):
    """A command-line option, argument or input file is wrong (exit 2): the message names it and says what is
    expected. A ValueError for code that checks input with ``except ValueError``; any other ValueError reaching
    the command line is a bug (a traceback and a bug-report line, exit 70)."""


class ConfigError(SetupError, ValueError):
    """A configuration file is malformed or wrong: its own root (a user error, never an entropy failure).

    Carries the file, the YAML path (``steps[3].key.size``) and, where the YAML node has them, line and column;
    ``str()`` reads ``root-ca.yaml:12:5: steps[3].key.size must be ...``. Raised with the path alone deep in a
    parser; the loader that knows the file adds it with :meth:`in_file`.
    """

    def __init__(self, path: str, message: str, file: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.path, self.message, self.file, self.line, self.column = path, message, file, line, column
        super().__init__(self._text())

    def _text(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + (f":{self.column}" if self.column else "")
            where += ": "
        return where + (f"{self.path} {self.message}" if self.path else self.message)

    def in_file(self, file: str, marks: dict[str, tuple[int, int]] | None = None) -> ConfigError:
        """The same error, naming ``file`` (and the line and column of its path, from ``marks``)."""
        if self.file:
            return self
        line, column = self.line, self.column
        if marks and line is None:
            path = self.path
            while path and path not in marks:  # the nearest enclosing node that exists
                path = path.rsplit(".", 1)[0] if "." in path else path.rsplit("[", 1)[0] if "[" in path else ""
            if path in marks:
                line, column = marks[path]
        return ConfigError(self.path, self.message, file, line, column)


class SourceError(EntropyError):
    """The source could not deliver samples (I/O error, supply failure, short read)."""


class DeviceHealthFailure(SourceError):
    """The device reports a failure of its own health tests (a USB QRNG's GET_STATUS): it serves nothing. Carries
    the device's counts so they reach the health-test failure metric like the host's own."""

    def __init__(self, message: str, rct_failures: int = 0, apt_failures: int = 0) -> None:
        super().__init__(message)
        self.rct_failures, self.apt_failures = rct_failures, apt_failures


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


class AssessmentFailure(EntropyError):
    """The periodic SP 800-90B assessment (non-IID track, section 6.3) estimates less min-entropy per sample than
    the source claims, by more than the allowed shortfall, or could not be made: fail closed. Not a transient
    fault: a source reopened after it serves only once a fresh full window assesses at the claim."""


class PipelineFailed(EntropyError):
    """The pipeline is in the failed state after an earlier failure; an explicit reset is needed."""


class NativeUnavailable(SetupError):
    """The compiled kernel (qrng._native) is not built; run `make setup`. An installation problem, not an
    entropy failure: it never latches a device fault."""


class ExtractionFailed(EntropyError):
    """A compiled extraction kernel failed at run time (an allocation, OpenSSL): no output from this block."""
