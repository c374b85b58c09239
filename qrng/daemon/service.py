"""The entropy service of a process that uses qrngd (configuration ``daemon: {socket: PATH}``): its own SP 800-90A
DRBG, instantiated and reseeded from the daemon's seed material (every reseed interval, and per request with
prediction resistance), so the process never opens the source, runs health tests or extraction itself.

Fail closed: when the daemon is down or unhealthy, a request that needs fresh seed raises DaemonUnavailable (an
EntropyError: the PKCS#11 module answers CKR_DEVICE_ERROR), and the DRBG is dropped so nothing is served from
state seeded before the failure was seen; the next request tries again, so the process recovers by itself when
the daemon is back. The service has the Pipeline's serving interface (info, startup, generate_into, seed, failed,
failure, report-free), as the PKCS#11 token uses it."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..config import EntropyConfig
from ..drbg import fill, make_drbg
from ..errors import EntropyError
from ..sources.base import SourceInfo
from .client import DaemonClient, DaemonUnavailable

__all__ = ["DaemonReport", "DaemonService"]


@dataclass(frozen=True)
class DaemonReport:
    state: str
    socket: str
    daemon: dict[str, Any]
    reseeds: int
    bytes_out: int
    error: str | None
    mode: str = "daemon"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DaemonService:
    def __init__(self, config: EntropyConfig, name: str = "") -> None:
        self.config = config
        self.client = DaemonClient(config.daemon_socket, name or f"pid {os.getpid()}")
        self._lock = threading.RLock()
        self._drbg: Any = None
        self._failure: EntropyError | None = None
        self._checked = 0.0
        self._reseeds = 0
        self._out = 0
        self._info = SourceInfo(kind="daemon", identity=f"qrngd:{config.daemon_socket}", bits_per_sample=8,
                                claimed_min_entropy=8.0, simulator=False, quantum=False,
                                model=f"qrngd at {config.daemon_socket}", serial="qrngd")

    @property
    def info(self) -> SourceInfo:
        return self._info

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def failure(self) -> EntropyError | None:
        return self._failure

    def startup(self) -> None:
        """Ask the daemon who it serves from (its source's label and whether it is a simulator)."""
        with self._lock:
            st = self._call(self.client.status)
            src = (st.get("sources") or [{}])[0]
            label = src.get("label", "no healthy source")
            sim = bool(src.get("simulator"))
            self._info = SourceInfo(kind="daemon", identity=f"qrngd:{self.config.daemon_socket}", bits_per_sample=8,
                                    claimed_min_entropy=8.0, simulator=sim, quantum=False,
                                    model=f"qrngd: {label}", serial="qrngd")
            if st.get("state") != "healthy":
                raise self._fail(DaemonUnavailable(f"qrngd is {st.get('state')}: {st.get('error', '')}"))

    def _fail(self, exc: EntropyError) -> EntropyError:
        self._failure = exc
        if self._drbg is not None:
            self._drbg.zeroize()
        self._drbg = None
        return exc

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            out = fn(*args)
        except DaemonUnavailable as exc:
            raise self._fail(exc) from None
        self._failure = None
        return out

    CHECK_S = 0.1  # the daemon is asked whether it is healthy at most this often while serving from the DRBG

    def _check_daemon(self) -> None:
        """Between reseeds output comes from the local DRBG; the daemon is asked (STATUS) at most every 0.1 s, so
        a daemon that is down or unhealthy stops this process's output within that time (fail closed)."""
        now = time.monotonic()
        if now - self._checked < self.CHECK_S and self._drbg is not None:
            return
        st = self._call(self.client.status)
        if st.get("state") != "healthy":
            raise self._fail(DaemonUnavailable(f"qrngd is {st.get('state')}: {st.get('error', '')}"))
        self._checked = now

    def _ensure_drbg(self) -> Any:
        if self._drbg is None:
            d = self.config.drbg
            personalization = hashlib.sha384(b"qrngd client " + str(os.getpid()).encode() + os.urandom(16)).digest()
            self._drbg = make_drbg(d.type, self._call(self.client.seed, 48), personalization, d.reseed_interval)
        return self._drbg

    def generate_into(self, buf: Any, additional_input: bytes = b"", prediction_resistance: bool | None = None) -> None:
        view = memoryview(buf).cast("B")
        pr = self.config.drbg.prediction_resistance if prediction_resistance is None else prediction_resistance
        with self._lock:
            self._check_daemon()
            drbg = self._ensure_drbg()
            self._reseeds += fill(drbg, view, additional_input, pr, lambda n: self._call(self.client.seed, n))
            self._out += len(view)

    def report(self) -> DaemonReport:
        """The token's health object in daemon mode: the daemon's own state (sources, health, credit) and this
        process's DRBG, or why the daemon cannot be reached."""
        with self._lock:
            try:
                daemon = self.client.status()
            except DaemonUnavailable as exc:
                daemon = {"state": "unreachable", "error": str(exc)}
            return DaemonReport("failed" if self.failed else "operational", self.config.daemon_socket, daemon,
                                self._reseeds, self._out, str(self._failure) if self._failure else None)

    def generate(self, n: int) -> bytes:
        out = bytearray(n)
        self.generate_into(memoryview(out))
        return bytes(out)

    def seed(self, data: bytes) -> None:
        """C_SeedRandom: mixed in as additional input with a fresh seed from the daemon (never credited)."""
        with self._lock:
            drbg = self._ensure_drbg()
            drbg.reseed(self._call(self.client.seed, drbg.seed_entropy_bytes), hashlib.sha384(data).digest())

    def after_fork(self) -> None:
        self._lock = threading.RLock()
        self._drbg = None
        self.client = DaemonClient(self.config.daemon_socket, f"pid {os.getpid()}")

    def close(self) -> None:
        with self._lock:
            if self._drbg is not None:
                self._drbg.zeroize()
            self._drbg = None
            self.client.close()
