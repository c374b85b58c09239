"""``qrng daemon`` (qrngd) and ``qrng status``: one daemon owns the entropy source and serves health-tested,
extracted seed material to every process on the host over a Unix socket (docs/daemon-protocol.md)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

from qrng.errors import UsageError
from qrngd.protocol import DEFAULT_SOCKET  # the one source, also of the C module's generated header

from .common import ExitCode, int_at_least

__all__ = ["register"]


def _socket(args: argparse.Namespace) -> str:
    return str(args.socket or os.environ.get("QRNGD_SOCKET") or DEFAULT_SOCKET)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, keyed as in the configuration file (qrngd/config.py)."""
    from qrngd.config import FLAGS
    given = {key: getattr(args, "config" if key == "sources" else key) for key in FLAGS}
    return {k: v for k, v in given.items() if v is not None}


def cmd_daemon(args: argparse.Namespace) -> int:
    from qrngd.config import load_daemon_config
    from qrngd.run import run
    config = load_daemon_config(Path(args.config_file) if args.config_file else None, _given(args),
                                default_socket=os.environ.get("QRNGD_SOCKET") or DEFAULT_SOCKET)
    return run(config)


def cmd_status(args: argparse.Namespace) -> int:
    from qrngd import protocol as P
    from qrngd.client import DaemonClient
    client = DaemonClient(_socket(args), "qrng status")
    st = client.status()
    code = ExitCode.OK if st.get("state") == "healthy" else ExitCode.ENTROPY
    if args.plot:
        from qrng.atomic import atomic_write
        from qrngd.plot import plot_history
        out = Path(args.plot)
        if out.suffix.lower() != ".png":
            raise UsageError(f"--plot {args.plot}: the file name must end in .png")
        if out.exists() and not args.force:
            raise UsageError(f"--plot {args.plot}: exists (add --force to replace it)")
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
    d.add_argument("--config-file", metavar="YAML",
                   help="qrngd's own configuration (e.g. /etc/qrng/qrngd.yaml, what the systemd unit uses): its keys "
                        "are these options' names with underscores, and `sources` for --config (docs/daemon-"
                        "protocol.md, contrib/qrngd.yaml); an option given here replaces the file's key")
    d.add_argument("--config", action="append",
                   help="entropy-core YAML of a source (default: $QRNG_CONFIG, /etc/qrng/qrng.yaml, built-in); "
                        "repeat for several sources, mixed with a hash combiner, entropy credited only from the "
                        "healthy ones")
    d.add_argument("--socket", help=f"Unix socket path (default: $QRNGD_SOCKET or {DEFAULT_SOCKET})")
    d.add_argument("--mode", help="the socket's permission bits, octal (default 0660)")
    d.add_argument("--group", help="the socket's group (default: the daemon's)")
    d.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9464; off by default)")
    g = d.add_argument_group("how sources run")
    g.add_argument("--stream", action="store_true", default=None,
                   help="read every source continuously at the device's own rate, health-testing every sample "
                        "(a PCIe-class QRNG that streams); extracted output beyond --pool goes to the kernel feed "
                        "or is discarded, and counted. Default: read on demand, keeping --pool ready")
    g.add_argument("--max-conns-per-user", type=int_at_least(1), metavar="N",
                   help="connections one user (SO_PEERCRED uid) may hold on the Unix socket (default 64); the last 16 "
                        "of the 1024 slots are kept for root and the daemon's user and group")
    g.add_argument("--pool", metavar="SIZE",
                   help="extracted output kept ready per source, served without waiting (default 64KiB)")
    g.add_argument("--history-interval", type=float, metavar="S",
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
    g.add_argument("--attest-every", type=float, metavar="S",
                   help="seconds between attestations of a device (default 3600)")
    g.add_argument("--allow-emulator", action="store_true", default=None,
                   help="accept the USB EMULATOR's TEST-ONLY attestation (tests and demos only)")
    k = d.add_argument_group("feeding the kernel (as rngd does)")
    k.add_argument("--feed-kernel", action="store_true", default=None,
                   help="add extracted, health-tested output to the kernel's pool with RNDADDENTROPY, credited 8 "
                        "bits per byte (needs CAP_SYS_ADMIN)")
    k.add_argument("--feed-rate", type=int, metavar="BYTES",
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
