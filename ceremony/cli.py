"""``qrng ceremony``: plan, run and verify key ceremonies.

Exit codes: 0 done; 1 a step failed or verification failed; 2 the script, policy or profile is wrong
(nothing was touched); 3 entropy failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _load(args: argparse.Namespace) -> Any:
    from .model import load_policy, load_profile, load_script
    from .plan import make_plan
    script = load_script(args.script, getattr(args, "output", None))
    policy = load_policy(script.policy)
    profile = load_profile(script.profiles, args.profile)
    return make_plan(script, policy, profile)


def cmd_plan(args: argparse.Namespace) -> int:
    plan = _load(args)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(plan.render())
        print("\nplan is valid: script, policy and profile agree; nothing was touched")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .engine import Ceremony
    from .hsm import Hsm, read_pin
    plan = _load(args)  # every check before any HSM session is opened

    def progress(msg: str) -> None:
        if args.json:
            print(json.dumps({"progress": msg}), flush=True)
        else:
            print(msg, file=sys.stderr, flush=True)

    hsm = Hsm(plan.profile, read_pin(plan.profile))
    try:
        result = Ceremony(plan, hsm, progress).run()
    finally:
        hsm.close()
    out = {"status": "completed", "output": str(result.output), "log": str(result.log), "log_key": result.log_key,
           "steps_run": result.steps_run, "steps_skipped": result.steps_skipped, "tree_size": result.tree_size}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"ceremony completed: {len(result.steps_run)} step(s) run, {len(result.steps_skipped)} already done")
        print(f"  output  {result.output}\n  log     {result.log} ({result.tree_size} entries)")
        print(f"  verify  qrng audit verify {result.log} --key {result.output / 'log.pub'}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Offline check of a ceremony folder: the audit log, every provenance statement, every output digest."""
    from qrng.audit.note import Verifier
    from qrng.audit.verify import parse_log, verify_log
    from qrng.dsse import open_envelope

    from .provenance import PAYLOAD_TYPE
    folder = Path(args.folder)
    key = Verifier.parse((Path(args.key) if args.key else folder / "log.pub").read_text())
    witnesses = [Verifier.parse(Path(w).read_text() if Path(w).exists() else w) for w in args.witness or []]
    data = (folder / "audit.log").read_bytes()
    r = verify_log(data, [key], witnesses, len(witnesses))
    files: dict[str, str] = {}
    import hashlib
    for line in parse_log(data).entries:
        files.update(json.loads(line).get("files", {}))
    for name, digest in files.items():
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
            raise ValueError(f"{name} does not match the digest recorded in the log")
    rederived = 0
    for line in parse_log(data).entries:
        e = json.loads(line)
        d = e.get("data", {})
        if e.get("event") != "entropy.extracted" or not d.get("toeplitz_n"):
            continue
        import numpy as np

        from qrng.extract import rederive
        raw_name = next(n for n in e["files"] if not n.endswith(".seed"))
        samples = np.frombuffer((folder / raw_name).read_bytes(), dtype=np.uint8)
        again = rederive(samples, d["bits_per_sample"], (folder / (raw_name + ".seed")).read_bytes(),
                         d["toeplitz_n"], d["toeplitz_m"])
        if hashlib.sha256(again).hexdigest() != d["extracted_sha256"]:
            raise ValueError(f"re-running the extraction over {raw_name} does not give the logged output")
        rederived += 1
    provs = sorted(folder.glob("*.provenance.json"))
    for p in provs:
        open_envelope(json.loads(p.read_text()), PAYLOAD_TYPE, key.verify)
    print(f"verified: log ({r.entries} entries, {r.checkpoints} checkpoints, cosigned by "
          f"{', '.join(r.cosigners) or 'no witness'}), {len(files)} outputs, {len(provs)} provenance statements, "
          f"{rederived} extraction(s) re-run from the retained samples")
    return 0


def _run(fn: Any) -> Any:
    from qrng.audit.errors import AuditError
    from qrng.cli import guard
    from qrng.dsse import EnvelopeError
    from qrng.errors import EntropyError

    from .errors import CeremonyError, PolicyViolation, ScriptError
    return guard([
        ((ScriptError, PolicyViolation), 2, lambda e, a: f"qrng ceremony: {e}\n(nothing was touched)"),
        (EntropyError, 3, lambda e, a: f"qrng ceremony: entropy failure: {e}"),
        ((CeremonyError, AuditError, EnvelopeError, ValueError), 1, lambda e, a: f"qrng ceremony: {e}"),
        (OSError, 2, lambda e, a: f"qrng ceremony: {e}"),
    ])(fn)


def register(sub: Any) -> None:
    ap = sub.add_parser("ceremony", help="plan, run and verify key ceremonies", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    s = ap.add_subparsers(dest="ceremony_command", required=True, metavar="ACTION")
    for name, fn, helptext in (("plan", cmd_plan, "validate script, policy and profile; print the plan"),
                               ("run", cmd_run, "check everything, then run (or resume) the ceremony")):
        p = s.add_parser(name, help=helptext)
        p.add_argument("script")
        p.add_argument("--profile", required=True, help="profile name (rehearsal, production, ...)")
        p.add_argument("--output", help="override the script's output folder")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=_run(fn))
    v = s.add_parser("verify", help="verify a ceremony folder offline: log, outputs, provenance")
    v.add_argument("folder")
    v.add_argument("--key", help="log verifier key file (default: FOLDER/log.pub)")
    v.add_argument("--witness", action="append", help="witness key (file or string); repeatable")
    v.set_defaults(func=_run(cmd_verify))
