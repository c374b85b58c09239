"""qrngd's events in a signed audit log (issue 13): daemon start and stop, a source ready, failed (health test,
device error, removal, attestation) and recovered, a client that fell back to its named fallback, a kernel feed
error. Each event is an entry of the RFC 9162 log (transparency/) followed by a checkpoint signed with the log key,
so ``qrng audit verify LOG --key KEY.pub`` checks the daemon's history offline like a ceremony's.

The edge: one writer (the log's lock file), appends serialised by a lock. An append the file system refuses (a full
or read-only disk) never stops the service and loses no event: the event is held in memory (up to
``HELD_MAX``, oldest dropped beyond, and counted) with the time it happened, appended with that time once the log
takes writes again (the daemon retries about once a second), and the state is a metric
(``qrng_audit_log_writable``, alert QrngAuditLogNotRecording). Each change of state is said once on stderr."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from transparency.log import AuditLog, utc_now
from transparency.note import load_ed25519_signer

__all__ = ["HELD_MAX", "EventLog"]

HELD_MAX = 10_000  # events held in memory while the log refuses appends


class EventLog:
    def __init__(self, path: Path, key_file: Path, recover: bool = True) -> None:
        signer = load_ed25519_signer(key_file.read_text())
        self.log = AuditLog(path, signer.name, signer, ceremony="qrngd", recover=recover)
        self._lock = threading.Lock()
        self.held: deque[tuple[str, dict[str, Any], str]] = deque()
        self.writable = True
        self.write_errors = 0
        self.dropped = 0
        self.appended = 0
        self.checkpoint_time = 0.0

    def record(self, event: str, **data: Any) -> None:
        with self._lock:
            if len(self.held) == HELD_MAX:
                self.dropped += 1  # the oldest held event is lost; the count says how many
            self.held.append((event, {k: v for k, v in data.items() if v is not None}, utc_now()))
            self._flush()

    def retry(self) -> None:
        """Append the held events if the log takes writes again (called about once a second)."""
        with self._lock:
            if self.held or not self.writable:
                self._flush()

    def _flush(self) -> None:
        """Append the held events in order, each followed by a checkpoint; an event appended whose checkpoint
        failed is not held again (it is in the log: the next checkpoint covers it)."""
        while True:
            try:
                with self.log.batch():
                    if self.held:
                        event, data, when = self.held[0]
                        self.log.append("qrngd", "qrngd", event, data=data, when=when)
                        self.held.popleft()
                        self.appended += 1
                    self.log.checkpoint()  # nothing is written when the last checkpoint covers the tree
            except OSError as exc:
                self.write_errors += 1
                if self.writable:
                    self.writable = False
                    print(f"qrngd: audit log {self.log.path}: {exc.strerror}; events are held in memory (up to "
                          f"{HELD_MAX}) and appended when it takes writes again", file=sys.stderr, flush=True)
                return
            self.checkpoint_time = time.time()
            if not self.held:
                break
        if not self.writable:
            self.writable = True
            print(f"qrngd: audit log {self.log.path}: takes writes again; the held events were appended"
                  + (f" ({self.dropped} dropped beyond {HELD_MAX})" if self.dropped else ""),
                  file=sys.stderr, flush=True)

    @property
    def size(self) -> int:
        return self.log.size

    def close(self) -> None:
        """A last try for the held events; any still held are named on stderr (the journal keeps each event's
        line), never dropped without a word."""
        with self._lock:
            if self.held:
                self._flush()
            if self.held:
                print(f"qrngd: audit log {self.log.path}: stopping with {len(self.held)} held event(s) not written "
                      f"(the log still refuses appends); the journal has each of them", file=sys.stderr, flush=True)
            try:
                self.log.close()
            except OSError as exc:  # the final fsync of a failing disk: said, not a traceback at shutdown
                print(f"qrngd: audit log {self.log.path}: {exc.strerror} at close", file=sys.stderr, flush=True)
