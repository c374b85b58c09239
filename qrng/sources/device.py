"""A character device such as /dev/hwrng: non-quantum unless configured otherwise, and labelled so."""

from __future__ import annotations

import errno
import os

import numpy as np

from ..errors import ConfigError, SourceError, SourceRemoved
from .base import Samples, SourceInfo

__all__ = ["DeviceSource"]


class DeviceSource:
    """Reads bytes (8-bit samples) from a character device."""

    def __init__(self, path: str = "/dev/hwrng", claimed_min_entropy: float = 1.0, quantum: bool = False,
                 model: str | None = None) -> None:
        if not 0 < claimed_min_entropy <= 8:
            raise ConfigError("source.claimed_min_entropy", "must be in (0, 8]")
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise SourceRemoved(f"device {path} not found") from exc
        except OSError as exc:
            raise SourceError(f"cannot open device {path}: {exc.strerror}") from exc
        self._info = SourceInfo(
            kind="device", identity=f"device:{path}", bits_per_sample=8,
            claimed_min_entropy=claimed_min_entropy, simulator=False, quantum=quantum,
            model=model or f"character device {path}", serial=path,
        )

    @property
    def info(self) -> SourceInfo:
        return self._info

    def read(self, n: int) -> Samples:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = os.read(self._fd, n - len(buf))
            except OSError as exc:
                if exc.errno in (errno.ENODEV, errno.ENXIO):
                    raise SourceRemoved(f"device {self.path} went away: {exc.strerror}") from exc
                raise SourceError(f"read from {self.path} failed: {exc.strerror}") from exc
            if not chunk:
                raise SourceError(f"{self.path}: end of data after {len(buf)} of {n} bytes")
            buf += chunk
        return np.frombuffer(bytes(buf), dtype=np.uint8)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
