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

    @property
    def fresh(self) -> bool:
        return not (self.completed or self.started or self.markers)


def resume_state(entries: list[bytes], script_sha256: str, script_name: str) -> ResumeState:
    """Steps completed and started, from the log's entries; a script changed since the ceremony began is refused."""
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
    return ResumeState(completed, started, frozenset(markers))
