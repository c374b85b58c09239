"""The qrngd server: owns the configured entropy source through one pipeline (start-up and continuous health
tests, extraction) and serves its extracted, health-tested output as seed material over a Unix socket, one
thread per client (docs/daemon-protocol.md).

Fail closed: a failed or removed source makes every SEED answer UNHEALTHY with the reason, never weaker bytes.
The daemon then opens the source again (at most once a second, with its start-up tests) and serves again when it
passes: clients recover without restarting.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EntropyError
from . import protocol as P

__all__ = ["Daemon", "SocketSpec"]

REOPEN_S = 1.0


@dataclass(frozen=True)
class SocketSpec:
    path: Path
    mode: int = 0o660
    group: str | None = None


@dataclass
class _Counters:
    seeds: int = 0
    seed_bytes: int = 0
    refused: int = 0
    clients: dict[str, int] = field(default_factory=dict)  # client name -> bytes served


class Daemon:
    """The state behind the socket: the pipeline, its (re)opening, and what has been served."""

    def __init__(self, open_pipeline: Callable[[], Any], log: Callable[[str], None] | None = None) -> None:
        self._open = open_pipeline
        self._log = log or (lambda m: None)
        self._lock = threading.Lock()
        self._pipeline: Any = None
        self._error: str = "not started"
        self._tried = 0.0
        self.started = time.time()
        self.counters = _Counters()
        self.observe: Callable[[float], None] = lambda seconds: None  # seed latency (metrics)
        self._ensure()

    def _ensure(self) -> Any:
        """The pipeline, opened (again) if it is failed or missing and a second has passed since the last try."""
        with self._lock:
            if self._pipeline is not None and not self._pipeline.failed:
                return self._pipeline
            now = time.monotonic()
            if self._pipeline is not None:  # failed: keep the reason, close, and try again from scratch
                self._error = str(self._pipeline.failure or "pipeline failed")
                with contextlib.suppress(Exception):
                    self._pipeline.close()
                self._pipeline = None
                self._log(f"source failed: {self._error}")
            if now - self._tried < REOPEN_S and self._tried:
                return None
            self._tried = now
            try:
                p = self._open()
                p.startup()  # SP 800-90B 4.3 before any output
            except (EntropyError, OSError) as exc:
                self._error = str(exc)
                return None
            self._pipeline, self._error = p, ""
            self._log(f"source ready: {p.info.label}")
            return p

    def seed(self, n: int, client: str) -> tuple[int, bytes]:
        p = self._ensure()
        if p is None:
            self.counters.refused += 1
            return P.STATUS.UNHEALTHY, f"no healthy source: {self._error}".encode()
        try:
            data = p.extracted(n)
        except EntropyError as exc:
            self.counters.refused += 1
            self._ensure()
            return P.STATUS.UNHEALTHY, f"source failed: {exc}".encode()
        with self._lock:
            self.counters.seeds += 1
            self.counters.seed_bytes += n
            self.counters.clients[client] = self.counters.clients.get(client, 0) + n
        return P.STATUS.OK, data

    def status(self) -> dict[str, Any]:
        p = self._ensure()
        if p is not None:
            with contextlib.suppress(EntropyError):
                p.check_source()  # a device that is gone or unhealthy shows now, not at the next seed
            p = self._ensure()
        out: dict[str, Any] = {"daemon": "qrngd", "protocol": P.VERSION, "pid": os.getpid(),
                               "uptime_s": round(time.time() - self.started, 3),
                               "seeds_served": self.counters.seeds, "seed_bytes_served": self.counters.seed_bytes,
                               "refused": self.counters.refused, "clients": dict(self.counters.clients)}
        if p is None:
            return out | {"state": "unhealthy", "error": self._error, "sources": []}
        r = p.report()
        src = {"label": r.source.label, "identity": r.source.identity, "simulator": r.source.simulator,
               "claimed_min_entropy": r.source.claimed_min_entropy, "state": r.state,
               "raw_samples": r.accounting.raw_samples, "entropy_credited_bits": r.accounting.entropy_credited_bits,
               "rct_failures": r.health.rct_failures, "apt_failures": r.health.apt_failures,
               "estimate": getattr(p, "last_assessment", None)}
        return out | {"state": "healthy" if r.state == "operational" else r.state, "sources": [src]}

    def close(self) -> None:
        with self._lock:
            if self._pipeline is not None:
                self._pipeline.close()
                self._pipeline = None


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def _read(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self) -> None:
        daemon = self.server.daemon
        client = "anonymous"
        while True:
            head = self._read(P.HEADER.size)
            if head is None:
                return
            try:
                version, op, length = P.decode_header(head)
            except P.ProtocolError as exc:
                self.request.sendall(P.encode_response(P.STATUS.BAD_REQUEST, str(exc).encode()))
                return  # the stream is out of step: close it
            payload = self._read(length)
            if payload is None:
                return
            if version != P.VERSION:
                self.request.sendall(P.encode_response(P.STATUS.VERSION, bytes([P.VERSION])))
                continue
            if op == P.OP.HELLO:
                try:
                    name = payload.decode("utf-8")
                except UnicodeDecodeError:
                    name = ""
                if not name or len(payload) > 64 or not name.isprintable():
                    self.request.sendall(P.encode_response(P.STATUS.BAD_REQUEST, b"HELLO: a printable name, 1..64"))
                    continue
                client = name
                ident = {"daemon": "qrngd", "protocol": P.VERSION, "max_seed": P.MAX_SEED}
                self.request.sendall(P.encode_response(P.STATUS.OK, json.dumps(ident).encode()))
            elif op == P.OP.SEED:
                try:
                    n = P.seed_length(payload)
                except P.ProtocolError as exc:
                    self.request.sendall(P.encode_response(P.STATUS.TOO_LARGE, str(exc).encode()))
                    continue
                t = time.perf_counter()
                status, data = daemon.seed(n, client)
                daemon.observe(time.perf_counter() - t)
                self.request.sendall(P.encode_response(status, data))
            elif op == P.OP.STATUS:
                self.request.sendall(P.encode_response(P.STATUS.OK, json.dumps(daemon.status()).encode()))
            else:
                self.request.sendall(P.encode_response(P.STATUS.BAD_REQUEST, f"unknown op {op}".encode()))


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    daemon: Daemon
    activated = False  # the socket came from systemd (it owns the socket file)


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed (socket activation, sd_listen_fds(3): LISTEN_PID is ours and
    LISTEN_FDS >= 1, the first descriptor is 3), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0") or 0) < 1:
        return None
    sock = socket.socket(fileno=3)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise OSError("the socket systemd passed is not a Unix stream socket (see contrib/systemd/qrngd.socket)")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return sock


def serve(daemon: Daemon, spec: SocketSpec, ready: Callable[[], None] | None = None) -> _Server:
    """Bind the socket (a stale socket file of a dead daemon is replaced; a live one is refused), set its
    mode and group, and return the server (call serve_forever). Under systemd socket activation the passed
    socket is used as it is (its path, mode and group are the unit's)."""
    passed = activated_socket()
    if passed is not None:
        server = _Server(str(spec.path), _Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = passed
        server.daemon = daemon
        server.activated = True
        if ready is not None:
            ready()
        return server
    path = spec.path
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            raise OSError(f"{path}: another qrngd is serving on this socket")
        except (ConnectionRefusedError, FileNotFoundError):
            if not path.is_socket():
                raise OSError(f"{path} exists and is not a socket; refusing to replace it") from None
            path.unlink()
        finally:
            probe.close()
    server = _Server(str(path), _Handler)
    server.daemon = daemon
    os.chmod(path, spec.mode)
    if spec.group:
        os.chown(path, -1, grp.getgrnam(spec.group).gr_gid)
    if ready is not None:
        ready()
    return server
