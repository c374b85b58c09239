"""qrngd's events in a signed audit log (issue 13): daemon start and stop, a source ready, failed (health test,
device error, removal, attestation) and recovered, a client that fell back to its named fallback, a kernel feed
error. Each event is an entry of the RFC 9162 log (transparency/) followed by a checkpoint signed with the log key,
so ``qrng audit verify LOG --key KEY.pub`` checks the daemon's history offline like a ceremony's.

The edge: one writer (the log's lock file), appends serialised by a lock; an append that fails (disk full) is
said once on stderr and never stops the service."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from transparency.log import AuditLog
from transparency.note import load_ed25519_signer

__all__ = ["EventLog"]


class EventLog:
    def __init__(self, path: Path, key_file: Path, recover: bool = True) -> None:
        signer = load_ed25519_signer(key_file.read_text())
        self.log = AuditLog(path, signer.name, signer, ceremony="qrngd", recover=recover)
        self._lock = threading.Lock()
        self._said = False
        self.appended = 0
        self.checkpoint_time = 0.0

    def record(self, event: str, **data: Any) -> None:
        import time
        with self._lock:
            try:
                with self.log.batch():
                    self.log.append("qrngd", "qrngd", event, data={k: v for k, v in data.items() if v is not None})
                    self.log.checkpoint()
                self.appended += 1
                self.checkpoint_time = time.time()
            except OSError as exc:
                if not self._said:
                    self._said = True
                    print(f"qrngd: audit log {self.log.path}: {exc.strerror}; events are not being recorded",
                          file=sys.stderr, flush=True)

    @property
    def size(self) -> int:
        return self.log.size

    def close(self) -> None:
        with self._lock:
            self.log.close()
