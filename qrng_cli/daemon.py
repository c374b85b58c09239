"""``qrng daemon`` (qrngd) and ``qrng status``: one daemon owns the entropy source and serves health-tested,
extracted seed material to every process on the host over a Unix socket (docs/daemon-protocol.md)."""

from __future__ import annotations

import argparse
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


def cmd_daemon(args: argparse.Namespace) -> int:
    from qrng.config import load_config
    from qrng.daemon.server import Daemon, SocketSpec, serve
    from qrng.pipeline import Pipeline
    paths = args.config or [None]
    configs = [load_config(p) for p in paths]  # a bad configuration stops here, before the socket exists

    def log(msg: str) -> None:
        print(f"qrngd: {msg}", file=sys.stderr, flush=True)

    names = [Path(p).stem if p else "default" for p in paths]
    if len(set(names)) != len(names):
        names = [f"{n}-{i}" for i, n in enumerate(names, 1)]
    import functools
    daemon = Daemon([(n, functools.partial(Pipeline, c)) for n, c in zip(names, configs, strict=True)], log)
    if args.metrics:
        from qrng.daemon.metrics import Metrics
        host, _, port = args.metrics.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--metrics {args.metrics!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
        metrics = Metrics(daemon)
        daemon.observe = metrics.latency.observe
        metrics.serve(host or "127.0.0.1", int(port))
        log(f"Prometheus metrics on http://{host or '127.0.0.1'}:{port}/metrics")
    try:
        mode = int(args.mode, 8)
    except ValueError:
        raise ValueError(f"--mode {args.mode!r}: an octal mode such as 0660") from None
    path = Path(_socket(args))
    server = serve(daemon, SocketSpec(path, mode, args.group),
                   lambda: log(f"serving on {path} (mode {mode:o}); source: "
                               f"{daemon.status().get('sources', [{}])[0].get('label', 'not ready')}"))

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        log("stopping")
    finally:
        activated = server.activated
        server.server_close()
        if not activated:  # a socket systemd made is systemd's to remove
            path.unlink(missing_ok=True)
        daemon.close()
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
