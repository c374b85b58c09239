"""``qrng daemon`` (qrngd) and ``qrng status``: one daemon owns the entropy source and serves health-tested,
extracted seed material to every process on the host over a Unix socket (docs/daemon-protocol.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .common import ExitCode

__all__ = ["register"]

DEFAULT_SOCKET = "/run/qrngd/qrngd.sock"


def _socket(args: argparse.Namespace) -> str:
    return str(args.socket or os.environ.get("QRNGD_SOCKET") or DEFAULT_SOCKET)


def _checked_options(args: argparse.Namespace) -> tuple[int, tuple[str, int] | None]:
    """--mode and --metrics, refused before anything is opened."""
    try:
        mode = int(args.mode, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ValueError(f"--mode {args.mode!r}: octal permission bits 0000..0777, such as 0660")
    if not args.metrics:
        return mode, None
    host, _, port = args.metrics.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics {args.metrics!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return mode, (host or "127.0.0.1", int(port))


def cmd_daemon(args: argparse.Namespace) -> int:
    import functools

    from qrng.config import load_config
    from qrng.daemon.server import Daemon, SocketSpec, serve
    from qrng.pipeline import Pipeline
    mode, metrics_at = _checked_options(args)
    paths = args.config or [None]
    configs = [load_config(p) for p in paths]  # a bad configuration stops here, before the socket exists
    names = [Path(p).stem if p else "default" for p in paths]
    if len(set(names)) != len(names):
        names = [f"{n}-{i}" for i, n in enumerate(names, 1)]
    path = Path(_socket(args))

    def log(msg: str) -> None:
        print(f"qrngd: {msg}", file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        if not os.environ.get("LISTEN_FDS"):  # two daemons started at once: one holds the lock, the other stops
            from qrng.lockfile import hold
            stack.enter_context(hold(path.with_name(path.name + ".lock"), f"qrngd socket {path}"))
        simulated = any(c.source.type == "simulator" or (c.source.type == "usb" and bool(c.source.emulator))
                        for c in configs)
        daemon = Daemon([(n, functools.partial(Pipeline, c)) for n, c in zip(names, configs, strict=True)], log,
                        simulated=simulated)
        stack.callback(daemon.close)
        if metrics_at is not None:
            from qrng.daemon.metrics import Metrics
            metrics = Metrics(daemon)
            daemon.observe = metrics.latency.observe
            metrics.serve(*metrics_at)
            log(f"Prometheus metrics on http://{metrics_at[0]}:{metrics_at[1]}/metrics")
        server = serve(daemon, SocketSpec(path, mode, args.group),
                       lambda: log(f"serving on {path} (mode {mode:o}); sources: "
                                   + ", ".join(s.name for s in daemon.sources)))

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            log("stopping")
        finally:
            server.server_close()
            if not server.activated:  # a socket systemd made is systemd's to remove
                path.unlink(missing_ok=True)
    return ExitCode.OK


def cmd_status(args: argparse.Namespace) -> int:
    from qrng.daemon.client import DaemonClient
    st = DaemonClient(_socket(args), "qrng status").status()
    if args.json:
        print(json.dumps(st, indent=2))
        return ExitCode.OK if st.get("state") == "healthy" else ExitCode.ENTROPY
    print(f"qrngd pid {st['pid']}, up {st['uptime_s']:.0f} s, protocol v{st['protocol']}: {st['state'].upper()}")
    if st.get("error"):
        print(f"  error: {st['error']}")
    for s in st.get("sources", []):
        print(f"  source {s['name']}: {s['label']}\n    state {s['state'].upper()}, claimed "
              f"{s['claimed_min_entropy']} bits/sample, {s['raw_samples']:,} raw samples, "
              f"{s['rct_failures']} RCT / {s['apt_failures']} APT failures, contributed "
              f"{s['contributed_bytes']:,} bytes ({s['credited_bits']:,} bits credited)"
              + (f"\n    error: {s['error']}" if s.get("error") else ""))
    print(f"  served {st['seeds_served']:,} seeds ({st['seed_bytes_served']:,} bytes), refused {st['refused']}")
    for name, n in sorted(st.get("clients", {}).items()):
        print(f"    {name}: {n:,} bytes")
    return ExitCode.OK if st.get("state") == "healthy" else ExitCode.ENTROPY


def register(sub: Any) -> None:
    d = sub.add_parser("daemon", help="qrngd: own the entropy source and serve seed material over a Unix socket",
                       description=__doc__)
    d.add_argument("--config", action="append",
                   help="entropy-core YAML of a source (default: $QRNG_CONFIG, /etc/qrng/qrng.yaml, built-in); "
                        "repeat for several sources, mixed with a hash combiner, entropy credited only from the "
                        "healthy ones")
    d.add_argument("--socket", help=f"Unix socket path (default: $QRNGD_SOCKET or {DEFAULT_SOCKET})")
    d.add_argument("--mode", default="0660", help="the socket's permission bits, octal (default 0660)")
    d.add_argument("--group", help="the socket's group (default: the daemon's)")
    d.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9464; off by default)")
    d.set_defaults(func=cmd_daemon)
    s = sub.add_parser("status", help="the daemon's state at a glance: sources, health, credited entropy, clients")
    s.add_argument("--socket", help=f"Unix socket path (default: $QRNGD_SOCKET or {DEFAULT_SOCKET})")
    s.add_argument("--json", action="store_true", help="print the state as JSON")
    s.set_defaults(func=cmd_status)
