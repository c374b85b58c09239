"""Which keys an exposure window touches (the runbooks' key-rotation decision; issue 22).

A fault that no health test detects (a slow drift inside the cutoffs, found later by the SP 800-90B assessment)
may have let weaker output through between its onset and its detection. A key is exposed when its ceremony drew
entropy in that window (``entropy.committed`` / ``entropy.extracted``: the key's CKA_ID and the HSM's seed came
from it) or generated the key in it (``key.generated``). Found mechanically from the ceremony's signed audit log;
the key provenance statement (``LABEL.provenance.json``) names the same ceremony, step and entropy digests.

Pure: entries in, findings out. The command line (``qrng gameday exposure``) reads and verifies the logs.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from transparency.errors import FormatError

__all__ = ["Exposed", "exposed_keys", "parse_time"]

ENTROPY_EVENTS = ("entropy.committed", "entropy.extracted")
KEY_EVENTS = ("key.generated", "key.adopted")


@dataclass(frozen=True)
class Exposed:
    ceremony: str
    label: str
    key: str                  # "EC P-384", "RSA-3072", ...
    key_id: str
    public_key_sha256: str
    generated: str            # the key event's time (UTC, as logged)
    reason: str               # why it is exposed, with the time that puts it in the window


def parse_time(text: str, what: str = "time") -> datetime.datetime:
    """An ISO 8601 time; without a zone it is UTC. ValueError naming ``what`` otherwise."""
    try:
        t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what} {text!r}: not an ISO 8601 time such as 2026-12-06T03:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


def _text(d: dict[str, Any], name: str, where: str, default: str | None = None) -> str:
    v = d.get(name, default)
    if not isinstance(v, str):
        raise FormatError(f"{where}: '{name}' must be a string, not {type(v).__name__}")
    return v


def exposed_keys(entries: Iterable[Any], start: datetime.datetime, end: datetime.datetime) -> list[Exposed]:
    """The keys of one ceremony log whose entropy was drawn, or which were generated, in [start, end]. An entry
    that is not a ceremony entry (not an object, a field of the wrong type, an unreadable time) raises FormatError
    naming the entry."""
    out: list[Exposed] = []
    drawn: list[str] = []  # times entropy was drawn in the window, before the key events that follow
    for i, e in enumerate(entries):
        where = f"entry {i}"
        if not isinstance(e, dict):
            raise FormatError(f"{where} is not a ceremony log entry (a JSON {type(e).__name__}, not an object)")
        event = e.get("event")
        if event not in ENTROPY_EVENTS + KEY_EVENTS:
            continue
        logged = _text(e, "time", where)
        try:
            inside = start <= parse_time(logged, "time") <= end
        except ValueError as exc:
            raise FormatError(f"{where}: {exc}") from None
        if event in ENTROPY_EVENTS:
            if inside:
                drawn.append(f"{event} at {logged}")
            continue
        d = e.get("data", {})
        if not isinstance(d, dict):
            raise FormatError(f"{where}: 'data' must be an object, not {type(d).__name__}")
        why = [f"generated at {logged}, inside the window"] if inside else []
        if drawn:
            why.append(f"its ceremony drew entropy in the window ({drawn[-1]})")
        if why:
            out.append(Exposed(_text(e, "ceremony", where, ""), _text(d, "label", where, "?"),
                               _text(d, "key", where, "?"), _text(d, "key_id", where, ""),
                               _text(d, "public_key_sha256", where, ""), logged, "; ".join(why)))
    return out
