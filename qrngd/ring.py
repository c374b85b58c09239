"""The raw-sample ring on disk (issue 13): the last N MiB of one source's raw samples, as read from the device and
before the health tests judge them (so a failure's samples are kept for post-incident analysis), for offline
re-assessment with ``qrng estimate``.

Layout: ``DIR/<source>/raw-<seq>.bin`` segments, one sample per byte (the NIST tool's format, so each segment, or
their concatenation in name order, is a valid ``qrng estimate -b BITS`` input), and ``meta.json`` (identity, bits
per sample, claim). The newest segment grows; when the total passes the limit the oldest are deleted. A crash
loses at most the unflushed tail of the newest segment. Samples are written with plain buffered I/O (no fsync:
the ring is a diagnostic copy, not a record; the signed audit log is the record)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from qrng.atomic import atomic_write

__all__ = ["RawRing"]


class RawRing:
    def __init__(self, folder: Path, max_bytes: int, meta: dict[str, Any], segment_bytes: int = 1 << 20) -> None:
        if max_bytes < 1 << 20:
            raise ValueError("the raw-sample ring must hold at least 1 MiB")
        self.folder = folder
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max_bytes // 4) or max_bytes
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        # one writer per ring: a second daemon with the same --retain-dir would interleave and delete its segments
        import fcntl
        self._lock_fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OSError(f"{folder}: the raw-sample ring is in use by another qrngd (lock {folder / '.lock'})") \
                from None
        existing = self.segments()
        self._seq = int(existing[-1].stem.split("-")[1]) + 1 if existing else 1
        self._sizes = {p: p.stat().st_size for p in existing}
        self._f: Any = None
        self._cur: Path | None = None
        self.written = 0
        self.error = ""  # why writing stopped (a full disk), if it did
        self.describe(meta)

    def describe(self, meta: dict[str, Any]) -> None:
        """meta.json: what the samples are (identity, bits per sample, claim) and how to assess them."""
        atomic_write(self.folder / "meta.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(),
                     overwrite=True)

    def segments(self) -> list[Path]:
        return sorted(self.folder.glob("raw-*.bin"))

    def write(self, samples: bytes) -> None:
        """Append samples. The ring is a diagnostic copy: a write that fails (a full disk) stops the ring and is
        reported (``error``, STATUS, the log line), never the source's failure."""
        if self.error:
            return
        try:
            self._write(samples)
        except OSError as exc:
            self.error = f"writing {self._cur or self.folder} failed ({exc.strerror or exc}); retention stopped"
            with contextlib.suppress(OSError):
                if self._f is not None:
                    self._f.close()
            self._f = None

    def _write(self, samples: bytes) -> None:
        view = memoryview(samples)
        while view:
            if self._f is None or self._sizes[self._cur] >= self.segment_bytes:  # type: ignore[index]
                self._rotate()
            assert self._cur is not None
            k = min(len(view), self.segment_bytes - self._sizes[self._cur])
            self._f.write(view[:k])
            self._sizes[self._cur] += k
            self.written += k
            view = view[k:]

    def _rotate(self) -> None:
        if self._f is not None:
            self._f.close()
        self._cur = self.folder / f"raw-{self._seq:012d}.bin"
        self._seq += 1
        self._f = open(self._cur, "ab", buffering=1 << 16)  # noqa: SIM115 - held open across writes
        self._sizes[self._cur] = 0
        while sum(self._sizes.values()) > self.max_bytes - self.segment_bytes and len(self._sizes) > 1:
            oldest = min(self._sizes)
            oldest.unlink(missing_ok=True)
            del self._sizes[oldest]

    @property
    def size(self) -> int:
        return sum(self._sizes.values())

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = -1
