"""The resume state of a ceremony: a pure function of the entries of its verified log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import CeremonyError

__all__ = ["ResumeState", "resume_state"]


@dataclass(frozen=True)
class ResumeState:
    completed: dict[str, dict[str, Any]] = field(default_factory=dict)  # step id -> step.completed data
    started: dict[str, dict[str, Any]] = field(default_factory=dict)    # step id -> step.started data
    markers: frozenset[str] = frozenset()                               # transcript.written, ceremony.completed
    # step.started data found only after the last signed checkpoint: never trusted as a result, only reused so
    # that a step's pre-drawn values (a key's CKA_ID) stay the same when the step is redone
    carried: dict[str, dict[str, Any]] = field(default_factory=dict)
    confirmed_entries: int = 0  # entries covered by the last signed checkpoint

    @property
    def fresh(self) -> bool:
        """Nothing of this ceremony is confirmed yet: it (re)starts with ceremony.started."""
        return self.confirmed_entries == 0


def resume_state(entries: list[bytes], script_sha256: str, script_name: str,
                 unconfirmed: list[bytes] | None = None) -> ResumeState:
    """Steps completed and started, from the entries covered by the last signed checkpoint; ``unconfirmed`` (the
    entries after it) contributes only the step.started values of steps that are not complete. A script changed
    since the ceremony began is refused."""
    completed: dict[str, dict[str, Any]] = {}
    started: dict[str, dict[str, Any]] = {}
    markers: set[str] = set()
    for line in entries:
        e = json.loads(line)
        event = e["event"]
        if event == "ceremony.started" and e["data"].get("script_sha256") != script_sha256:
            raise CeremonyError(f"{script_name} changed since this ceremony began; resume refused")
        if event == "step.started":
            started[e["step"]] = e["data"]
        elif event == "step.completed":
            completed[e["step"]] = e["data"]
        elif event in ("transcript.written", "ceremony.completed"):
            markers.add(event)
    carried: dict[str, dict[str, Any]] = {}
    for line in unconfirmed or []:
        e = json.loads(line)
        if e["event"] == "step.started" and e["step"] not in completed and e["step"] not in started:
            carried[e["step"]] = {k: v for k, v in e["data"].items() if k != "type"}
    return ResumeState(completed, started, frozenset(markers), carried, len(entries))
