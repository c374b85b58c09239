"""The append-only log file (the edge: file I/O, fsync). Verification lives in verify.py.

Every append is durable before it returns (write + fsync); :meth:`AuditLog.batch` groups appends under
one fsync. A torn last record (a crash mid-write) is detected when the log is opened and refused;
``recover=True`` cuts it off and records that it did, with the digest of the bytes it dropped.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qrng.lockfile import hold

from .errors import TornLogError
from .merkle import CompactRange, leaf_hash
from .note import Checkpoint, NoteSignature, Signer, sign_note
from .records import CHECKPOINT, COSIGNATURE, ENTRY, Entry, canonical

__all__ = ["AuditLog", "utc_now"]


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    """Appends entries, signed checkpoints and cosignatures to ``path``.

    Args:
        path: the log file (created if missing).
        origin: the checkpoint origin line, e.g. ``qrng-ceremony.example/root-ca-2026``.
        signer: signs checkpoints (an HSM-held ECDSA key, or an Ed25519 file key).
        ceremony: the ceremony identity stamped on every entry.
        recover: cut off a torn last record instead of refusing to open.
    """

    def __init__(self, path: str | Path, origin: str, signer: Signer | None = None, ceremony: str = "",
                 recover: bool = False) -> None:
        self.path = Path(path)
        self.origin = origin
        self.signer = signer
        self.ceremony = ceremony
        self._range = CompactRange()
        self._last_leaf = b""
        self._last_checkpoint_size = -1
        self._batch_depth = 0
        self._dirty = False
        self._fd = -1
        # one writer at a time: a second appender would interleave entries with duplicate seq for good
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(hold(Path(f"{self.path}.lock"), f"audit log {self.path}"))
        try:
            dropped = self._load(recover)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except BaseException:
            self._lock.close()
            raise
        if dropped is not None:
            self.append("log", "auditlog", "log.recovered",
                        data={"dropped_bytes": dropped[0], "dropped_sha256": dropped[1]})

    # --- reading what is there --------------------------------------------------------------------------
    def _load(self, recover: bool) -> tuple[int, str] | None:
        if not self.path.exists():
            return None
        raw = self.path.read_bytes()
        cut = raw.rfind(b"\n") + 1
        dropped = None
        if cut != len(raw):
            tail = raw[cut:]
            if not recover:
                raise TornLogError(
                    f"{self.path}: torn last record at byte {cut} ({len(tail)} bytes without a newline); "
                    "a write was interrupted. Open with recover to cut it off (it will be recorded).",
                    index=self._count_entries(raw[:cut]))
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            dropped = (len(tail), hashlib.sha256(tail).hexdigest())
        for line in raw[:cut].splitlines():
            rec = json.loads(line)
            if rec.get("kind") == ENTRY:
                self._last_leaf = leaf_hash(line)
                self._range.append(self._last_leaf)
            elif rec.get("kind") == CHECKPOINT:
                self._last_checkpoint_size = self._range.size
        return dropped

    @staticmethod
    def _count_entries(raw: bytes) -> int:
        return raw.count(b'"kind":"entry"')

    @property
    def size(self) -> int:
        return self._range.size

    def root(self) -> bytes:
        return self._range.root()

    # --- writing -------------------------------------------------------------------------------------------
    def _write(self, line: bytes) -> None:
        """Append one record whole, or leave the file as it was and raise naming it. A full or read-only disk
        gives a short write first and ENOSPC after: without this, a torn record stayed in the file and the
        in-memory tree moved on (found by the game day's disk-full fault)."""
        data = memoryview(line + b"\n")
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data):]
            self._dirty = True
            if not self._batch_depth:
                self._sync()
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)  # no torn record: the log stays what it was before this append
            raise OSError(exc.errno, f"{exc.strerror} (appending to the log, left as it was: {start} bytes)",
                          str(self.path)) from None

    def _sync(self) -> None:
        if self._dirty:
            os.fsync(self._fd)
            self._dirty = False

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group appends under one fsync at the end (durability at the batch boundary)."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if not self._batch_depth:
                self._sync()

    def append(self, step: str, actor: str, event: str, files: dict[str, str] | None = None,
               data: dict[str, Any] | None = None, when: str | None = None) -> Entry:
        entry = Entry(seq=self._range.size, time=when or utc_now(), ceremony=self.ceremony, step=step,
                      actor=actor, event=event, files=dict(files or {}), data=dict(data or {}),
                      prev=self._last_leaf.hex())
        line = entry.encode()
        self._write(line)
        self._last_leaf = leaf_hash(line)
        self._range.append(self._last_leaf)
        return entry

    def checkpoint(self) -> str:
        """Sign and append a checkpoint for the current tree (skipped if one exists at this size)."""
        if self.signer is None:
            raise ValueError("this log has no checkpoint signer")
        cp = Checkpoint(self.origin, self.size, self.root())
        note = sign_note(cp.text(), [self.signer])
        if self._last_checkpoint_size != self.size:
            self._write(canonical({"kind": CHECKPOINT, "note": note}))
            self._last_checkpoint_size = self.size
        return note

    def add_cosignature(self, size: int, sig: NoteSignature) -> None:
        self._write(canonical({"kind": COSIGNATURE, "size": size, "line": sig.line()}))

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self._sync()
            finally:
                os.close(self._fd)
                self._fd = -1
                self._lock.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
