"""``qrng witness``: a C2SP tlog-witness (``serve``) and the log's side of the protocol (``collect``).

serve: POST <prefix>/add-checkpoint and GET <prefix>/<origin hash>/checkpoint, with durable per-log state; it never
cosigns a checkpoint inconsistent with one it cosigned before, across restarts. collect: send a log's latest signed
checkpoint to every witness of a C2SP tlog-policy file and add the cosignatures to the log (quorum from the policy).

Exit codes: 0 served / quorum met; 1 the quorum was not met; 2 usage or I/O error."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from pathlib import Path
from typing import Any

from qrng.asciinum import is_ascii_decimal
from qrng.errors import UsageError

from .common import ExitCode

__all__ = ["register"]


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not is_ascii_decimal(port) or not 0 <= int(port) < 65536:  # 0: any free port (said on stderr)
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:7380")
    return host.strip("[]"), int(port)


def _hsm_signer(args: argparse.Namespace) -> Any:
    """The witness key in an HSM (Ed25519, CKM_EDDSA), opened through a ceremony profile (qrng.hsm.open_signer:
    one signature at a time, from any of the server's threads)."""
    from ceremony.model import load_profile
    from qrng.hsm import open_signer
    from transparency.note import hsm_cosigner
    if not (args.hsm_profile and args.profile and args.name):
        raise UsageError("--key-label needs --hsm-profile, --profile and --name")
    hsm = open_signer(load_profile(Path(args.hsm_profile), args.profile).hsm, args.key_label)
    return hsm_cosigner(args.name, hsm.public_der, hsm.sign)


def cmd_serve(args: argparse.Namespace) -> int:
    from qrng.lockfile import hold
    from transparency.note import Verifier, load_witness_signer
    from transparency.witness_server import FileState, WitnessServer
    address = _address(args.listen)
    if bool(args.key) == bool(args.key_label):
        raise UsageError("give --key FILE, or --key-label with --hsm-profile, --profile and --name")
    signer = _hsm_signer(args) if args.key_label else load_witness_signer(Path(args.key).read_text())
    logs: dict[str, list[Verifier]] = {}
    for text in args.log:
        p = Path(text)
        key = Verifier.parse(p.read_text().strip() if p.exists() else text)
        logs.setdefault(key.name, []).append(key)  # the log's key name is its origin (tlog-policy)
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    with hold(state / "witness.lock", f"witness state {state}"):
        server = WitnessServer(address, args.prefix, signer, logs, FileState(state))

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        print(f"witness {signer.name} on http://{address[0]}:{server.server_address[1]}{server.prefix}/ for "
              + ", ".join(sorted(logs)), file=sys.stderr, flush=True)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return ExitCode.OK


def cmd_collect(args: argparse.Namespace) -> int:
    from transparency.log import AuditLog
    from transparency.merkle import TreeLevels
    from transparency.note import Checkpoint, parse_note
    from transparency.policy import load_policy
    from transparency.verify import _with_cosignatures, parse_log
    from transparency.witness_client import collect_cosignatures
    if not math.isfinite(args.timeout) or not 0.1 <= args.timeout <= 600:
        raise UsageError(f"--timeout {args.timeout}: seconds, from 0.1 to 600")
    policy = load_policy(args.policy)
    view = parse_log(Path(args.log).read_bytes())
    if not view.checkpoints:
        raise UsageError(f"{args.log}: no signed checkpoint to cosign")
    last = view.checkpoints[-1]
    tree = TreeLevels(view.leaf_hashes[:last.position])
    cp = Checkpoint.parse(parse_note(last.note)[0])
    lines, outcomes, met = collect_cosignatures(last.note, policy, lambda old: tree.consistency_proof(old, cp.size),
                                                timeout=args.timeout)
    from transparency.verify import signature_line_ids
    have = signature_line_ids(last.cosignatures)  # by (key name, key ID): two witnesses may share a key name
    with AuditLog(args.log, cp.origin) as log:
        for ln in lines:
            sigs = parse_note(_with_cosignatures(last) + ln)[1]
            sig = next(s for s in sigs if s.line() == ln)
            if (sig.name, sig.key_id) not in have:
                log.add_cosignature(cp.size, sig)
                have.add((sig.name, sig.key_id))
    out = {"tree_size": cp.size, "quorum_met": met,
           "witnesses": [{"name": o.name, "status": o.status, "detail": o.detail} for o in outcomes]}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for o in outcomes:
            print(f"{o.name}: {o.status.upper()} ({o.detail})")
        print(f"quorum {'met' if met else 'NOT met'} for tree size {cp.size}")
    return ExitCode.OK if met else ExitCode.VERIFY_FAILED


def register(sub: Any) -> None:
    w = sub.add_parser("witness", help="a C2SP tlog-witness (serve) and collecting cosignatures from witnesses",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = w.add_subparsers(dest="witness_command", required=True, metavar="ACTION")
    sv = s.add_parser("serve", help="serve the tlog-witness protocol over HTTP")
    sv.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to listen on (port 0: any free)")
    sv.add_argument("--key", help="the witness's private key file (`qrng audit keygen --witness [--mldsa44]`)")
    sv.add_argument("--hsm-profile", help="or a key in an HSM: a ceremony profiles file ...")
    sv.add_argument("--profile", help="... the profile in it that opens the token ...")
    sv.add_argument("--key-label", help="... the Ed25519 key's label on the token ...")
    sv.add_argument("--name", help="... and the witness's name (its key name)")
    sv.add_argument("--log", action="append", required=True, metavar="VKEY",
                    help="a log this witness cosigns: its verifier key (string or file); the key name is the "
                         "log's origin; repeatable")
    sv.add_argument("--state", required=True, metavar="DIR",
                    help="durable per-log state (the latest cosigned checkpoint); keep it, or retire the witness")
    sv.add_argument("--prefix", default="", help="URL path prefix (the submission prefix), e.g. /witness")
    sv.set_defaults(func=cmd_serve)
    c = s.add_parser("collect", help="send the log's latest checkpoint to the witnesses of a policy; add their "
                                     "cosignatures to the log")
    c.add_argument("log", help="the audit log (JSON lines)")
    c.add_argument("--policy", required=True, help="a C2SP tlog-policy file with witness URLs")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10; 2 retries)")
    c.add_argument("--json", action="store_true", help="print the outcome as JSON")
    c.set_defaults(func=cmd_collect)
