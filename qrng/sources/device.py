"""A character device such as /dev/hwrng: non-quantum unless configured otherwise, and labelled so."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError
from ._stream import open_nonblocking, read_exact
from .base import Samples, SourceInfo

__all__ = ["DeviceSource"]


class DeviceSource:
    """Reads bytes (8-bit samples) from a character device."""

    def __init__(self, path: str = "/dev/hwrng", claimed_min_entropy: float = 1.0, quantum: bool = False,
                 model: str | None = None, read_timeout: float = 5.0) -> None:
        if not 0 < claimed_min_entropy <= 8:
            raise ConfigError("source.claimed_min_entropy", "must be in (0, 8]")
        self.path = path
        self._timeout = read_timeout
        self._fd = open_nonblocking(path)
        self._info = SourceInfo(
            kind="device", identity=f"device:{path}", bits_per_sample=8,
            claimed_min_entropy=claimed_min_entropy, simulator=False, quantum=quantum,
            model=model or f"character device {path}", serial=path,
        )

    @property
    def info(self) -> SourceInfo:
        return self._info

    def read(self, n: int) -> Samples:
        """``n`` bytes; a device silent for ``read_timeout`` seconds is a SourceError, a vanished one SourceRemoved."""
        return np.frombuffer(read_exact(self._fd, n, self._timeout, f"device {self.path}"), dtype=np.uint8)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
