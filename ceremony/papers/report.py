"""The auditor's report of ``qrng ceremony verify --report``: each check the verifier made, how it made it, and
its result: passed, failed or not checked (with why, and whether the verdict needs it). A failed check ends the list
(verification stops at the first failure, as it raises). The outcome on the cover is one of ``verified`` (every
required check passed), ``not independently verified`` (nothing failed, but a required check was not made) or
``failed``."""

from __future__ import annotations

from dataclasses import dataclass

from transparency.verdict import Check

from .record import CheckpointFacts
from .vocabulary import Fact

__all__ = ["AuditReport", "Check"]


@dataclass(frozen=True)
class AuditReport:
    ceremony: str
    simulator: bool
    outcome: str  # verified | not independently verified | failed
    cover: tuple[Fact, ...]
    checkpoint: CheckpointFacts | None
    checks: tuple[Check, ...]
    files: tuple[tuple[str, str, str], ...]  # name, SHA-256 recorded in the log, result
