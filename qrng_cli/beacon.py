"""``qrng beacon``: a witnessed QRNG randomness beacon (qrng/beacon.py for the pulse format).

run: every --period seconds a pulse from the QRNG pipeline, signed by the beacon key (a file key, or a key held in an
HSM through a ceremony profile), appended to a signed audit log, its checkpoint cosigned by the witnesses of a C2SP
tlog-policy, and the log published as C2SP tiles. A failed health state never emits a pulse: the next pulse says
there was a gap. verify: pulses checked offline from the log or its tiles: signatures, chaining, precommitments, link
values, the log's signed checkpoint and the witness quorum.

Beacon values are public: never use them as secret keys or as seeds of secrets.

Exit codes: 0 ran / verified; 1 verification failed; 2 usage or I/O error; 3 entropy failure at start."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .common import ExitCode

__all__ = ["register"]


def _beacon_signer(args: argparse.Namespace) -> Any:
    from qrng.audit.note import hsm_signer, load_ed25519_signer
    if args.key:
        return load_ed25519_signer(Path(args.key).read_text())
    if not (args.hsm_profile and args.profile and args.key_label and args.name):
        raise ValueError("give --key FILE, or --hsm-profile, --profile, --key-label and --name for a key in an HSM")
    from ceremony.hsm import Hsm, read_pin
    from ceremony.model import load_profile
    prof = load_profile(Path(args.hsm_profile), args.profile)
    hsm = Hsm(prof, read_pin(prof))
    der, sign = hsm.log_signer(args.key_label)
    return hsm_signer(args.name, der, sign)


def _pulses_in(entries: list[bytes]) -> list[Any]:
    from qrng.beacon import Pulse
    out = []
    for e in entries:
        rec = json.loads(e)
        if rec.get("event") == "beacon.pulse":
            out.append(Pulse.from_dict(rec["data"]))
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from qrng.audit.log import AuditLog
    from qrng.audit.merkle import TreeLevels
    from qrng.audit.note import load_ed25519_signer
    from qrng.audit.verify import parse_log
    from qrng.beacon import next_pulse
    from qrng.config import load_config
    from qrng.errors import EntropyError
    from qrng.pipeline import Pipeline
    if not math.isfinite(args.period) or not 0.5 <= args.period <= 86400:
        raise ValueError(f"--period {args.period}: seconds, from 0.5 to 86400")
    if args.pulses < 0:
        raise ValueError(f"--pulses {args.pulses}: a count, 0 for no limit")
    signer = _beacon_signer(args)
    log_signer = load_ed25519_signer(Path(args.log_key).read_text())
    policy = None
    if args.policy:
        from qrng.audit.policy import load_policy
        policy = load_policy(args.policy)
    state_dir = Path(args.state)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = state_dir / "next-local-random-value"  # the precommitted value: secret until its pulse is published
    cfg = load_config(args.config)
    pipeline = Pipeline(cfg)
    pipeline.startup()
    log_path = Path(args.log)
    history = _pulses_in(parse_log(log_path.read_bytes()).entries) if log_path.exists() else []
    next_local = bytes.fromhex(secret.read_text()) if secret.exists() and history else None
    broken = bool(history) and next_local is None
    gap = False
    period_ms = int(args.period * 1000)
    stop = {"now": False}

    def on_term(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    emitted = 0
    with AuditLog(log_path, log_signer.name, log_signer) as log:
        while not stop["now"] and (args.pulses == 0 or emitted < args.pulses):
            now = time.time()
            slot = (int(now * 1000) // period_ms + 1) * period_ms
            time.sleep(max(0.0, slot / 1000 - time.time()))
            when = datetime.datetime.fromtimestamp(slot / 1000, datetime.UTC)
            try:
                if pipeline.failed:
                    pipeline = Pipeline(cfg)
                    pipeline.startup()
                local = next_local if next_local is not None else pipeline.extracted(64)
                upcoming = pipeline.extracted(64)
            except EntropyError as exc:  # no pulse from a failed health state: a gap, said by the next pulse (the
                # precommitted value, extracted while healthy, is kept for it)
                print(f"beacon: no pulse at {when.isoformat()}: {exc}", file=sys.stderr, flush=True)
                gap = True
                continue
            if history and _late(history[-1], when, period_ms):
                gap = True
            pulse = next_pulse(history, when, period_ms, local, upcoming, signer, gap=gap, precommit_broken=broken)
            tmp = secret.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(upcoming.hex())
                f.flush()
                os.fsync(f.fileno())
            with log.batch():
                log.append("beacon", "beacon", "beacon.pulse", data=pulse.to_dict())
                note = log.checkpoint()
            tmp.replace(secret)  # committed with the pulse that precommits to it
            history.append(pulse)
            next_local, gap, broken = upcoming, False, False
            emitted += 1
            said = ""
            if policy is not None:
                from qrng.audit.note import parse_note
                from qrng.audit.witness_client import collect_cosignatures
                view = parse_log(log_path.read_bytes())
                tree = TreeLevels(view.leaf_hashes)
                lines, outcomes, met = collect_cosignatures(note, policy, _proofs(tree),
                                                            timeout=min(10.0, args.period))
                for ln in lines:
                    log.add_cosignature(log.size, next(s for s in parse_note(note + ln)[1] if s.line() == ln))
                said = f", witnessed by {sum(o.status == 'cosigned' for o in outcomes)}" + ("" if met else
                                                                                            " (quorum NOT met)")
            if args.tiles:
                from qrng.audit.tilesio import publish
                log._sync()  # noqa: SLF001 - the tiles read the file
                publish(log_path, Path(args.tiles))
            print(f"pulse {pulse.pulse_index} at {pulse.time_stamp}: output {pulse.output_value[:32]}... status "
                  f"{pulse.status_code}{said}", flush=True)
    pipeline.close()
    return ExitCode.OK


def _proofs(tree: Any) -> Any:
    """Consistency proofs to the current tree (bound now: a witness answering late never sees a newer tree)."""
    return lambda old: tree.consistency_proof(old, tree.size)


def _late(prev: Any, when: datetime.datetime, period_ms: int) -> bool:
    from qrng.beacon import _when
    return (when - _when(prev)).total_seconds() * 1000 > 1.5 * period_ms


def cmd_verify(args: argparse.Namespace) -> int:
    from qrng.audit.note import Verifier
    from qrng.audit.policy import load_policy
    from qrng.audit.verify import key_names
    from qrng.beacon import BeaconError, verify_pulses
    key = Verifier.parse(Path(args.key).read_text().strip() if Path(args.key).exists() else args.key)
    log_key = Verifier.parse(Path(args.log_key).read_text().strip() if Path(args.log_key).exists() else args.log_key)
    policy = load_policy(args.policy) if args.policy else None
    witnesses = policy.witness_keys() if policy else []
    if args.log.startswith(("http://", "https://")) or (Path(args.log) / "checkpoint").is_file():
        from qrng.audit.tilesio import TileSource, verify_tiles
        src = TileSource(args.log)
        r = verify_tiles(src, [log_key], witnesses, 0)
        # the pulses are read from the very bytes verify_tiles verified, never from a second fetch (a server could
        # answer differently the second time)
        cosigners, entries, size = r.cosigners, list(r.entry_bytes), r.checkpoint.size
    else:
        from qrng.audit.verify import parse_log, verify_log
        data = Path(args.log).read_bytes()
        res = verify_log(data, [log_key], witnesses, 0)
        cosigners, entries, size = res.cosigners, parse_log(data).entries[:res.latest.size], res.latest.size
    if policy is not None and not policy.met_by(cosigners):
        from qrng.audit.errors import TamperedError
        raise TamperedError(f"the log's checkpoint (size {size}) lacks the witness quorum of {args.policy}")
    pulses = _pulses_in(entries)
    if not pulses:
        raise BeaconError("the log holds no pulse")
    lo = args.first or pulses[0].pulse_index
    hi = args.last or pulses[-1].pulse_index
    chosen = [p for p in pulses if lo <= p.pulse_index <= hi]
    if not chosen:
        raise BeaconError(f"no pulse numbered {lo}..{hi} in the log")
    start = pulses.index(chosen[0])
    verify_pulses(pulses[:start + len(chosen)], key)  # from the chain's first pulse: links are recomputed
    out = {"status": "verified", "pulses": len(chosen), "first": chosen[0].pulse_index, "last": chosen[-1].pulse_index,
           "log_size": size, "cosigners": list(key_names(cosigners)),
           "gaps": [p.pulse_index for p in chosen if p.status_code & 2]}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"verified pulses {out['first']}..{out['last']} ({out['pulses']}): signatures, chaining, "
              f"precommitments, link values; in the log at size {size}, cosigned by "
              f"{', '.join(key_names(cosigners)) or 'no witness'}")
    return 0


def register(sub: Any) -> None:
    b = sub.add_parser("beacon", help="a witnessed QRNG randomness beacon: run it, verify its pulses",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = b.add_subparsers(dest="beacon_command", required=True, metavar="ACTION")
    r = s.add_parser("run", help="emit a pulse every --period seconds")
    r.add_argument("--config", help="entropy-core YAML of the QRNG (default: $QRNG_CONFIG, /etc/qrng/qrng.yaml)")
    r.add_argument("--key", help="the beacon's Ed25519 signing key file (`qrng audit keygen NAME`)")
    r.add_argument("--hsm-profile", help="or: a ceremony profiles file, whose --profile opens the HSM ...")
    r.add_argument("--profile", help="... this profile in it ...")
    r.add_argument("--key-label", help="... where the beacon key has this label (Ed25519 or ECDSA P-256) ...")
    r.add_argument("--name", help="... and this name (the beacon's key name)")
    r.add_argument("--log", required=True, help="the signed audit log the pulses go into (JSON lines)")
    r.add_argument("--log-key", required=True, help="the log's Ed25519 key file; its name is the log's origin")
    r.add_argument("--policy", help="a C2SP tlog-policy file: each pulse's checkpoint is cosigned by its witnesses")
    r.add_argument("--tiles", metavar="DIR", help="publish the log as C2SP tiles here after each pulse")
    r.add_argument("--state", required=True, metavar="DIR",
                   help="keeps the precommitted next local random value (secret until published; mode 600)")
    r.add_argument("--period", type=float, default=60.0, help="seconds between pulses (default 60)")
    r.add_argument("--pulses", type=int, default=0, help="stop after this many pulses (default: run until SIGTERM)")
    r.set_defaults(func=cmd_run)
    v = s.add_parser("verify", help="verify pulses offline from the log or its tiles")
    v.add_argument("log", help="the beacon's audit log, or its tiles (URL prefix or folder)")
    v.add_argument("--key", required=True, help="the beacon's verifier key (string or file)")
    v.add_argument("--log-key", required=True, help="the log's verifier key (string or file)")
    v.add_argument("--policy", help="C2SP tlog-policy: the witness quorum the log's checkpoint must carry")
    v.add_argument("--first", type=int, help="first pulse index to verify (default: the first)")
    v.add_argument("--last", type=int, help="last pulse index to verify (default: the last)")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=cmd_verify)
