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
import selectors
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EntropyError, NativeUnavailable
from . import protocol as P
from .history import History, Snapshot
from .seed_source import REPORT_COUNTERS, SeedSource

__all__ = ["Daemon", "DaemonOptions", "SocketSpec"]

REOPEN_S = 1.0
IDLE_S = 300.0  # a client connection silent this long is closed (a stuck or hostile client holds no thread)


@dataclass(frozen=True)
class SocketSpec:
    path: Path
    mode: int = 0o660
    group: str | None = None


FALLBACK_PER_MINUTE = 10  # FALLBACK reports one peer may make a minute (more are refused, not logged)
MAX_CLIENT_NAMES = 256  # distinct HELLO names counted; more are counted as "other" (bounded STATUS and metrics)


@dataclass(frozen=True)
class DaemonOptions:
    """How sources are run (``qrng daemon`` options; docs/daemon-protocol.md "Behaviour").

    stream: read every source continuously at the device's rate, health-testing every sample; extracted output
        beyond the pool goes to the kernel feed or is discarded (counted), never queued without bound.
    pool_bytes: extracted output kept ready per source (a seed is served from it without waiting for extraction).
    chunk_bytes: extracted per step of a source's thread.
    seed_wait_s: how long a SEED waits for a source's pool before the source counts as not serving.
    """

    stream: bool = False
    pool_bytes: int = 1 << 16
    chunk_bytes: int = 1 << 14
    seed_wait_s: float = 2.0
    history_interval_s: float = 10.0
    max_conns_per_user: int = 64  # connections one user (SO_PEERCRED uid) may hold on the Unix socket


@dataclass
class _Counters:
    seeds: int = 0
    seed_bytes: int = 0
    refused: int = 0
    clients: dict[str, int] = field(default_factory=dict)  # client name -> bytes served
    fallback_seeds: dict[str, int] = field(default_factory=dict)  # client name -> seeds it took from its fallback

    def client(self, name: str, table: dict[str, int]) -> str:
        return name if name in table or len(table) < MAX_CLIENT_NAMES else "other"


class _Source:
    """One configured source: its pipeline and (re)opening, its thread, its pool of extracted output ready to be
    served, and what became of every extracted byte (served, pooled, fed to the kernel, discarded)."""

    def __init__(self, name: str, open_pipeline: Callable[[_Source], SeedSource], daemon: Daemon) -> None:
        self.name, self._open, self.daemon = name, open_pipeline, daemon
        self.opts = daemon.options
        self.pipeline: SeedSource | None = None
        self.error = "not started"
        self._tried = 0.0
        self.latched = False  # a failure with health.allow_reset false: no reopening until restart
        self.cond = threading.Condition()
        self.pool = bytearray()
        self._stamps: deque[list[float]] = deque()  # [monotonic time, bytes] of each chunk in the pool, oldest first
        self.contributed = 0  # bytes mixed into served seeds (credited 8 bits each)
        self.discarded = 0    # extracted bytes neither needed by the pool nor taken by the kernel feed
        self.dropped = 0      # pooled bytes thrown away because the source failed (fail closed)
        self.fed = 0          # extracted bytes fed to the kernel
        self.received = 0     # extracted bytes this daemon took from the extractor (the sum of the five above)
        self.opens = 0
        self._refilling = True  # topping the pool up to full (refilling starts again when it is half empty)
        # a source that is down keeps the identity it had (metrics labels stay the same series)
        self.last_label, self.last_identity, self.last_simulator = name, name, False
        # counters of pipelines closed before (a failed source is opened again from scratch): the reported
        # counters stay monotonic across reopening, as Prometheus counters must
        self._past: dict[str, float] = {k: 0 for k in REPORT_COUNTERS}
        self.first_try = threading.Event()  # the first open attempt has finished (opened or failed)
        self.ring: Any = None
        self.attested: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._run, name=f"qrngd-source-{name}", daemon=True)

    # --- the source's thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.daemon.stopping.is_set():
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - a bug must not silently end the source's thread
                p = self.pipeline
                if p is not None:
                    self._close_failed(p, f"internal error: {type(exc).__name__}: {exc}")
                self.daemon.stopping.wait(REOPEN_S)

    def _step(self) -> None:
        """One turn of the source's thread: (re)open, re-attest when due, then extract into the pool (or idle)."""
        stop = self.daemon.stopping
        p = self._ensure()
        if p is None:
            stop.wait(0.1)
            return
        if self._attestation_due():
            try:
                with p.exclusive():  # the device answers one request at a time
                    self.attested = self.daemon.attest(self, p)
            except (EntropyError, OSError) as exc:
                self._close_failed(p, f"attestation failed: {exc}")
                return
        feed = self.daemon.feed
        with self.cond:
            room = self.opts.pool_bytes - len(self.pool)
        feeding = feed is not None and feed.wants()
        # refill once the pool is half empty (not after every request: fewer wake-ups, the same freshness bound)
        if not (room >= self.opts.pool_bytes // 2 or (room > 0 and self._refilling) or self.opts.stream or feeding):
            self._refilling = False
            try:
                with p.exclusive():  # one check of a removed device under the source's lock
                    p.check_source()
            except EntropyError:
                self._drop_pool()
                return
            with self.cond:
                self.cond.wait(0.05)
            return
        # on demand, take only what the pool lacks (the extractor keeps the rest); streaming or feeding, a chunk
        n = self.opts.chunk_bytes if self.opts.stream or feeding else min(self.opts.chunk_bytes, max(room, 1))
        self._refilling = True
        try:
            chunk = p.extracted(n)
        except EntropyError:
            self._drop_pool()
            return
        with self.cond:  # every extracted byte is accounted for under this lock, in one step
            self.received += len(chunk)
            if self.pipeline is not p or p.failed:
                self.dropped += len(chunk)
                return
            room = max(0, self.opts.pool_bytes - len(self.pool))
            self.pool += chunk[:room]
            if chunk[:room]:
                self._stamps.append([time.monotonic(), float(len(chunk[:room]))])
            rest = chunk[room:]
            self.cond.notify_all()
            if rest and feed is not None:
                taken = feed.offer(rest)
                self.fed += taken
                rest = rest[taken:]
            self.discarded += len(rest)

    def _attestation_due(self) -> bool:
        every = self.daemon.attest_every
        return bool(every and self.attested and time.time() - self.attested["verified_at"] >= every)

    def _close_failed(self, p: SeedSource, error: str) -> None:
        """Stop serving from ``p`` (fail closed) for a reason the pipeline does not know (attestation)."""
        self.error = error
        self._drop_pool()
        with self.cond:
            self.pipeline = None
        self.attested = {"valid": False, "error": error, "verified_at": time.time()}
        self._retire(p)
        self._tried = time.monotonic()
        self.daemon.event("source.failed", source=self.name, error=error)

    def _retire(self, p: SeedSource) -> None:
        """Close a pipeline for good, keeping its counters."""
        try:
            r = p.report()
            for k in self._past:
                self._past[k] += r[k]
        except Exception:  # noqa: BLE001, S110 - counters of a broken pipeline are lost, never the service
            pass
        with contextlib.suppress(Exception):
            p.close()

    def _drop_pool(self) -> None:
        with self.cond:
            self.dropped += len(self.pool)
            self.pool = bytearray()
            self._stamps.clear()
            self.cond.notify_all()

    def _ensure(self) -> SeedSource | None:
        """The pipeline, opened (again) if it is failed or missing and a second has passed since the last try."""
        p = self.pipeline
        if p is not None and not p.failed:
            return p
        if p is not None:  # failed: keep the reason, close, and try again from scratch
            self.error = str(p.failure or "pipeline failed")
            self._drop_pool()
            with self.cond:
                self.pipeline = None
            self._retire(p)
            self.daemon.event("source.failed", source=self.name, error=self.error)
            if p.latches:
                # health.allow_reset: false (README): the failure stays until qrngd is restarted, as it does in
                # the PKCS#11 modules until they are initialised again
                self.latched = True
                self.error += " (health.allow_reset is false: restart qrngd to clear the failure)"
        if self.latched:
            return None
        now = time.monotonic()
        if self._tried and now - self._tried < REOPEN_S:
            return None
        self._tried = now
        p = None
        try:
            p = self._open(self)
            p.startup()  # SP 800-90B 4.3 before any output
            self.attested = self.daemon.attest(self, p)
        except (EntropyError, NativeUnavailable, OSError) as exc:
            self.error = str(exc)
            self.first_try.set()
            from ..attestation import AttestationError
            if isinstance(exc, AttestationError):
                self.attested = {"valid": False, "error": str(exc), "verified_at": time.time()}
            if p is not None:
                self._retire(p)
            return None
        with self.cond:
            self.pipeline, self.error = p, ""
        self.opens += 1
        self.last_label, self.last_identity, self.last_simulator = p.info.label, p.info.identity, p.info.simulator
        self.first_try.set()
        self.daemon.event("source.ready" if self.opens == 1 else "source.recovered", source=self.name,
                          label=p.info.label, identity=p.info.identity, simulator=p.info.simulator)
        return p

    # --- serving ------------------------------------------------------------------------------------------
    def serving(self) -> bool:
        p = self.pipeline
        return p is not None and not p.failed

    def take(self, n: int) -> bytes | None:
        """n bytes of this source's extracted output, each used once; None if it fails or cannot within
        seed_wait_s (the caller then mixes from the others: never less credit)."""
        deadline = time.monotonic() + self.opts.seed_wait_s
        with self.cond:
            while len(self.pool) < n:
                left = deadline - time.monotonic()
                if left <= 0 or not self.serving():
                    return None
                self.cond.wait(min(left, 0.05))
            if not self.serving():
                return None
            out = bytes(self.pool[:n])
            del self.pool[:n]
            left = float(n)
            while left > 0 and self._stamps:
                used = min(left, self._stamps[0][1])
                self._stamps[0][1] -= used
                left -= used
                if self._stamps[0][1] <= 0:
                    self._stamps.popleft()
            self.contributed += n
            if len(self.pool) < self.opts.pool_bytes // 2:
                self.cond.notify_all()  # the source's thread refills (waking it per request would cost each one)
            return out

    def pool_age(self) -> float | None:
        with self.cond:
            return round(time.monotonic() - self._stamps[0][0], 3) if self._stamps else None

    def report(self) -> dict[str, Any]:
        age = self.pool_age()
        with self.cond:  # one consistent snapshot: received = contributed + pooled + fed + discarded + dropped
            entry: dict[str, Any] = {"name": self.name, "contributed_bytes": self.contributed,
                                     "credited_bits": self.contributed * 8, "pooled_bytes": len(self.pool),
                                     "discarded_bytes": self.discarded, "dropped_bytes": self.dropped,
                                     "kernel_fed_bytes": self.fed, "received_bytes": self.received,
                                     "retained_bytes": self.ring.size if self.ring is not None else 0,
                                     "retain_error": (self.ring.error or None) if self.ring is not None else None,
                                     "pool_age_s": age, "attestation": self.attested}
        out = self._current(entry)
        for k, v in self._past.items():
            out[k] += v
        return out

    def _current(self, entry: dict[str, Any]) -> dict[str, Any]:
        p = self.pipeline
        if p is None:
            return entry | {"state": "unhealthy", "error": self.error, "label": self.last_label,
                            "identity": self.last_identity, "simulator": self.last_simulator,
                            "claimed_min_entropy": 0.0, "raw_samples": 0, "entropy_credited_bits": 0.0,
                            "extracted_bytes": 0, "rct_failures": 0, "apt_failures": 0, "estimate": None}
        return entry | p.report() | ({"error": self.error} if self.error else {})


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
    """The state behind the socket: the sources (each with its own thread and pool), mixing, what has been
    served, the kernel feed, the event log and the recent history.

    Several sources (two QRNGs, or a QRNG and the OS) are mixed with :func:`combine`; entropy is credited only
    from sources that are declared and healthy now: a seed of n bytes takes n bytes of extracted output split
    among the healthy sources and hashes them together. Losing one source lowers capacity (the others each give
    more), never safety (no credit comes from a source that is not healthy); with none, the daemon fails closed.

    ``open_pipeline`` callables take the source's _Source (its name, and its ring for the pipeline's tap)."""

    def __init__(self, open_pipeline: Callable[[Any], SeedSource] | list[tuple[str, Callable[[Any], SeedSource]]],
                 log: Callable[[str], None] | None = None, simulated: bool = False,
                 options: DaemonOptions | None = None, feed: Any = None, events: Any = None,
                 attest: Callable[[Any], dict[str, Any]] | None = None, start: bool = True) -> None:
        self._log = log or (lambda m: None)
        self.simulated = simulated  # a source is the simulator or the USB emulator: HELLO says so to clients
        self.options = options or DaemonOptions()
        self.feed = feed
        self.events = events
        self._attest = attest
        self.stopping = threading.Event()
        specs = open_pipeline if isinstance(open_pipeline, list) else [("source", open_pipeline)]
        self.sources = [_Source(name, fn, self) for name, fn in specs]
        self._lock = threading.Lock()
        self.started = time.time()
        self.counters = _Counters()
        self._fallback_times: dict[str, deque[float]] = {}
        self.observe: Callable[[float], None] = lambda seconds: None  # seed latency (metrics)
        self.latencies: deque[float] = deque(maxlen=10_000)  # seconds inside the daemon per SEED
        self.history = History(self.options.history_interval_s)
        self.event("daemon.start", pid=os.getpid(), sources=[s.name for s in self.sources],
                   stream=self.options.stream)
        if start:
            for src in self.sources:
                src.thread.start()

    def event(self, name: str, **data: Any) -> None:
        msg = ", ".join(f"{k}={v}" for k, v in data.items() if k != "source")
        self._log(f"{name}{' ' + str(data['source']) if 'source' in data else ''}{': ' + msg if msg else ''}")
        if self.events is not None:
            self.events.record(name, **data)

    def attest(self, src: _Source, seed: SeedSource) -> dict[str, Any] | None:
        return self._attest(seed) if self._attest is not None else None

    def is_simulated(self) -> bool:
        """A configured source is the simulator or the USB emulator, or an upstream daemon says it serves one."""
        return self.simulated or any(s.pipeline is not None and s.pipeline.info.simulator for s in self.sources)

    @property
    def attest_every(self) -> float:
        return float(getattr(self._attest, "every_s", 0.0) or 0.0)

    def wait_ready(self, timeout: float) -> bool:
        """True once every source has been tried once (opened or failed), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        return all(s.first_try.wait(max(0.0, deadline - time.monotonic())) for s in self.sources)

    def seed(self, n: int, client: str) -> tuple[int, bytes]:
        for _ in range(len(self.sources) + 1):
            healthy = [src for src in self.sources if src.serving()]
            if not healthy:
                break
            share = -(-n // len(healthy))
            parts = []
            for src in healthy:
                data = src.take(share)
                if data is None:
                    break  # that source failed or stalls now: mix again from the others, never less credit
                parts.append((src.name, data))
            else:
                out = combine(parts, n) if len(parts) > 1 else parts[0][1][:n]
                with self._lock:
                    c = self.counters
                    c.seeds += 1
                    c.seed_bytes += n
                    name = c.client(client, c.clients)
                    c.clients[name] = c.clients.get(name, 0) + n
                return P.STATUS.OK, out
        with self._lock:
            self.counters.refused += 1
        why = "; ".join(f"{s.name}: {s.error or 'not serving'}" for s in self.sources)
        return P.STATUS.UNHEALTHY, f"no healthy source ({why})".encode()

    def client_fell_back(self, client: str, seeds: int, peer: str = "") -> None:
        with self._lock:
            c = self.counters
            name = c.client(client, c.fallback_seeds)
            c.fallback_seeds[name] = c.fallback_seeds.get(name, 0) + seeds
        self.event("client.fell_back", client=client, seeds=seeds, **({"peer": peer} if peer else {}))

    def fallback_allowed(self, peer: str) -> bool:
        """At most FALLBACK_PER_MINUTE FALLBACK reports per peer a minute reach the counters and the signed log."""
        now = time.monotonic()
        with self._lock:
            times = self._fallback_times.setdefault(peer, deque())
            while times and now - times[0] > 60.0:
                times.popleft()
            if len(times) >= FALLBACK_PER_MINUTE:
                return False
            times.append(now)
            if len(self._fallback_times) > 4 * MAX_CLIENT_NAMES:  # bounded: forget peers that went quiet
                for k in [k for k, v in self._fallback_times.items() if not v or now - v[-1] > 60.0]:
                    del self._fallback_times[k]
            return True

    def latency_quantiles(self) -> dict[str, float] | None:
        with self._lock:
            lat = sorted(self.latencies)
        if not lat:
            return None
        return {"p50_us": round(lat[len(lat) // 2] * 1e6, 1), "p99_us": round(lat[int(len(lat) * 0.99)] * 1e6, 1),
                "samples": len(lat)}

    def record_latency(self, seconds: float) -> None:
        with self._lock:
            self.latencies.append(seconds)
        self.observe(seconds)

    def status(self) -> dict[str, Any]:
        sources = [src.report() for src in self.sources]
        with self._lock:
            c = self.counters
            out: dict[str, Any] = {"daemon": "qrngd", "protocol": P.VERSION, "pid": os.getpid(),
                                   "uptime_s": round(time.time() - self.started, 3),
                                   "seeds_served": c.seeds, "seed_bytes_served": c.seed_bytes, "refused": c.refused,
                                   "clients": _top(c.clients), "client_fallback_seeds": _top(c.fallback_seeds),
                                   "clients_total": len(c.clients),
                                   "stream": self.options.stream}
        healthy = [s for s in sources if s["state"] == "healthy"]
        out["state"] = "healthy" if healthy else "unhealthy"
        if not healthy:
            out["error"] = "; ".join(f"{s['name']}: {s.get('error', s['state'])}" for s in sources)
        out["sources"] = sources
        out["seed_latency"] = self.latency_quantiles()
        if self.feed is not None:
            out["kernel_feed"] = {"kind": type(self.feed).__name__, "fed_bytes": self.feed.fed,
                                  "error": self.feed.error or None}
        if self.events is not None:
            out["audit_log"] = {"path": str(self.events.log.path), "entries": self.events.size,
                                "last_checkpoint": self.events.checkpoint_time or None}
        return out

    def sample_history(self) -> None:
        """One history point when due (the server calls this about once a second)."""
        now = time.time()
        if not self.history.due(now):
            return
        snaps = {}
        for s in self.status()["sources"]:
            snaps[s["name"]] = Snapshot(s["raw_samples"], s["rct_failures"] + s["apt_failures"], s["estimate"],
                                        s["state"] == "healthy")
        with self._lock:
            served = self.counters.seed_bytes
            self.history.add(now, served, snaps)

    def close(self) -> None:
        self.stopping.set()
        for src in self.sources:
            with src.cond:
                src.cond.notify_all()
            if src.thread.is_alive():
                src.thread.join(timeout=5)
            p = src.pipeline
            src.pipeline = None
            src.pool = bytearray()
            if p is not None:
                src._retire(p)  # noqa: SLF001
            if src.ring is not None:
                src.ring.close()
        if self.feed is not None:
            self.feed.close()
        self.event("daemon.stop", pid=os.getpid())


class Session:
    """One client connection's state: who it said it is (HELLO; on mutual TLS prefixed by its certificate)."""

    def __init__(self, prefix: str = "", peer: str = "", privileged: bool = False) -> None:
        self.prefix = prefix
        self.client = prefix + "anonymous"
        # root, or the daemon's own user or group: sees the per-client tables in STATUS (others see totals only:
        # client names are what clients say about themselves, and not every local user's business)
        self.privileged = privileged
        # who the connection is, as the kernel or TLS says (not what HELLO claims): "uid 1000", "tls CN"
        self.peer = peer or (f"tls {prefix[4:-1]}" if prefix.startswith("tls:") else "unknown peer")


def respond(daemon: Daemon, session: Session, version: int, op: int, payload: bytes) -> bytes:
    """The response frame to one request (docs/daemon-protocol.md). Nothing a client sends raises out of here
    into the serving loop: an error is answered (BAD_REQUEST, naming its kind), said once on stderr, and the
    daemon serves on."""
    try:
        return _respond(daemon, session, version, op, payload)
    except Exception as exc:  # noqa: BLE001 - the one place a request's error becomes an answer
        key = f"{op}:{type(exc).__name__}"
        if key not in _SAID:
            _SAID.add(key)
            print(f"qrngd: op {op} from {session.client}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return P.encode_response(P.STATUS.BAD_REQUEST, f"request not served ({type(exc).__name__})".encode()[:200])


_SAID: set[str] = set()
STATUS_TABLE_MAX = 32  # per-client rows in a STATUS answer: the largest, the rest summed as "other"


def _top(table: dict[str, int], n: int = STATUS_TABLE_MAX) -> dict[str, int]:
    """The n largest rows of a per-client table, the rest summed under "other": a STATUS answer stays far below
    the protocol's frame limit whatever names clients choose (a bound by construction)."""
    rows = sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))
    out = dict(rows[:n])
    rest = sum(v for _, v in rows[n:])
    if rest:
        out["other"] = out.get("other", 0) + rest
    return out


def _respond(daemon: Daemon, session: Session, version: int, op: int, payload: bytes) -> bytes:
    """SEED requests are timed into the latency figures (the daemon's own time: from the request read to the
    response ready)."""
    t = time.perf_counter()
    if version != P.VERSION:
        return P.encode_response(P.STATUS.VERSION, bytes([P.VERSION]))
    if op == P.OP.SEED:
        try:
            n = P.seed_length(payload)
        except P.ProtocolError as exc:
            return P.encode_response(P.STATUS.TOO_LARGE, str(exc).encode())
        status, data = daemon.seed(n, session.client)
        frame = P.encode_response(status, data)
        daemon.record_latency(time.perf_counter() - t)
        return frame
    if op == P.OP.HELLO:
        try:
            name = payload.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        if not name or len(payload) > 64 or not name.isprintable():
            return P.encode_response(P.STATUS.BAD_REQUEST, b"HELLO: a printable name, 1..64")
        session.client = session.prefix + name
        ident = {"daemon": "qrngd", "protocol": P.VERSION, "max_seed": P.MAX_SEED, "simulator": daemon.is_simulated()}
        return P.encode_response(P.STATUS.OK, json.dumps(ident).encode())
    if op == P.OP.STATUS:
        st = daemon.status()
        if not session.privileged:
            st["clients"] = {"(shown to root and the daemon's group only)": sum(st["clients"].values())}
            st["client_fallback_seeds"] = {"(shown to root and the daemon's group only)":
                                           sum(st["client_fallback_seeds"].values())} \
                if st["client_fallback_seeds"] else {}
        return P.encode_response(P.STATUS.OK, json.dumps(st).encode())
    if op == P.OP.FALLBACK:
        try:
            seeds = P.fallback_seeds(payload)
        except P.ProtocolError as exc:
            return P.encode_response(P.STATUS.BAD_REQUEST, str(exc).encode())
        if not daemon.fallback_allowed(session.peer):
            return P.encode_response(P.STATUS.BAD_REQUEST, f"FALLBACK reports are limited to {FALLBACK_PER_MINUTE} "
                                     "a minute per peer".encode())
        # recorded under the name the client chose *and* the peer the kernel (or TLS) vouches for: a client cannot
        # report, alert or log under another user's name
        daemon.client_fell_back(f"{session.client} ({session.peer})", seeds, peer=session.peer)
        return P.encode_response(P.STATUS.OK)
    if op == P.OP.HISTORY:
        return P.encode_response(P.STATUS.OK, daemon.history.to_json(P.MAX_PAYLOAD))
    return P.encode_response(P.STATUS.BAD_REQUEST, f"unknown op {op}".encode())


class _Handler(socketserver.BaseRequestHandler):
    """One connection per thread (the mutual-TLS endpoint, tls.py); the Unix socket is served by _Loop."""

    server: Any
    peer_prefix = ""  # "tls:<CN>/" on the mutual-TLS endpoint: the authenticated peer prefixes its HELLO name

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
        session = Session(self.peer_prefix)
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
            self.request.sendall(respond(self.server.daemon, session, version, op, payload))


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "session", "last", "closing", "partial_since", "uid", "reading")

    def __init__(self, sock: socket.socket, uid: int = -1) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.session = Session()
        self.last = time.monotonic()
        self.closing = False
        self.partial_since: float | None = None  # when an incomplete frame started waiting for its rest
        self.uid = uid
        self.reading = True


OUT_MAX = P.HEADER.size + P.MAX_PAYLOAD   # answers queued for one connection before it is read from again
IN_MAX = 2 * (P.HEADER.size + P.MAX_PAYLOAD)  # bytes buffered from one connection


def admit(per_uid: dict[int, int], total: int, uid: int, privileged: bool, max_conns: int, per_user: int,
          reserved: int) -> str | None:
    """Whether a new connection from ``uid`` is kept (None) or why not. Pure. Each user holds at most
    ``per_user`` connections; the last ``reserved`` slots are kept for root and the daemon's own user and group
    (``privileged``), so an unprivileged user's idle connections can never hold every slot (issue 20)."""
    if total >= max_conns:
        return "every connection slot is taken"
    if per_uid.get(uid, 0) >= per_user:
        return f"user {uid} holds {per_user} connections, the most one user may"
    if total >= max_conns - reserved and not privileged:
        return "the remaining slots are reserved for root and the daemon's group"
    return None


def _peer(sock: socket.socket) -> tuple[int, int]:
    """(uid, gid) of a Unix socket's peer (SO_PEERCRED), or (-1, -1)."""
    import struct
    try:
        _, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except (OSError, AttributeError):
        return -1, -1
    return uid, gid


class _Loop:
    """The Unix socket's server: one thread, one selector, every client connection non-blocking. No thread per
    client, so many clients never contend for the interpreter lock (the daemon's own time per request stays
    tens of microseconds with 16 client processes; bench/bench_daemon.py). A request whose source pool is empty
    waits for it (at most seed_wait_s) and the others wait behind it: they draw on the same sources anyway.

    Against hostile clients (issue 20): connections are served fairly, one request each per turn, so pipelined
    requests from one client cannot starve the others; a connection whose unsent answers exceed OUT_MAX is not
    read from until they drain; an incomplete frame must be completed within frame_s; each user (SO_PEERCRED)
    holds at most per_user connections and the last ``reserved`` slots are for root and the daemon's user and
    group; at the descriptor limit a connection is accepted and closed at once (shed) instead of the listening
    socket staying readable and the loop spinning. Malformed headers get BAD_REQUEST and the connection is closed;
    a connection silent for idle_s is closed."""

    idle_s = IDLE_S
    frame_s = 2.0
    max_conns = 1024
    per_user = 64
    reserved = 16

    def __init__(self, sock: socket.socket, daemon: Daemon, activated: bool) -> None:
        self.socket, self.daemon, self.activated = sock, daemon, activated
        self.socket.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.socket, selectors.EVENT_READ, None)
        self.conns: dict[int, _Conn] = {}
        self.per_uid: dict[int, int] = {}
        self.ready: deque[_Conn] = deque()  # connections holding a complete request not yet answered
        self.shed = 0
        self._spare: int | None = os.open(os.devnull, os.O_RDONLY)  # given up to accept-and-close at EMFILE
        self._stop = False
        self._gid = os.getgid()
        self.per_user = daemon.options.max_conns_per_user

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        last_sweep = time.monotonic()
        while not self._stop:
            for key, events in self.sel.select(0 if self.ready else poll_interval):
                if key.data is None:
                    self._accept()
                else:
                    conn: _Conn = key.data
                    if events & selectors.EVENT_READ:
                        self._read(conn)
                    if events & selectors.EVENT_WRITE and not conn.closing:
                        self._flush(conn)
            self._serve_ready()
            now = time.monotonic()
            if now - last_sweep >= poll_interval:
                last_sweep = now
                self.daemon.sample_history()
                for conn in [c for c in self.conns.values() if now - c.last > self.idle_s or
                             (c.partial_since is not None and now - c.partial_since > self.frame_s)]:
                    self._close(conn)

    def _privileged(self, uid: int, gid: int) -> bool:
        return uid in (0, os.getuid()) or gid == self._gid

    def _accept(self) -> None:
        import errno
        for _ in range(64):
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self._shed_one()
                return
            uid, gid = _peer(sock)
            why = admit(self.per_uid, len(self.conns), uid, self._privileged(uid, gid), self.max_conns,
                        self.per_user, self.reserved)
            if why is not None:
                self.shed += 1
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock, uid)
            conn.session = Session(peer=f"uid {uid}", privileged=self._privileged(uid, gid))
            self.conns[sock.fileno()] = conn
            self.per_uid[uid] = self.per_uid.get(uid, 0) + 1
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _shed_one(self) -> None:
        """At the descriptor limit: give up the spare descriptor, accept the waiting connection and close it, take
        the spare back. The client sees its connection closed; the loop does not spin on a readable socket."""
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        with contextlib.suppress(OSError):
            sock, _ = self.socket.accept()
            sock.close()
            self.shed += 1
        with contextlib.suppress(OSError):
            self._spare = os.open(os.devnull, os.O_RDONLY)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.last = time.monotonic()
        conn.inbuf += data
        self._answer_one(conn)
        self._flush(conn)

    def _answer_one(self, conn: _Conn) -> None:
        """Answer at most one complete request of ``conn``; if another is complete, it waits for the next turn."""
        if conn.closing or len(conn.outbuf) > OUT_MAX:
            return
        if len(conn.inbuf) < P.HEADER.size:
            conn.partial_since = (conn.partial_since or time.monotonic()) if conn.inbuf else None
            return
        try:
            version, op, length = P.decode_header(bytes(conn.inbuf[:P.HEADER.size]))
        except P.ProtocolError as exc:
            conn.outbuf += P.encode_response(P.STATUS.BAD_REQUEST, str(exc).encode())
            conn.closing = True  # the stream is out of step: answer, then close
            return
        if len(conn.inbuf) < P.HEADER.size + length:
            conn.partial_since = conn.partial_since or time.monotonic()
            return
        payload = bytes(conn.inbuf[P.HEADER.size:P.HEADER.size + length])
        del conn.inbuf[:P.HEADER.size + length]
        conn.partial_since = None
        conn.outbuf += respond(self.daemon, conn.session, version, op, payload)
        if self._complete(conn):
            self.ready.append(conn)
        elif conn.inbuf:
            conn.partial_since = time.monotonic()

    @staticmethod
    def _complete(conn: _Conn) -> bool:
        if len(conn.inbuf) < P.HEADER.size:
            return False
        try:
            _, _, length = P.decode_header(bytes(conn.inbuf[:P.HEADER.size]))
        except P.ProtocolError:
            return True  # answered BAD_REQUEST (and closed) on its turn
        return len(conn.inbuf) >= P.HEADER.size + length

    def _serve_ready(self) -> None:
        """One turn: each connection with a complete request waiting gets one answer (round robin)."""
        for _ in range(len(self.ready)):
            conn = self.ready.popleft()
            if conn.sock.fileno() < 0 or conn.sock.fileno() not in self.conns:
                continue
            if len(conn.outbuf) > OUT_MAX:
                continue  # its answers are not read yet: it waits (requeued by _flush once they drain)
            self._answer_one(conn)
            self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            while conn.outbuf:
                n = conn.sock.send(conn.outbuf)
                del conn.outbuf[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn)
            return
        if conn.closing and not conn.outbuf:
            self._close(conn)
            return
        if len(conn.outbuf) <= OUT_MAX and self._complete(conn) and conn not in self.ready:
            self.ready.append(conn)  # drained: its waiting requests get their turns again (never a busy loop)
        # read again only when its answers have drained and its buffered input is bounded
        reading = len(conn.outbuf) <= OUT_MAX and len(conn.inbuf) <= IN_MAX
        want = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if conn.outbuf else 0)
        if want == 0:
            want = selectors.EVENT_WRITE
        if self.sel.get_key(conn.sock).events != want:
            self.sel.modify(conn.sock, want, conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if self.conns.pop(fd, None) is None:
            return
        left = self.per_uid.get(conn.uid, 1) - 1
        if left > 0:
            self.per_uid[conn.uid] = left
        else:
            self.per_uid.pop(conn.uid, None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn.sock)
        conn.sock.close()

    def shutdown(self) -> None:
        self._stop = True

    def server_close(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.socket)
        self.sel.close()
        self.socket.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None


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


def serve(daemon: Daemon, spec: SocketSpec, ready: Callable[[], None] | None = None) -> _Loop:
    """Bind the socket (a stale socket file of a dead daemon is replaced; a live one is refused), set its
    mode and group, and return the server (call serve_forever). Under systemd socket activation the passed
    socket is used as it is (its path, mode and group are the unit's)."""
    passed = activated_socket()
    if passed is not None:
        loop = _Loop(passed, daemon, activated=True)
        if ready is not None:
            ready()
        return loop
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
            uid, _ = _peer(probe)
            if uid not in (0, os.geteuid()):
                raise OSError(f"{path}: a process of uid {uid} answers on this socket (squatted in a shared "
                              "folder?); refusing to start (put the socket in a folder only qrngd may write to)")
            raise OSError(f"{path}: another qrngd is serving on this socket")
        except (ConnectionRefusedError, FileNotFoundError):
            if not path.is_socket():
                raise OSError(f"{path} exists and is not a socket; refusing to replace it") from None
            path.unlink()
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, spec.mode)
        if gid >= 0:
            os.chown(path, -1, gid)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    loop = _Loop(sock, daemon, activated=False)
    if ready is not None:
        ready()
    return loop
