"""Replay a raw-sample file: one sample per byte (the NIST SP 800-90B tool's format) or packed bits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SourceError
from .base import Samples, SourceInfo

__all__ = ["FileSource"]


class FileSource:
    """Replays samples from a file; reaching the end is a SourceError (never a short read).

    Args:
        path: the file.
        bits_per_sample: 1..8 for one-sample-per-byte files; a byte >= 2**bits is an error.
        claimed_min_entropy: bits per sample.
        packed: the file holds packed bits, most significant bit first; samples are single bits.
        loop: start again at the beginning at end of file (for rehearsal only).
    """

    def __init__(self, path: str | Path, bits_per_sample: int, claimed_min_entropy: float,
                 packed: bool = False, loop: bool = False) -> None:
        self.path = Path(path)
        if packed and bits_per_sample != 1:
            raise ConfigError("source.bits_per_sample", "packed files hold 1-bit samples")
        if not 1 <= bits_per_sample <= 8:
            raise ConfigError("source.bits_per_sample", "must be between 1 and 8")
        if not 0 < claimed_min_entropy <= bits_per_sample:
            raise ConfigError("source.claimed_min_entropy", f"must be in (0, {bits_per_sample}]")
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read sample file {self.path}: {exc.strerror}") from exc
        data = np.frombuffer(raw, dtype=np.uint8)
        if packed:
            data = np.unpackbits(data)
        elif data.size and int(data.max()) >= (1 << bits_per_sample):
            bad = int(np.argmax(data >= (1 << bits_per_sample)))
            raise SourceError(
                f"{self.path}: byte {bad} holds {int(data[bad])}, not a {bits_per_sample}-bit sample"
            )
        self._data: Samples = data
        self._pos = 0
        self._loop = loop
        digest = hashlib.sha256(raw).hexdigest()[:16]
        self._info = SourceInfo(
            kind="file", identity=f"file:{self.path.name}:sha256:{digest}", bits_per_sample=bits_per_sample,
            claimed_min_entropy=claimed_min_entropy, simulator=False, quantum=False,
            model=f"raw sample file {self.path.name}", serial=digest,
        )

    @property
    def info(self) -> SourceInfo:
        return self._info

    def __len__(self) -> int:
        return int(self._data.size)

    def read(self, n: int) -> Samples:
        if self._pos + n <= self._data.size:
            out = self._data[self._pos:self._pos + n]
            self._pos += n
            return out
        if not self._loop or self._data.size == 0:
            raise SourceError(
                f"{self.path}: end of sample file after {self._data.size} samples ({n} more were requested)"
            )
        idx = (np.arange(self._pos, self._pos + n) % self._data.size)
        self._pos = (self._pos + n) % self._data.size
        return self._data[idx]

    def close(self) -> None:
        pass
