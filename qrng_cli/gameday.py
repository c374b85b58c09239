"""``qrng gameday exposure``: the key-rotation decision of the runbooks (docs/runbooks/), made mechanically.

Given ceremony audit logs and an exposure window (from a fault's onset to its detection), it lists every key whose
ceremony drew entropy in the window or which was generated in it, from the signed log (ceremony/exposure.py).
Each log is verified with the log key the operator gives (``--key``); a log read without one is listed all the
same, says "not verified", and the command then exits 4: a list from an unverified log is not a decision."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qrng.errors import UsageError

from .common import ExitCode

__all__ = ["register"]


def _entries(path: Path, keys: list[str]) -> tuple[list[dict[str, Any]], bool]:
    """The log's entries, and whether they were verified with the given keys (a failure raises)."""
    from transparency.keys import read_key, signature_ids
    from transparency.verify import _with_cosignatures, parse_log, verify_log
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    view = parse_log(data)
    verified = False
    if keys:
        ids = signature_ids(_with_cosignatures(c) for c in view.checkpoints)
        verify_log(data, [k for v in keys for k in read_key(v, "log", ids, "--key")], view=view)
        verified = True
    return [json.loads(x) for x in view.entries], verified


def cmd_exposure(args: argparse.Namespace) -> int:
    from ceremony.exposure import exposed_keys, parse_time
    try:
        start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if end < start:
        raise UsageError(f"--to {args.end} is before --from {args.start}")
    found, unverified = [], []
    for log in map(Path, args.log):
        entries, verified = _entries(log, args.key or [])
        if not verified:
            unverified.append(str(log))
        found += [(str(log), verified, k) for k in exposed_keys(entries, start, end)]
    if args.json:
        print(json.dumps({"from": args.start, "to": args.end, "unverified_logs": unverified, "keys": [
            {"log": where, "log_verified": ok, **k.__dict__} for where, ok, k in found]}, indent=2))
    else:
        print(f"exposure window {start.isoformat()} .. {end.isoformat()}: {len(found)} key(s) to revoke and re-issue")
        for where, ok, k in found:
            print(f"  {k.ceremony}: {k.label} ({k.key}, CKA_ID {k.key_id}, public key SHA-256 "
                  f"{k.public_key_sha256[:16]}...) in {where}{'' if ok else ' [log NOT VERIFIED]'}\n    {k.reason}")
    if unverified:
        print(f"not verified (no --key): {', '.join(unverified)}; this list is not a decision until they are",
              file=sys.stderr)
        return ExitCode.UNVERIFIED
    return ExitCode.OK


def register(sub: Any) -> None:
    g = sub.add_parser("gameday", help="game day tools: which keys an exposure window touches",
                       description=__doc__)
    actions = g.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = actions.add_parser("exposure", help="the keys whose ceremony drew entropy, or which were generated, in a "
                                            "window (the runbooks' key-rotation decision)", description=__doc__)
    e.add_argument("log", nargs="+", help="ceremony audit logs (each ceremony folder's audit.log)")
    e.add_argument("--from", dest="start", required=True, metavar="TIME",
                   help="the window's start: the fault's onset, ISO 8601 (UTC unless a zone is given)")
    e.add_argument("--to", dest="end", required=True, metavar="TIME",
                   help="the window's end: when the fault was detected, ISO 8601")
    e.add_argument("--key", action="append",
                   help="the logs' key (a verifier key, its file, or a PEM public key); repeat for several; "
                        "without it the logs are read unverified and the command exits 4")
    e.add_argument("--json", action="store_true", help="print the findings as JSON")
    e.set_defaults(func=cmd_exposure)
