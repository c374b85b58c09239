"""``qrng daemon`` (qrngd) and ``qrng status``: one daemon owns the entropy source and serves health-tested,
extracted seed material to every process on the host over a Unix socket (docs/daemon-protocol.md)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

from qrng.asciinum import is_ascii_decimal
from qrng.daemon.protocol import DEFAULT_SOCKET  # the one source, also of the C module's generated header

from .common import ExitCode, int_at_least

__all__ = ["register"]


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
    if not is_ascii_decimal(port) or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics {args.metrics!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return mode, (host or "127.0.0.1", int(port))


def _size(text: str, what: str) -> int:
    """A byte size such as 64KiB, 8MiB or 1GiB (or plain bytes)."""
    units = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
    t = text.strip().upper()
    num = t.rstrip("KMGIB")
    unit = t[len(num):]
    if not is_ascii_decimal(num) or unit not in units or int(num) * units[unit] > 1 << 40:
        raise ValueError(f"{what} {text!r}: a size such as 65536, 64KiB or 8MiB (at most 1 TiB)")
    return int(num) * units[unit]


def _options(args: argparse.Namespace) -> Any:
    from qrng.daemon.pool import DaemonOptions
    pool = _size(args.pool, "--pool")
    if not 4096 <= pool <= 1 << 30:
        raise ValueError(f"--pool {args.pool!r}: from 4KiB to 1GiB")
    if args.retain and not args.retain_dir:
        raise ValueError("--retain needs --retain-dir (where the raw-sample ring lives)")
    if args.retain and _size(args.retain, "--retain") < 1 << 20:
        raise ValueError(f"--retain {args.retain!r}: at least 1MiB")
    if bool(args.audit_log) != bool(args.audit_key):
        raise ValueError("--audit-log and --audit-key go together (the log's checkpoints are signed)")
    if args.feed_kernel and args.feed_fifo:
        raise ValueError("--feed-kernel and --feed-fifo: choose one way to feed the kernel")
    if not math.isfinite(args.attest_every) or not 1 <= args.attest_every <= 86400 * 365:
        raise ValueError(f"--attest-every {args.attest_every}: seconds, from 1 to a year")
    if not 64 <= args.feed_rate <= 1 << 20:
        raise ValueError(f"--feed-rate {args.feed_rate}: bytes a second, from 64 to 1048576")
    if args.allow_emulator and not args.attest_roots:
        raise ValueError("--allow-emulator only matters with --attest-roots")
    for f in [*(args.attest_roots or []), *([args.audit_key] if args.audit_key else [])]:
        if not Path(f).is_file():
            raise ValueError(f"{f}: no such file")
    if not math.isfinite(args.history_interval) or not 0.5 <= args.history_interval <= 3600:
        raise ValueError("--history-interval: seconds, from 0.5 to 3600")
    return DaemonOptions(stream=args.stream, pool_bytes=pool, history_interval_s=args.history_interval,
                         max_conns_per_user=args.max_conns_per_user)


def _address(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not is_ascii_decimal(port) or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:7464")
    return host.strip("[]"), int(port)


def _files(args: argparse.Namespace, option: str, names: tuple[str, ...]) -> list[Path]:
    out = []
    for n in names:
        v = getattr(args, n)
        flag = "--" + n.replace("_", "-")
        if not v:
            raise ValueError(f"{option} needs {flag}")
        if not Path(v).is_file():
            raise ValueError(f"{flag} {v}: no such file")
        out.append(Path(v))
    return out


def _tls_options(args: argparse.Namespace) -> Any:
    if not args.tls:
        return None
    from qrng.daemon.tls import TlsOptions
    host, port = _address(args.tls, "--tls")
    cert, key, ca = _files(args, "--tls", ("tls_cert", "tls_key", "tls_client_ca"))
    return TlsOptions(host, port, cert, key, ca)


def _upstream_options(args: argparse.Namespace) -> Any:
    if not args.upstream:
        return None
    from qrng.daemon.tls import UpstreamOptions
    _address(args.upstream, "--upstream")
    cert, key, ca = _files(args, "--upstream", ("upstream_cert", "upstream_key", "upstream_ca"))
    return UpstreamOptions(args.upstream, cert, key, ca, args.upstream_name)


def cmd_daemon(args: argparse.Namespace) -> int:
    # a request thread waiting for the GIL while a source thread extracts waits up to the switch interval (5 ms
    # by default): 0.2 ms keeps seed latency low with many clients (bench/bench_daemon.py)
    sys.setswitchinterval(0.0002)
    from qrng.config import load_config
    from qrng.daemon.seed_source import PipelineSeed
    from qrng.daemon.state import Daemon
    from qrng.daemon.unix import SocketSpec, serve
    from qrng.pipeline import Pipeline
    mode, metrics_at = _checked_options(args)
    options = _options(args)
    tls = _tls_options(args)
    upstream = _upstream_options(args)
    paths = args.config or ([] if upstream else [None])
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
        feed: Any = None
        if args.feed_kernel:
            from qrng.daemon.kernel import IoctlFeed
            feed = IoctlFeed(rate=args.feed_rate)
        elif args.feed_fifo:
            from qrng.daemon.kernel import FifoFeed
            feed = FifoFeed(Path(args.feed_fifo))
        events: Any = None
        if args.audit_log:
            from qrng.daemon.events import EventLog
            events = EventLog(Path(args.audit_log), Path(args.audit_key))
            stack.callback(events.close)
        attest: Any = None
        if args.attest_roots:
            from qrng.daemon.attest import Attester
            attest = Attester(tuple(Path(r) for r in args.attest_roots), args.allow_emulator, args.attest_every,
                              Path(args.attest_state) if args.attest_state else None)
        retain = _size(args.retain, "--retain") if args.retain else 0

        def opener(cfg: Any) -> Any:
            def open_pipeline(src: Any) -> Any:
                tap = None
                if retain:
                    if src.ring is None:
                        from qrng.daemon.ring import RawRing
                        src.ring = RawRing(Path(args.retain_dir) / src.name, retain, {"source": src.name})
                    tap = _ring_tap(src.ring)
                p = Pipeline(cfg, tap=tap)
                if src.ring is not None:
                    info = p.info
                    src.ring.describe({"source": src.name, "identity": info.identity, "label": info.label,
                                       "bits_per_sample": info.bits_per_sample,
                                       "claimed_min_entropy": info.claimed_min_entropy,
                                       "simulator": info.simulator,
                                       "estimate_with": f"qrng estimate -b {info.bits_per_sample} SEGMENT.bin"})
                return PipelineSeed(p)
            return open_pipeline

        specs = [(n, opener(c)) for n, c in zip(names, configs, strict=True)]
        if upstream is not None:
            from qrng.daemon.tls import Upstream
            specs.append(("upstream", lambda src: Upstream(upstream, f"qrngd relay pid {os.getpid()}")))
        daemon = Daemon(specs, log, simulated=simulated, options=options, feed=feed, events=events, attest=attest)
        stack.callback(daemon.close)
        daemon.wait_ready(30.0)  # every source opened (or failed) once before the socket appears
        if metrics_at is not None:
            from qrng.daemon.metrics import Metrics
            metrics = Metrics(daemon)
            daemon.observe = metrics.latency.observe
            metrics.serve(*metrics_at)
            log(f"Prometheus metrics on http://{metrics_at[0]}:{metrics_at[1]}/metrics")
        if tls is not None:
            from qrng.daemon.tls import serve_tls
            tls_server = serve_tls(daemon, tls)
            stack.callback(tls_server.shutdown)
            log(f"mutual-TLS endpoint on {tls.host}:{tls.port} (clients need a certificate from {tls.client_ca})")
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


def _ring_tap(ring: Any) -> Any:
    def tap(block: Any) -> None:
        try:
            ring.write(block.tobytes())
        except OSError as exc:  # a full disk never stops the service; the ring says why it stopped
            ring.error = f"{exc.strerror}"
    return tap


def cmd_status(args: argparse.Namespace) -> int:
    from qrng.daemon import protocol as P
    from qrng.daemon.client import DaemonClient
    client = DaemonClient(_socket(args), "qrng status")
    st = client.status()
    code = ExitCode.OK if st.get("state") == "healthy" else ExitCode.ENTROPY
    if args.plot:
        from qrng.atomic import atomic_write
        from qrng.daemon.plot import plot_history
        out = Path(args.plot)
        if out.suffix.lower() != ".png":
            raise ValueError(f"--plot {args.plot}: the file name must end in .png")
        if out.exists() and not args.force:
            raise ValueError(f"--plot {args.plot}: exists (add --force to replace it)")
        png, n = plot_history(client.request(P.OP.HISTORY).json(), st)
        atomic_write(out, png, overwrite=args.force)
        print(f"wrote {out} ({n} points)", file=sys.stderr)
    if args.json:
        print(json.dumps(st, indent=2))
        return code
    print(f"qrngd pid {st['pid']}, up {st['uptime_s']:.0f} s, protocol v{st['protocol']}"
          f"{', streaming' if st.get('stream') else ''}: {st['state'].upper()}")
    if st.get("error"):
        print(f"  error: {st['error']}")
    for s in st.get("sources", []):
        print(f"  source {s['name']}: {s['label']}\n    state {s['state'].upper()}, claimed "
              f"{s['claimed_min_entropy']} bits/sample, {s['raw_samples']:,} raw samples, "
              f"{s['rct_failures']} RCT / {s['apt_failures']} APT failures, contributed "
              f"{s['contributed_bytes']:,} bytes ({s['credited_bits']:,} bits credited)"
              + (f"\n    error: {s['error']}" if s.get("error") else ""))
        age = f", oldest {s['pool_age_s']:.1f} s" if s.get("pool_age_s") is not None else ""
        print(f"    extracted {s.get('extracted_bytes', 0):,} bytes: pool {s.get('pooled_bytes', 0):,}{age}, "
              f"kernel {s.get('kernel_fed_bytes', 0):,}, discarded {s.get('discarded_bytes', 0):,}, dropped on "
              f"failure {s.get('dropped_bytes', 0):,}; raw ring {s.get('retained_bytes', 0):,} bytes")
        att = s.get("attestation")
        if att:
            if att.get("valid"):
                exp = datetime.datetime.fromtimestamp(att["not_after"], datetime.UTC).date()
                print(f"    attested: device {att['serial']}{' (EMULATOR)' if att.get('emulator') else ''}, "
                      f"counter {att['counter']}, certificate valid until {exp}")
            else:
                print(f"    attestation FAILED: {att.get('error')}")
    lat = st.get("seed_latency")
    lat_text = f"; time in daemon p50 {lat['p50_us']:.0f} µs, p99 {lat['p99_us']:.0f} µs" if lat else ""
    print(f"  served {st['seeds_served']:,} seeds ({st['seed_bytes_served']:,} bytes), refused {st['refused']}"
          + lat_text)
    for name, n in sorted(st.get("clients", {}).items()):
        print(f"    {name}: {n:,} bytes")
    for name, n in sorted(st.get("client_fallback_seeds", {}).items()):
        print(f"    {name} FELL BACK to its named fallback for {n:,} seeds")
    if st.get("kernel_feed"):
        kf = st["kernel_feed"]
        print(f"  kernel feed ({kf['kind']}): {kf['fed_bytes']:,} bytes" + (f"; {kf['error']}" if kf["error"] else ""))
    if st.get("audit_log"):
        al = st["audit_log"]
        print(f"  audit log {al['path']}: {al['entries']} entries")
    return code


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
    g = d.add_argument_group("how sources run")
    g.add_argument("--stream", action="store_true",
                   help="read every source continuously at the device's own rate, health-testing every sample "
                        "(a PCIe-class QRNG that streams); extracted output beyond --pool goes to the kernel feed "
                        "or is discarded, and counted. Default: read on demand, keeping --pool ready")
    g.add_argument("--max-conns-per-user", type=int_at_least(1), default=64, metavar="N",
                   help="connections one user (SO_PEERCRED uid) may hold on the Unix socket (default 64); the last 16 "
                        "of the 1024 slots are kept for root and the daemon's user and group")
    g.add_argument("--pool", default="64KiB", metavar="SIZE",
                   help="extracted output kept ready per source, served without waiting (default 64KiB)")
    g.add_argument("--history-interval", type=float, default=10.0, metavar="S",
                   help="seconds between the points of the recent history `qrng status --plot` draws (default 10; "
                        "360 points are kept)")
    g.add_argument("--retain", metavar="SIZE",
                   help="keep the last SIZE (e.g. 64MiB) of raw samples per source on disk, as read and before "
                        "the health tests judge them, for offline re-assessment with `qrng estimate`")
    g.add_argument("--retain-dir", metavar="DIR", help="where the raw-sample rings live (DIR/<source>/raw-*.bin)")
    g.add_argument("--attest-state", metavar="FILE",
                   help="keep the last attestation counter seen per device serial in FILE (JSON), so a counter that "
                        "goes back fails attestation across restarts too (default: for the daemon's life only)")
    g.add_argument("--attest-roots", action="append", metavar="PEM",
                   help="manufacturer root certificates: a USB QRNG is attested with a fresh nonce when opened and "
                        "every --attest-every seconds, and not served from if it fails; repeatable")
    g.add_argument("--attest-every", type=float, default=3600.0, metavar="S",
                   help="seconds between attestations of a device (default 3600)")
    g.add_argument("--allow-emulator", action="store_true",
                   help="accept the USB EMULATOR's TEST-ONLY attestation (tests and demos only)")
    k = d.add_argument_group("feeding the kernel (as rngd does)")
    k.add_argument("--feed-kernel", action="store_true",
                   help="add extracted, health-tested output to the kernel's pool with RNDADDENTROPY, credited 8 "
                        "bits per byte (needs CAP_SYS_ADMIN)")
    k.add_argument("--feed-rate", type=int, default=512, metavar="BYTES",
                   help="bytes a second at most for --feed-kernel (default 512)")
    k.add_argument("--feed-fifo", metavar="PATH",
                   help="serve extracted output on a FIFO for rngd to read (`rngd -r PATH`) instead")
    a = d.add_argument_group("audit")
    a.add_argument("--audit-log", metavar="FILE",
                   help="record start, stop, source failures and recoveries, attestation failures and client "
                        "fallbacks in this signed audit log (verify with `qrng audit verify FILE --key KEY.pub`)")
    a.add_argument("--audit-key", metavar="KEY",
                   help="the log's Ed25519 private key file (`qrng audit keygen`); its name is the log's origin")
    t = d.add_argument_group("other hosts (mutual TLS)")
    t.add_argument("--tls", metavar="HOST:PORT", help="also serve the protocol over TLS on HOST:PORT, to clients "
                                                      "with a certificate from --tls-client-ca")
    t.add_argument("--tls-cert", metavar="PEM", help="this daemon's certificate (chain) for --tls")
    t.add_argument("--tls-key", metavar="PEM", help="its private key")
    t.add_argument("--tls-client-ca", metavar="PEM", help="the CA that issues client certificates")
    t.add_argument("--upstream", metavar="HOST:PORT",
                   help="take seed material from the qrngd at HOST:PORT over mutual TLS, as a source of this "
                        "daemon (a host without its own QRNG)")
    t.add_argument("--upstream-cert", metavar="PEM", help="this daemon's client certificate for --upstream")
    t.add_argument("--upstream-key", metavar="PEM", help="its private key")
    t.add_argument("--upstream-ca", metavar="PEM", help="the CA that issued the upstream's server certificate")
    t.add_argument("--upstream-name", metavar="NAME",
                   help="the name the upstream's certificate must carry (default: HOST)")
    d.set_defaults(func=cmd_daemon)
    s = sub.add_parser("status", help="the daemon's state at a glance: sources, health, credited entropy, clients")
    s.add_argument("--socket", help=f"Unix socket path (default: $QRNGD_SOCKET or {DEFAULT_SOCKET})")
    s.add_argument("--json", action="store_true", help="print the state as JSON")
    s.add_argument("--plot", metavar="FILE.png",
                   help="also draw the recent history (entropy estimate, health-test failures, raw and served "
                        "rates; the last hour at most) into a PNG")
    s.add_argument("--force", action="store_true", help="replace an existing --plot file")
    s.set_defaults(func=cmd_status)
