"""``qrng bytes | health | sources | attestation``: the entropy core from the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qrng.errors import UsageError

from .common import ExitCode, atomic_write, device_serial, int_at_least, write_stdout

__all__ = ["register"]


def _pipeline(args: argparse.Namespace) -> Any:
    from qrng.config import load_config, parse_fault
    from qrng.errors import ConfigError
    from qrng.pipeline import Pipeline
    cfg = load_config(args.config)
    faults = tuple(parse_fault(f, f"--fault[{i}]") for i, f in enumerate(args.fault or []))
    if faults:
        if cfg.source.type != "simulator":
            raise ConfigError("--fault", "only applies to the simulator source")
        cfg = cfg.with_faults(faults)
    return Pipeline(cfg)


STDOUT_MAX = 64 << 20  # bytes printed all-or-nothing from memory; larger requests go to --out
CHUNK = 1 << 20


def _chunks(p: Any, n: int, extracted: bool, pr: bool) -> Iterator[bytes]:
    for done in range(0, n, CHUNK):
        k = min(CHUNK, n - done)
        yield p.extracted(k) if extracted else p.generate(k, prediction_resistance=pr or None)


def cmd_bytes(args: argparse.Namespace) -> int:
    """N bytes, all or nothing: on an entropy failure nothing is printed and no file appears (exit 3)."""
    if args.n > STDOUT_MAX and not args.out:
        raise UsageError(f"{args.n:,} bytes is more than the {STDOUT_MAX >> 20} MiB printed at once; use --out FILE "
                         "(written to a temporary file and renamed only when complete)")
    p = _pipeline(args)
    chunks = _chunks(p, args.n, args.extracted, args.pr)
    if args.out:
        atomic_write(Path(args.out), chunks, overwrite=args.force)
        return ExitCode.OK
    data = b"".join(chunks)
    write_stdout((data.hex() + "\n").encode() if args.hex else data)
    return ExitCode.OK


def _report_text(rep: Any) -> str:
    d = rep.to_dict()
    s, c, h, a = d["source"], d["cutoffs"], d["health"], d["accounting"]
    lines = [
        f"source:      {s['label']}",
        f"identity:    {s['identity']}  ({s['bits_per_sample']} bits/sample, claimed H = {s['claimed_min_entropy']})",
        f"state:       {d['state'].upper()}",
        f"cutoffs:     RCT C={c['rct']}  APT C={c['apt']} (W={c['window']})  alpha=2^{c['alpha_log2']:g}",
        f"health:      {h['samples_tested']} samples tested, {h['blocks_passed']} blocks passed, "
        f"{h['blocks_failed']} failed (RCT {h['rct_failures']}, APT {h['apt_failures']})",
        f"extractor:   {d['extractor']}",
        f"accounting:  {a['raw_samples']} raw samples ({a['startup_samples']} start-up), "
        f"{a['entropy_credited_bits']:.0f} bits credited, {a['extracted_bits']} bits extracted, "
        f"{a['bytes_out']} DRBG bytes out",
    ]
    if h["last_failure"]:
        lines.append(f"failure:     {h['last_failure']}")
    return "\n".join(lines)


def cmd_health(args: argparse.Namespace) -> int:
    from qrng.errors import EntropyError
    p = _pipeline(args)
    err: EntropyError | None = None
    try:
        p.startup()
        done = 0
        while done < args.samples:
            k = min(1 << 20, args.samples - done)
            p.raw(k)
            done += k
    except EntropyError as exc:
        err = exc
    rep = p.report()
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        print(_report_text(rep))
    return ExitCode.ENTROPY if err else ExitCode.OK


def cmd_sources(args: argparse.Namespace) -> int:
    from qrng.config import load_config
    from qrng.sources import SOURCE_KINDS
    from qrng.sources.usb import list_devices
    cfg = load_config(args.config)
    emulator = [cfg.source.emulator] if cfg.source.emulator else None
    usb = list_devices(emulator=emulator)  # attached USB devices (the EMULATOR's when it is configured)
    if args.json:
        print(json.dumps({"kinds": SOURCE_KINDS, "configured": cfg.source.type, "config": cfg.origin,
                          "usb_devices": [{"vendor_id": f"{d.vendor_id:04x}", "product_id": f"{d.product_id:04x}",
                                           "bus": d.bus, "address": d.address, "serial": d.serial,
                                           "product": d.product, "protocol": d.protocol} for d in usb]}, indent=2))
    else:
        for k, v in SOURCE_KINDS.items():
            mark = "*" if k == cfg.source.type else " "
            print(f"{mark} {k:10} {v}")
        print(f"(* configured in {cfg.origin})")
        print(f"USB devices{' (EMULATOR bus)' if emulator else ''}:" + ("" if usb else " none found"))
        for d in usb:
            print(f"  {d.line()}")
    return ExitCode.OK


def cmd_attestation_init(args: argparse.Namespace) -> int:
    from qrng.attestation.statement import init_simulator
    for k, v in init_simulator(args.dir, args.serial).items():
        print(f"{k:12} {v}")
    return ExitCode.OK


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="entropy-core YAML (default: $QRNG_CONFIG, /etc/qrng/qrng.yaml, built-in)")
    p.add_argument("--fault", action="append", metavar="KIND[@START]",
                   help="inject a simulator fault (stuck_at, repeating_pattern, saturation, low_entropy, "
                        "bias_drift, throughput_drop, supply_failure, tamper) from sample START")


def register(sub: Any) -> None:
    b = sub.add_parser("bytes", help="print N random bytes from the pipeline (fails closed)")
    b.add_argument("n", type=int_at_least(0), metavar="N",
                   help=f"how many bytes (at most {STDOUT_MAX >> 20} MiB to standard output; any number with --out)")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--hex", action="store_true", help="print as hex")
    g.add_argument("--out", metavar="FILE", help="write to FILE atomically (never partially)")
    b.add_argument("--force", action="store_true", help="allow --out to replace an existing file")
    b.add_argument("--extracted", action="store_true", help="extractor output directly, without the DRBG")
    b.add_argument("--pr", action="store_true", help="prediction resistance: reseed from fresh samples first")
    _add_common(b)
    b.set_defaults(func=cmd_bytes)
    h = sub.add_parser("health", help="run start-up and continuous health tests, print state and counters")
    h.add_argument("--samples", type=int, default=1 << 20, help="samples to test after start-up (default 2^20)")
    h.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_common(h)
    h.set_defaults(func=cmd_health)
    s = sub.add_parser("sources", help="list source kinds and the configured one")
    s.add_argument("--json", action="store_true", help="print as JSON")
    s.add_argument("--config", help="entropy-core YAML (default: $QRNG_CONFIG, /etc/qrng/qrng.yaml, built-in)")
    s.set_defaults(func=cmd_sources)
    at = sub.add_parser("attestation", help="device attestation material")
    ats = at.add_subparsers(dest="attestation_command", required=True, metavar="ACTION")
    ai = ats.add_parser("init-simulator", help="create the TEST-ONLY manufacturer CA and the simulator's device key")
    ai.add_argument("--dir", required=True, help="folder for the CA, device certificate and key (created)")
    ai.add_argument("--serial", default="SIM-0001", type=device_serial,
                    help="the simulated device's serial: 1 to 32 of A-Z a-z 0-9 - _ . (default SIM-0001)")
    ai.set_defaults(func=cmd_attestation_init)
