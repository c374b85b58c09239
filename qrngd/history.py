"""The daemon's recent history for ``qrng status --plot`` (issue 13): every ``interval`` seconds one point per
source (raw sample rate, SP 800-90B estimate, health-test failures so far, up) and the served seed rate, the
last ``points`` of them. Pure: the server feeds it counter snapshots; it computes rates and keeps a bounded
window."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["History", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """Counters of one source at one time."""

    raw_samples: int
    failures: int
    estimate: float | None
    up: bool


class History:
    def __init__(self, interval: float = 10.0, points: int = 360) -> None:
        self.interval, self.points = interval, points
        self._t: deque[float] = deque(maxlen=points)
        self._served: deque[float] = deque(maxlen=points)
        self._sources: dict[str, dict[str, deque[Any]]] = {}
        self._last: tuple[float, int, dict[str, Snapshot]] | None = None

    def due(self, now: float) -> bool:
        return self._last is None or now - self._last[0] >= self.interval

    def add(self, now: float, served_bytes: int, sources: dict[str, Snapshot]) -> None:
        """One point at wall time ``now``: rates over the time since the previous point."""
        if self._last is None:
            self._last = (now, served_bytes, sources)
            return
        t0, served0, before = self._last
        dt = max(now - t0, 1e-9)
        self._t.append(round(now, 3))
        self._served.append(round((served_bytes - served0) / dt, 1))
        for name, snap in sources.items():
            series = self._sources.setdefault(name, {
                k: deque([None] * (len(self._t) - 1), maxlen=self.points)
                for k in ("raw_rate", "estimate", "failures", "up")})
            prev = before.get(name)
            rate = (snap.raw_samples - prev.raw_samples) / dt if prev is not None else None
            series["raw_rate"].append(round(rate, 1) if rate is not None and rate >= 0 else None)
            series["estimate"].append(snap.estimate)
            series["failures"].append(snap.failures)
            series["up"].append(1 if snap.up else 0)
        for name, series in self._sources.items():
            if name not in sources:
                for s in series.values():
                    s.append(None)
        self._last = (now, served_bytes, sources)

    def to_dict(self, last: int | None = None) -> dict[str, Any]:
        k = -last if last else 0
        return {"interval_s": self.interval, "t": list(self._t)[k:], "served_bytes_per_s": list(self._served)[k:],
                "sources": {n: {name: list(v)[k:] for name, v in s.items()} for n, s in self._sources.items()}}

    def to_json(self, max_bytes: int) -> bytes:
        """The history as JSON of at most ``max_bytes`` (the most recent points that fit)."""
        import json
        last = len(self._t) or None
        while True:
            out = json.dumps(self.to_dict(last), separators=(",", ":")).encode()
            if len(out) <= max_bytes or not last or last <= 1:
                return out
            last //= 2
