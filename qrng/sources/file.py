"""Replay a raw-sample file (one sample per byte, the NIST SP 800-90B tool's format, or packed bits), or read a
named stream (a FIFO) when configured as one. Never reads more than a block into memory."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SourceError, SourceRemoved
from ._stream import open_nonblocking, read_exact
from .base import Samples, SourceInfo

__all__ = ["FileSource"]

BLOCK = 1 << 20  # bytes read (and hashed) at a time


class FileSource:
    """Samples from a regular file (end of file is a SourceError unless ``loop``) or, with ``stream``, from a FIFO
    or character device read with a timeout.

    Args:
        path: the file.
        bits_per_sample: 1..8 for one-sample-per-byte files; a byte >= 2**bits is an error (named by offset).
        claimed_min_entropy: bits per sample.
        packed: the file holds packed bits, most significant bit first; samples are single bits.
        loop: start again at the beginning at end of file (for rehearsal only; regular files only).
        stream: the path is a FIFO or device, read as a stream (no digest, no loop); without it only a regular
            file is accepted.
        read_timeout: seconds of silence after which a stream read fails.
    """

    def __init__(self, path: str | Path, bits_per_sample: int, claimed_min_entropy: float,
                 packed: bool = False, loop: bool = False, stream: bool = False, read_timeout: float = 5.0) -> None:
        self.path = Path(path)
        if packed and bits_per_sample != 1:
            raise ConfigError("source.bits_per_sample", "packed files hold 1-bit samples")
        if not 1 <= bits_per_sample <= 8:
            raise ConfigError("source.bits_per_sample", "must be between 1 and 8")
        if not 0 < claimed_min_entropy <= bits_per_sample:
            raise ConfigError("source.claimed_min_entropy", f"must be in (0, {bits_per_sample}]")
        self._bits, self._packed, self._loop, self._timeout = bits_per_sample, packed, loop, read_timeout
        self._stream = stream
        self._pos = 0  # byte offset of the next read (regular files)
        self._bitbuf = np.empty(0, dtype=np.uint8)  # unpacked bits not yet served (packed files)
        try:
            st = os.stat(self.path)
        except FileNotFoundError as exc:
            raise SourceRemoved(f"sample file {self.path} not found") from exc
        except OSError as exc:
            raise SourceError(f"cannot read sample file {self.path}: {exc.strerror}") from exc
        regular = stat.S_ISREG(st.st_mode)
        if not regular and not stream:
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or \
                stat.S_ISBLK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError("source.path", f"{self.path} is {kind}; a file source replays regular files only "
                                             "(set source.stream: true to read it as a stream, with a timeout)")
        if stream and loop:
            raise ConfigError("source.loop", "a stream cannot loop")
        if regular and not stream:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self._size = st.st_size
            digest = self._digest()
            identity, serial = f"file:{self.path.name}:sha256:{digest[:16]}", digest[:16]
        else:
            self._stream = True
            self._fd = open_nonblocking(str(self.path))
            self._size = -1
            identity, serial = f"stream:{self.path}", self.path.name
        self._info = SourceInfo(
            kind="file", identity=identity, bits_per_sample=bits_per_sample,
            claimed_min_entropy=claimed_min_entropy, simulator=False, quantum=False,
            model=f"raw sample {'stream' if self._stream else 'file'} {self.path.name}", serial=serial,
        )

    def _digest(self) -> str:
        h = hashlib.sha256()
        for off in range(0, self._size, BLOCK):
            h.update(os.pread(self._fd, BLOCK, off))
        return h.hexdigest()

    @property
    def info(self) -> SourceInfo:
        return self._info

    def __len__(self) -> int:
        """Samples in the file (regular files)."""
        return self._size * (8 if self._packed else 1) if self._size >= 0 else 0

    def _bytes(self, n: int) -> bytes:
        """The next ``n`` bytes: from the stream, or from the file (wrapping round with ``loop``)."""
        if self._stream:
            raw = read_exact(self._fd, n, self._timeout, str(self.path))
            start = self._pos
            self._pos += len(raw)
            if not self._packed:
                self._check(raw, start)
            return raw
        out = bytearray()
        while len(out) < n:
            if self._pos >= self._size:
                if not self._loop or self._size == 0:
                    raise SourceError(f"{self.path}: end of sample file after {self._size} bytes "
                                      f"({n - len(out)} more were needed)")
                self._pos = 0
            chunk = os.pread(self._fd, min(n - len(out), BLOCK, self._size - self._pos), self._pos)
            if not chunk:
                raise SourceError(f"{self.path}: the file shrank while being read (at byte {self._pos})")
            start = self._pos
            self._pos += len(chunk)
            if not self._packed:
                self._check(chunk, start)
            out += chunk
        return bytes(out)

    def _check(self, chunk: bytes, offset: int) -> None:
        data = np.frombuffer(chunk, dtype=np.uint8)
        if self._bits < 8 and data.size and int(data.max()) >= 1 << self._bits:
            bad = int(np.argmax(data >= 1 << self._bits))
            raise SourceError(f"{self.path}: byte {offset + bad} holds {int(data[bad])}, "
                              f"not a {self._bits}-bit sample")

    def read(self, n: int) -> Samples:
        if n <= 0:
            return np.empty(0, dtype=np.uint8)
        if not self._packed:
            return np.frombuffer(self._bytes(n), dtype=np.uint8)
        need = n - self._bitbuf.size
        if need > 0:
            more = np.unpackbits(np.frombuffer(self._bytes((need + 7) // 8), dtype=np.uint8))
            self._bitbuf = np.concatenate([self._bitbuf, more])
        out, self._bitbuf = self._bitbuf[:n], self._bitbuf[n:]
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
