"""Exceptions of the ceremony engine: one root."""

from __future__ import annotations

from qrng.errors import ConfigError
from qrng.hsm.errors import HsmError  # the HSM edge's own root (qrng/hsm), raised through ceremonies

__all__ = ["CeremonyError", "HsmError", "OutputUnwritable", "PolicyViolation", "Refused", "ScriptError",
           "StepFailed"]


class CeremonyError(Exception):
    """Root of ceremony failures."""


class ScriptError(ConfigError, CeremonyError):
    """A script, policy or profile is malformed: a ConfigError (exit 2) naming file, YAML path, line, column."""

    def __init__(self, message: str, path: str = "", file: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        super().__init__(path, message, file, line, column)

    @classmethod
    def from_config(cls, exc: ConfigError) -> ScriptError:
        return cls(exc.message, exc.path, exc.file, exc.line, exc.column)


class PolicyViolation(CeremonyError):
    """The script asks for something the policy does not allow (all violations are listed)."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__("policy violations:\n  - " + "\n  - ".join(violations))
        self.violations = violations


class Refused(CeremonyError):
    """The ceremony refuses to start (before any step acts): nothing was touched; exit 2."""


class StepFailed(CeremonyError):
    """A step could not complete; the message names the step."""


class OutputUnwritable(CeremonyError):
    """The ceremony's folder stopped taking writes (a full disk, a quota, a read-only or failing file system): the
    run stops at once. Every write is whole or not at all (atomic files, log records appended whole), so what was
    written before is intact; the message names the file, and the same command resumes once the folder is
    writable again."""
