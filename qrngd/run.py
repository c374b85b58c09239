"""qrngd's life: ``run(config)`` assembles the daemon a :class:`~qrngd.config.DaemonConfig` describes
(sources, kernel feed, audit log, attestation, metrics, the mutual-TLS endpoint, the Unix socket), serves until
SIGTERM or Ctrl-C, and takes it all down again. The CLI only parses options and calls it.

Two daemons started at once on one socket: one holds the socket's lock file and serves, the other stops (under
systemd socket activation the unit owns the socket and no lock is taken).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qrng.errors import ConfigError

from .config import DaemonConfig
from .pool import Source
from .sdnotify import notify
from .seed_source import SeedSource
from .state import Daemon, Opener

__all__ = ["run"]

SOURCES_READY_S = 30.0  # every source is opened (or has failed) once before the socket appears


def _log(msg: str) -> None:
    print(f"qrngd: {msg}", file=sys.stderr, flush=True)


def _ring_tap(ring: Any) -> Callable[[Any], None]:
    def tap(block: Any) -> None:
        try:
            ring.write(block.tobytes())
        except OSError as exc:  # a full disk never stops the service; the ring says why it stopped
            ring.error = f"{exc.strerror}"
    return tap


def _pipeline_opener(config: DaemonConfig, entropy_config: Any) -> Opener:
    """Opens a local pipeline on one entropy-core configuration, with its raw-sample ring when retaining."""
    def open_pipeline(src: Source) -> SeedSource:
        from qrng.pipeline import Pipeline

        from .seed_source import PipelineSeed
        tap = None
        if config.retain_bytes and config.retain_dir is not None:
            if src.ring is None:
                from .ring import RawRing
                src.ring = RawRing(config.retain_dir / src.name, config.retain_bytes, {"source": src.name})
            tap = _ring_tap(src.ring)
        p = Pipeline(entropy_config, tap=tap, assess_in_background=True)
        if src.ring is not None:
            info = p.info
            src.ring.describe({"source": src.name, "identity": info.identity, "label": info.label,
                               "bits_per_sample": info.bits_per_sample,
                               "claimed_min_entropy": info.claimed_min_entropy, "simulator": info.simulator,
                               "estimate_with": f"qrng estimate -b {info.bits_per_sample} SEGMENT.bin"})
        return PipelineSeed(p)
    return open_pipeline


def _assessed_by_default(cfg: Any) -> Any:
    """The entropy-floor SLO is measured unless switched off: a source whose configuration does not set
    ``assessment.every_samples`` (0 is off) is assessed every :data:`qrng.config.DAEMON_ASSESS_EVERY` samples, at
    most once a minute."""
    from dataclasses import replace

    from qrng.config import DAEMON_ASSESS_EVERY, DAEMON_ASSESS_MIN_INTERVAL_S
    if cfg.assessment.every_samples is not None:
        return cfg
    return replace(cfg, assessment=replace(cfg.assessment, every_samples=DAEMON_ASSESS_EVERY,
                                           min_interval_s=max(cfg.assessment.min_interval_s,
                                                              DAEMON_ASSESS_MIN_INTERVAL_S)))


def _sources(config: DaemonConfig) -> tuple[list[tuple[str, Opener]], bool]:
    """(name, opener) per source, and whether any is the simulator or the USB emulator. A bad entropy-core
    configuration raises here, before the socket exists."""
    from qrng.config import load_config
    paths: list[Path | None] = list(config.sources) or ([] if config.upstream else [None])
    configs = [_assessed_by_default(load_config(p)) for p in paths]
    names = [p.stem if p else "default" for p in paths]
    if len(set(names)) != len(names):
        names = [f"{n}-{i}" for i, n in enumerate(names, 1)]
    simulated = any(c.source.type == "simulator" or (c.source.type == "usb" and bool(c.source.emulator))
                    for c in configs)
    specs = [(n, _pipeline_opener(config, c)) for n, c in zip(names, configs, strict=True)]
    upstream = config.upstream
    if upstream is not None:
        from .tls import Upstream
        specs.append(("upstream", lambda src: Upstream(upstream, f"qrngd relay pid {os.getpid()}")))
    return specs, simulated


def _daemon(config: DaemonConfig, stack: contextlib.ExitStack) -> Daemon:
    """The daemon with its kernel feed, audit log and attester; closed when ``stack`` unwinds."""
    specs, simulated = _sources(config)
    feed: Any = None
    if config.feed_kernel:
        from .kernel import IoctlFeed
        feed = IoctlFeed(rate=config.feed_rate)
    elif config.feed_fifo is not None:
        from .kernel import FifoFeed
        feed = FifoFeed(config.feed_fifo)
    events: Any = None
    if config.audit_log is not None and config.audit_key is not None:
        from .events import EventLog
        events = EventLog(config.audit_log, config.audit_key)
        stack.callback(events.close)
    attest: Any = None
    if config.attest_roots:
        from .attester import Attester
        attest = Attester(config.attest_roots, config.allow_emulator, config.attest_every, config.attest_state)
    daemon = Daemon(specs, _log, simulated=simulated, options=config.options, feed=feed, events=events,
                    attest=attest)
    stack.callback(daemon.close)
    return daemon


def check_metrics_port(config: DaemonConfig) -> None:
    """A busy or forbidden --metrics address is named before any source is opened (the server binds the same way:
    SO_REUSEADDR, so a port in TIME_WAIT is not "busy")."""
    if config.metrics is None:
        return
    host, port = config.metrics
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise ConfigError("metrics", f"{host}:{port}: cannot listen there ({exc.strerror or exc}): another qrngd or "
                                     "exporter on that port?") from None
    finally:
        probe.close()


def _endpoints(config: DaemonConfig, daemon: Daemon, stack: contextlib.ExitStack) -> None:
    """Prometheus metrics and the mutual-TLS endpoint, when configured."""
    if config.metrics is not None:
        from .metrics import Metrics
        metrics = Metrics(daemon)
        daemon.observe = metrics.latency.observe
        metrics.serve(*config.metrics)
        _log(f"Prometheus metrics on http://{config.metrics[0]}:{config.metrics[1]}/metrics")
    if config.tls is not None:
        from .tls import serve_tls
        tls = config.tls
        stack.callback(serve_tls(daemon, tls).shutdown)
        _log(f"mutual-TLS endpoint on {tls.host}:{tls.port} (clients need a certificate from {tls.client_ca})")


def run(config: DaemonConfig) -> int:
    """Serve until SIGTERM or Ctrl-C; returns 0. Configuration and start-up errors raise (ConfigError,
    LockHeld, OSError) before the socket exists."""
    # a request waiting for the GIL while a source thread extracts waits up to the switch interval (5 ms by
    # default): 0.2 ms keeps seed latency low with many clients (bench/bench_daemon.py)
    sys.setswitchinterval(0.0002)
    from .unix import SocketSpec, serve
    check_metrics_port(config)
    path = config.socket
    with contextlib.ExitStack() as stack:
        if not os.environ.get("LISTEN_FDS"):
            from qrng.lockfile import hold
            stack.enter_context(hold(path.with_name(path.name + ".lock"), f"qrngd socket {path}"))
        daemon = _daemon(config, stack)
        daemon.wait_ready(SOURCES_READY_S)
        _endpoints(config, daemon, stack)
        def ready(loop: Any) -> None:
            status = f"serving on {loop.describe()}; sources: " + ", ".join(
                f"{s.name} ({'healthy' if s.serving() else 'NOT SERVING: ' + s.error})" for s in daemon.sources)
            _log(status)
            notify(READY="1", STATUS=status[:200])  # systemd Type=notify: started once the socket serves

        server = serve(daemon, SocketSpec(path, config.mode, config.gid), ready)

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            _log("stopping")
            notify(STOPPING="1")
        finally:
            server.server_close()
            if not server.activated:  # a socket systemd made is systemd's to remove
                path.unlink(missing_ok=True)
    return 0
