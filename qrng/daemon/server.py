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
import hashlib
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
IDLE_S = 300.0  # a client connection silent this long is closed (a stuck or hostile client holds no thread)


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


class _Source:
    """One configured source: its pipeline, (re)opening, last error, and what it has contributed."""

    def __init__(self, name: str, open_pipeline: Callable[[], Any], log: Callable[[str], None]) -> None:
        self.name, self._open, self._log = name, open_pipeline, log
        self.pipeline: Any = None
        self.error = "not started"
        self._tried = 0.0
        self.contributed = 0  # bytes of extracted output mixed into served seeds (credited 8 bits each)

    def ensure(self) -> Any:
        """The pipeline, opened (again) if it is failed or missing and a second has passed since the last try."""
        if self.pipeline is not None and not self.pipeline.failed:
            return self.pipeline
        if self.pipeline is not None:  # failed: keep the reason, close, and try again from scratch
            self.error = str(self.pipeline.failure or "pipeline failed")
            with contextlib.suppress(Exception):
                self.pipeline.close()
            self.pipeline = None
            self._log(f"source {self.name} failed: {self.error}")
        now = time.monotonic()
        if self._tried and now - self._tried < REOPEN_S:
            return None
        self._tried = now
        try:
            p = self._open()
            p.startup()  # SP 800-90B 4.3 before any output
        except (EntropyError, OSError) as exc:
            self.error = str(exc)
            return None
        self.pipeline, self.error = p, ""
        self._log(f"source {self.name} ready: {p.info.label}")
        return p


def combine(parts: list[tuple[str, bytes]], n: int) -> bytes:
    """The combiner: SHAKE256 over every healthy source's contribution, each framed by its name and length. The
    contributions together carry at least 8n bits of credited entropy, so the output is full entropy as long as
    the credited sources are what they claim, whatever the others deliver (a hash combiner, SP 800-90C's
    approach of hashing all inputs together)."""
    h = hashlib.shake_256(b"qrng-ceremony qrngd combiner v1\x00")
    for name, data in parts:
        h.update(len(name).to_bytes(2, "little") + name.encode() + len(data).to_bytes(4, "little") + data)
    return h.digest(n)


class Daemon:
    """The state behind the socket: the sources, their (re)opening and mixing, and what has been served.

    Several sources (two QRNGs, or a QRNG and the OS) are mixed with :func:`combine`; entropy is credited only
    from sources that are declared and healthy now: a seed of n bytes takes n bytes of extracted output split
    among the healthy sources and hashes them together. Losing one source lowers capacity (the others each give
    more), never safety (no credit comes from a source that is not healthy); with none, the daemon fails closed."""

    def __init__(self, open_pipeline: Callable[[], Any] | list[tuple[str, Callable[[], Any]]],
                 log: Callable[[str], None] | None = None, simulated: bool = False) -> None:
        self._log = log or (lambda m: None)
        self.simulated = simulated  # a source is the simulator or the USB emulator: HELLO says so to clients
        specs = open_pipeline if isinstance(open_pipeline, list) else [("source", open_pipeline)]
        self.sources = [_Source(name, fn, self._log) for name, fn in specs]
        self._lock = threading.Lock()
        self.started = time.time()
        self.counters = _Counters()
        self.observe: Callable[[float], None] = lambda seconds: None  # seed latency (metrics)
        with self._lock:
            for src in self.sources:
                src.ensure()

    def _healthy(self) -> list[_Source]:
        return [src for src in self.sources if src.ensure() is not None]

    def seed(self, n: int, client: str) -> tuple[int, bytes]:
        with self._lock:
            for _ in range(len(self.sources) + 1):
                healthy = self._healthy()
                if not healthy:
                    self.counters.refused += 1
                    why = "; ".join(f"{s.name}: {s.error}" for s in self.sources)
                    return P.STATUS.UNHEALTHY, f"no healthy source ({why})".encode()
                share = -(-n // len(healthy))
                try:
                    parts = [(src.name, src.pipeline.extracted(share)) for src in healthy]
                except EntropyError:
                    continue  # that source is failed now: mix again from the healthy ones, never less credit
                for src in healthy:
                    src.contributed += share
                out = combine(parts, n) if len(parts) > 1 else parts[0][1][:n]
                self.counters.seeds += 1
                self.counters.seed_bytes += n
                self.counters.clients[client] = self.counters.clients.get(client, 0) + n
                return P.STATUS.OK, out
            self.counters.refused += 1
            return P.STATUS.UNHEALTHY, b"sources kept failing during the request"

    def status(self) -> dict[str, Any]:
        with self._lock:
            for src in self.sources:
                if src.ensure() is not None:
                    with contextlib.suppress(EntropyError):
                        src.pipeline.check_source()  # a device that is gone shows now, not at the next seed
            healthy = self._healthy()
            out: dict[str, Any] = {"daemon": "qrngd", "protocol": P.VERSION, "pid": os.getpid(),
                                   "uptime_s": round(time.time() - self.started, 3),
                                   "seeds_served": self.counters.seeds,
                                   "seed_bytes_served": self.counters.seed_bytes, "refused": self.counters.refused,
                                   "clients": dict(self.counters.clients),
                                   "state": "healthy" if healthy else "unhealthy"}
            if not healthy:
                out["error"] = "; ".join(f"{s.name}: {s.error}" for s in self.sources)
            sources = []
            for src in self.sources:
                entry: dict[str, Any] = {"name": src.name, "contributed_bytes": src.contributed,
                                         "credited_bits": src.contributed * 8}
                if src.pipeline is None:
                    sources.append(entry | {"state": "unhealthy", "error": src.error, "label": src.name,
                                            "identity": src.name, "simulator": False, "claimed_min_entropy": 0.0,
                                            "raw_samples": 0, "entropy_credited_bits": 0.0, "rct_failures": 0,
                                            "apt_failures": 0, "estimate": None})
                    continue
                r = src.pipeline.report()
                sources.append(entry | {
                    "state": "healthy" if r.state == "operational" else r.state, "label": r.source.label,
                    "identity": r.source.identity, "simulator": r.source.simulator,
                    "claimed_min_entropy": r.source.claimed_min_entropy, "raw_samples": r.accounting.raw_samples,
                    "entropy_credited_bits": r.accounting.entropy_credited_bits,
                    "rct_failures": r.health.rct_failures, "apt_failures": r.health.apt_failures,
                    "estimate": getattr(src.pipeline, "last_assessment", None)})
            out["sources"] = sources
            return out

    def close(self) -> None:
        with self._lock:
            for src in self.sources:
                if src.pipeline is not None:
                    src.pipeline.close()
                    src.pipeline = None


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def _read(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.request.recv(n - len(buf))
            except OSError:  # idle timeout, reset by the client
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self) -> None:
        self.request.settimeout(self.server.idle_s)
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
                ident = {"daemon": "qrngd", "protocol": P.VERSION, "max_seed": P.MAX_SEED,
                         "simulator": daemon.simulated}
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
    idle_s = IDLE_S


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
    gid = -1
    if spec.group:
        try:
            gid = grp.getgrnam(spec.group).gr_gid
        except KeyError:
            raise ValueError(f"--group {spec.group!r}: no such group") from None
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
    if gid >= 0:
        os.chown(path, -1, gid)
    if ready is not None:
        ready()
    return server
