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
    from ceremony.model import load_policy, load_profile, load_script
    from ceremony.plan import make_plan
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
    from ceremony.hsm import Hsm, read_pin
    from ceremony.runner import Ceremony
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
    """Offline check of a ceremony folder: the audit log, every output digest, extractions, provenance."""
    from ceremony.verify import verify_folder
    from qrng.audit.note import Verifier
    folder = Path(args.folder)
    key = Verifier.parse((Path(args.key) if args.key else folder / "log.pub").read_text())
    witnesses = [Verifier.parse(Path(w).read_text() if Path(w).exists() else w) for w in args.witness or []]
    r = verify_folder(folder, key, witnesses)
    print(f"verified: log ({r.entries} entries, {r.checkpoints} checkpoints, cosigned by "
          f"{', '.join(r.cosigners) or 'no witness'}), {r.outputs} outputs, {r.provenance} provenance statements, "
          f"{r.extractions_rerun} extraction(s) re-run from the retained samples")
    return 0


def register(sub: Any) -> None:
    ap = sub.add_parser("ceremony", help="plan, run and verify key ceremonies", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    s = ap.add_subparsers(dest="ceremony_command", required=True, metavar="ACTION")
    for name, fn, helptext in (("plan", cmd_plan, "validate script, policy and profile; print the plan"),
                               ("run", cmd_run, "check everything, then run (or resume) the ceremony")):
        p = s.add_parser(name, help=helptext)
        p.add_argument("script", help="the ceremony script (YAML)")
        p.add_argument("--profile", required=True, help="profile name (rehearsal, production, ...)")
        p.add_argument("--output", help="override the script's output folder")
        p.add_argument("--json", action="store_true", help="print the plan or result as JSON (progress as JSON lines)")
        p.set_defaults(func=fn)
    v = s.add_parser("verify", help="verify a ceremony folder offline: log, outputs, provenance")
    v.add_argument("folder", help="the ceremony's output folder (holds audit.log, log.pub and the outputs)")
    v.add_argument("--key", help="log verifier key file (default: FOLDER/log.pub)")
    v.add_argument("--witness", action="append", help="witness key (file or string); repeatable")
    v.set_defaults(func=cmd_verify)
