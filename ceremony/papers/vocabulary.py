"""The papers' vocabulary: what a step contributes to the run sheet (a row of facts to compare) and to the
transcript (a section of facts), and the verified log entries a step's section is written from. Step kinds
(ceremony/steps) speak it; the papers (this package) own it and render it. A leaf module: it imports nothing of
the ceremony."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PHASES", "Fact", "LogEvent", "Section", "SheetRow", "StepLog"]

PHASES = ("Entropy source", "Keys and certificates", "Checks and sign-off")  # a run sheet page per phase


@dataclass(frozen=True)
class Fact:
    """One labelled value on paper. ``digest``: hex, base64 or a key (monospace, wraps anywhere)."""

    label: str
    value: str
    digest: bool = False


@dataclass(frozen=True)
class SheetRow:
    """A step's row on the run sheet: who acts, what the operator reads aloud and does, and what the screen will
    show with what to compare it against (policy limits, the device's serial, expected key types)."""

    actors: tuple[str, ...]
    say: str
    do: tuple[str, ...]
    expect: tuple[Fact, ...] = ()


@dataclass(frozen=True)
class LogEvent:
    event: str
    actor: str
    time: str
    data: dict[str, Any]
    files: dict[str, str]


@dataclass(frozen=True)
class StepLog:
    """The verified log entries of one step, as the transcript reads them."""

    id: str
    type: str
    events: tuple[LogEvent, ...]

    def data(self, event: str) -> dict[str, Any]:
        """The data of the step's last ``event`` (empty if it has none)."""
        return next((e.data for e in reversed(self.events) if e.event == event), {})

    def has(self, event: str) -> bool:
        return any(e.event == event for e in self.events)

    @property
    def results(self) -> dict[str, Any]:
        r: dict[str, Any] = self.data("step.completed").get("results", {})
        return r


@dataclass(frozen=True)
class Section:
    """A step's section of the transcript: what happened, in plain language, and its values."""

    text: str
    facts: tuple[Fact, ...] = ()
