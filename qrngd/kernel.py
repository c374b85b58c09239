"""Feeding the Linux kernel's entropy pool with extracted, health-tested output, as rngd does (issue 13).

* :class:`IoctlFeed`: ``RNDADDENTROPY`` on /dev/random (random(4); needs CAP_SYS_ADMIN): each write credits 8 bits
  per byte, since only full-entropy extractor output from healthy sources is offered, at most ``rate`` bytes a
  second (the kernel's pool is 256 bits; rngd's default pacing is similar).
* :class:`FifoFeed`: a named pipe that rngd reads as its entropy source (``rngd -r FIFO``); rngd then runs its own
  FIPS tests and credits the kernel itself. Bytes are written by one thread from a bounded buffer; when the
  reader is slower they are not queued further (the caller counts them as discarded).

Both are edges: :meth:`offer` takes what fits now and returns how many bytes it took."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import struct
import threading
import time
from pathlib import Path

__all__ = ["FifoFeed", "IoctlFeed", "RNDADDENTROPY"]

RNDADDENTROPY = 0x40085203  # _IOW('R', 0x03, int[2]) (linux/random.h)


class IoctlFeed:
    """RNDADDENTROPY with full credit, rate-limited to ``rate`` bytes a second (token bucket, one second deep)."""

    def __init__(self, rate: int = 512, device: str = "/dev/random") -> None:
        self.rate = rate
        self._fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
        self._budget = float(rate)
        self._t = time.monotonic()
        self.fed = 0
        self.error = ""
        try:  # refuse at start-up, not at the first offer: an unprivileged daemon says so before serving
            self._add(b"")
        except OSError as exc:
            os.close(self._fd)
            raise OSError(exc.errno, f"RNDADDENTROPY on {device}: {exc.strerror} (needs CAP_SYS_ADMIN)") from None

    def _add(self, data: bytes) -> None:
        # struct rand_pool_info {int entropy_count; int buf_size; __u32 buf[];}; a mutable buffer passed with
        # mutate_flag True goes to the kernel as it is (fcntl copies others into a 1,024-byte buffer)
        arg = bytearray(struct.pack("ii", len(data) * 8, len(data)) + data)
        fcntl.ioctl(self._fd, RNDADDENTROPY, arg, True)
        arg[:] = bytes(len(arg))

    def wants(self) -> bool:
        return self._refill() >= 64

    def _refill(self) -> float:
        now = time.monotonic()
        self._budget = min(float(self.rate), self._budget + (now - self._t) * self.rate)
        self._t = now
        return self._budget

    def offer(self, data: bytes) -> int:
        k = min(len(data), int(self._refill()))
        if k < 64:  # the kernel credits in words; tiny writes are not worth the call
            return 0
        try:
            self._add(data[:k])
        except OSError as exc:
            self.error = f"RNDADDENTROPY: {exc.strerror}"
            return 0
        self._budget -= k
        self.fed += k
        return k

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class FifoFeed:
    """A FIFO for rngd (created mode 0600 if missing; an existing non-FIFO path, or a FIFO of another user or one
    others may write to, is refused)."""

    def __init__(self, path: Path, buffer_bytes: int = 1 << 16) -> None:
        self.path = path
        if path.exists() or path.is_symlink():
            st = path.lstat()
            if not stat.S_ISFIFO(st.st_mode):
                raise OSError(errno.EEXIST, f"{path} exists and is not a FIFO; refusing to use it")
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                # another user's FIFO (or one others may write to) would hand our entropy to whoever reads it, or
                # let them feed rngd: refused (issue 20)
                raise OSError(errno.EPERM, f"{path} is a FIFO owned by uid {st.st_uid} (mode "
                                           f"{oct(st.st_mode & 0o777)}); the daemon uses only its own FIFO, "
                                           "writable by no one else")
        else:
            os.mkfifo(path, 0o600)
        self.capacity = buffer_bytes
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._stop = False
        self.fed = 0
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="qrngd-fifo", daemon=True)
        self._thread.start()

    def wants(self) -> bool:
        with self._cond:
            return len(self._buf) < self.capacity // 2

    def offer(self, data: bytes) -> int:
        with self._cond:
            k = min(len(data), self.capacity - len(self._buf))
            self._buf += data[:k]
            self._cond.notify()
            return k

    def _run(self) -> None:
        while not self._stop:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)  # blocks until a reader opens it
            except OSError as exc:
                self.error = f"{self.path}: {exc.strerror}"
                time.sleep(1.0)
                continue
            try:
                while not self._stop:
                    with self._cond:
                        while not self._buf and not self._stop:
                            self._cond.wait(0.5)
                        chunk = bytes(self._buf[:4096])
                    if not chunk:
                        continue
                    n = os.write(fd, chunk)  # a reader that went away: EPIPE (Python ignores SIGPIPE)
                    with self._cond:
                        del self._buf[:n]
                        self.fed += n
            except OSError as exc:
                self.error = f"{self.path}: {exc.strerror} (reader went away; waiting for the next)"
            finally:
                os.close(fd)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._buf = bytearray()
            self._cond.notify_all()
        with contextlib.suppress(OSError):  # unblock a writer waiting for a reader in open()
            os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
        self._thread.join(timeout=2)
