"""qrngd's state behind every transport: the sources it mixes, what it has served, and the answer to each
request of the wire protocol (docs/daemon-protocol.md). Transports (the Unix socket loop, unix.py; the
mutual-TLS endpoint, tls.py) read frames and call :func:`respond`; nothing here touches a socket.

Fail closed: with no healthy source every SEED is answered UNHEALTHY with the reason, never with weaker bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import protocol as P
from .history import History, Snapshot
from .pool import DaemonOptions, KernelFeed, Source, SourceEnv
from .seed_source import SeedSource

Opener = Callable[[Source], SeedSource]  # opens a source's seed source (given the Source: its name and ring)

__all__ = ["FALLBACK_PER_MINUTE", "STATUS_TABLE_MAX", "Daemon", "Session", "combine", "respond"]

FALLBACK_PER_MINUTE = 10  # FALLBACK reports one peer may make a minute (more are refused, not logged)
MAX_CLIENT_NAMES = 256  # distinct HELLO names counted; more are counted as "other" (bounded STATUS and metrics)

@dataclass
class _Counters:
    seeds: int = 0
    seed_bytes: int = 0
    refused: int = 0
    clients: dict[str, int] = field(default_factory=dict)  # client name -> bytes served
    fallback_seeds: dict[str, int] = field(default_factory=dict)  # client name -> seeds it took from its fallback

    def client(self, name: str, table: dict[str, int]) -> str:
        return name if name in table or len(table) < MAX_CLIENT_NAMES else "other"

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

    ``open_pipeline`` callables take the source's :class:`~qrngd.pool.Source` (its name, and its ring for
    the pipeline's tap)."""

    def __init__(self, open_pipeline: Opener | list[tuple[str, Opener]],
                 log: Callable[[str], None] | None = None, simulated: bool = False,
                 options: DaemonOptions | None = None, feed: KernelFeed | None = None, events: Any = None,
                 attest: Callable[[SeedSource], dict[str, Any]] | None = None, start: bool = True) -> None:
        self._log = log or (lambda m: None)
        self.simulated = simulated  # a source is the simulator or the USB emulator: HELLO says so to clients
        self.options = options or DaemonOptions()
        self.feed = feed
        self.events = events
        self.stopping = threading.Event()
        env = SourceEnv(options=self.options, stopping=self.stopping, feed=feed,
                        attest=attest if attest is not None else (lambda seed: None),
                        attest_every=float(getattr(attest, "every_s", 0.0) or 0.0), event=self.event)
        specs = open_pipeline if isinstance(open_pipeline, list) else [("source", open_pipeline)]
        self.sources = [Source(name, fn, env) for name, fn in specs]
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

    def is_simulated(self) -> bool:
        """A configured source is the simulator or the USB emulator, or an upstream daemon says it serves one."""
        return self.simulated or any(s.pipeline is not None and s.pipeline.info.simulator for s in self.sources)

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
                                "last_checkpoint": self.events.checkpoint_time or None,
                                "writable": self.events.writable, "write_errors": self.events.write_errors,
                                "held_events": len(self.events.held), "dropped_events": self.events.dropped}
        return out

    def sample_history(self) -> None:
        """One history point when due (the server calls this about once a second); held audit events retried."""
        if self.events is not None:
            self.events.retry()
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
            src.close()
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

