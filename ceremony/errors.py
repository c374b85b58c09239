"""Exceptions of the ceremony engine: one root."""

from __future__ import annotations

__all__ = ["CeremonyError", "HsmError", "PolicyViolation", "ScriptError", "StepFailed"]


class CeremonyError(Exception):
    """Root of ceremony failures."""


class ScriptError(CeremonyError, ValueError):
    """A script, policy or profile is malformed; the message names the file and the YAML path."""


class PolicyViolation(CeremonyError):
    """The script asks for something the policy does not allow (all violations are listed)."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__("policy violations:\n  - " + "\n  - ".join(violations))
        self.violations = violations


class HsmError(CeremonyError):
    """The HSM refused or failed an operation."""


class StepFailed(CeremonyError):
    """A step could not complete; the message names the step."""
