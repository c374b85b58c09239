"""The auditor's report of ``qrng ceremony verify --report``: each check the verifier made, how it made it, and
its result; a failed check ends the list (verification stops at the first failure, as it raises)."""

from __future__ import annotations

from dataclasses import dataclass

from ..steps.base import Fact
from .record import CheckpointFacts

__all__ = ["AuditReport", "Check"]


@dataclass(frozen=True)
class Check:
    name: str
    how: str      # the method, with the specification it follows
    result: str   # passed | FAILED
    detail: str


@dataclass(frozen=True)
class AuditReport:
    ceremony: str
    simulator: bool
    passed: bool
    cover: tuple[Fact, ...]
    checkpoint: CheckpointFacts | None
    checks: tuple[Check, ...]
    files: tuple[tuple[str, str, str], ...]  # name, SHA-256 recorded in the log, result
