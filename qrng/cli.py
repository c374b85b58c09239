"""The ``qrng`` command. Exit codes: 0 success, 1 verification failed (tampered or inconsistent),
2 usage, configuration or I/O error, 3 entropy failure (health test, source error: no output produced)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "EXIT_OK", "EXIT_VERIFY", "EXIT_USAGE", "EXIT_ENTROPY"]

EXIT_OK, EXIT_VERIFY, EXIT_USAGE, EXIT_ENTROPY = 0, 1, 2, 3


def _progress(enabled: bool) -> Callable[[str], None]:
    def show(msg: str) -> None:
        if enabled:
            print(msg, file=sys.stderr, flush=True)
    return show


def atomic_write(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: all or nothing."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite")
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the path appeared meanwhile
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _pipeline(args: argparse.Namespace) -> Any:
    from .config import load_config, parse_fault
    from .pipeline import Pipeline
    cfg = load_config(args.config)
    faults = tuple(parse_fault(f, f"--fault[{i}]") for i, f in enumerate(args.fault or []))
    if faults:
        if cfg.source.type != "simulator":
            raise SystemExit("qrng: --fault only applies to the simulator source")
        cfg = cfg.with_faults(faults)
    return Pipeline(cfg)


def cmd_bytes(args: argparse.Namespace) -> int:
    p = _pipeline(args)
    if args.n < 0:
        raise ValueError("N must be >= 0")
    data = p.extracted(args.n) if args.extracted else p.generate(args.n, prediction_resistance=args.pr or None)
    if args.out:
        atomic_write(Path(args.out), data, overwrite=args.force)
    elif args.hex:
        sys.stdout.write(data.hex() + "\n")
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK


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
    from .errors import EntropyError
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
    return EXIT_ENTROPY if err else EXIT_OK


def cmd_sources(args: argparse.Namespace) -> int:
    from .config import load_config
    from .sources import SOURCE_KINDS
    cfg = load_config(args.config)
    if args.json:
        print(json.dumps({"kinds": SOURCE_KINDS, "configured": cfg.source.type, "config": cfg.origin}, indent=2))
    else:
        for k, v in SOURCE_KINDS.items():
            mark = "*" if k == cfg.source.type else " "
            print(f"{mark} {k:10} {v}")
        print(f"(* configured in {cfg.origin})")
    return EXIT_OK


def cmd_attestation_init(args: argparse.Namespace) -> int:
    from .attestation import init_simulator
    for k, v in init_simulator(args.dir, args.serial).items():
        print(f"{k:12} {v}")
    return EXIT_OK


Handler = tuple[type[BaseException] | tuple[type[BaseException], ...], int, Callable[[Any, argparse.Namespace], str]]


def guard(table: list[Handler]) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Wrap a subcommand: the first matching row maps an exception to its message (stderr) and exit code."""
    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        def wrapped(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except Exception as exc:
                for cls, code, render in table:
                    if isinstance(exc, cls):
                        print(render(exc, args), file=sys.stderr)
                        return code
                raise
        return wrapped
    return deco


Registrar = Callable[[Any], None]
_EXTRA: list[Registrar] = []


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="entropy-core YAML (default: $QRNG_CONFIG, /etc/qrng/qrng.yaml, built-in)")
    p.add_argument("--fault", action="append", metavar="KIND[@START]",
                   help="inject a simulator fault (stuck_at, repeating_pattern, saturation, low_entropy, "
                        "bias_drift, throughput_drop, supply_failure, tamper) from sample START")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qrng", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("bytes", help="print N random bytes from the pipeline (fails closed)")
    b.add_argument("n", type=int, metavar="N")
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
    h.add_argument("--json", action="store_true")
    _add_common(h)
    h.set_defaults(func=cmd_health)
    s = sub.add_parser("sources", help="list source kinds and the configured one")
    s.add_argument("--json", action="store_true")
    s.add_argument("--config")
    s.set_defaults(func=cmd_sources)
    at = sub.add_parser("attestation", help="device attestation material")
    ats = at.add_subparsers(dest="attestation_command", required=True, metavar="ACTION")
    ai = ats.add_parser("init-simulator", help="create the TEST-ONLY manufacturer CA and the simulator's device key")
    ai.add_argument("--dir", required=True)
    ai.add_argument("--serial", default="SIM-0001")
    ai.set_defaults(func=cmd_attestation_init)
    for register in _registrars():
        register(sub)
    return ap


def _registrars() -> list[Registrar]:
    regs: list[Registrar] = []
    import importlib
    for mod in ("qrng.estimate.cli", "qrng.audit.cli", "ceremony.cli", "pkcs11_provider.cli"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and mod.startswith(exc.name):
                continue
            raise
        regs.append(m.register)
    return regs


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import ConfigError, EntropyError
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
        return rc
    except ConfigError as exc:
        print(f"qrng: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EntropyError as exc:
        print(f"qrng: entropy failure, no output produced: {exc}", file=sys.stderr)
        return EXIT_ENTROPY
    except (OSError, ValueError) as exc:
        print(f"qrng: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
