"""Exclusive, non-blocking locks that name their holder (an edge: fcntl).

``hold(path, what)`` takes ``flock(LOCK_EX | LOCK_NB)`` on ``path`` and writes the holder's pid, host, start time
and command into it. A second holder is refused at once with :class:`ResourceBusy` naming the first. The kernel
drops the lock when its process dies (kill -9 included), so a stale lock file never blocks anyone; the holder
information it still holds is simply overwritten by the next holder.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import ResourceBusy

__all__ = ["ResourceBusy", "hold"]


def _holder_text(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode()) if raw.strip() else {}
    except (OSError, ValueError, UnicodeDecodeError):
        info = {}
    if not info:
        return "another process"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"
            + (f" ({info['command']})" if info.get("command") else ""))


@contextlib.contextmanager
def hold(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the duration of the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResourceBusy(f"{what} is in use by {_holder_text(fd)}; refusing to run a second time "
                               f"(lock {path})") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:4]))}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
