"""Reading a byte stream (FIFO, character device) with a deadline, so a silent writer can never hang the host."""

from __future__ import annotations

import errno
import os
import select
import time

from ..errors import SourceError, SourceRemoved

__all__ = ["open_nonblocking", "read_exact"]


def open_nonblocking(path: str) -> int:
    """Open for reading without blocking on open (a FIFO with no writer yet) or on read."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise SourceRemoved(f"{path} not found") from exc
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror}") from exc


def read_exact(fd: int, n: int, timeout: float, what: str) -> bytes:
    """Exactly ``n`` bytes, or SourceError when no byte arrives for ``timeout`` seconds or the writer is gone."""
    buf = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(max(1, int(left * 1000))):
            raise SourceError(f"{what}: no data for {timeout:g} s ({len(buf)} of {n} bytes read)")
        try:
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
        except BlockingIOError:
            continue
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise SourceRemoved(f"{what} went away: {exc.strerror}") from exc
            raise SourceError(f"read from {what} failed: {exc.strerror}") from exc
        if not chunk:
            if not buf and time.monotonic() < deadline:  # a FIFO with no writer yet reads as EOF: wait
                time.sleep(0.01)
                continue
            raise SourceError(f"{what}: end of data after {len(buf)} of {n} bytes")
        buf += chunk
        deadline = time.monotonic() + timeout  # the timeout is for silence, not for the whole request
    return bytes(buf)
