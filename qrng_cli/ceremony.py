"""``qrng ceremony``: plan, run and verify key ceremonies, and print their papers.

  plan SCRIPT --profile P [--sheet run-sheet.pdf]   check everything; print the plan and the run sheet to print
  run SCRIPT --profile P                            run or resume; writes transcript.html and .pdf in the folder
  verify FOLDER [--report report.pdf]               the auditor's offline check, and its report

Exit codes: 0 done; 1 a step failed or verification failed; 2 the script, policy or profile is wrong
(nothing was touched), or a paper cannot be written; 3 entropy failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qrng import __version__

__all__ = ["register"]


def _load(args: argparse.Namespace) -> Any:
    from ceremony.model import load_policy, load_profile, load_script
    from ceremony.plan import make_plan
    script = load_script(args.script, getattr(args, "output", None))
    policy = load_policy(script.policy)
    profile = load_profile(script.profiles, args.profile)
    return make_plan(script, policy, profile)


def _paper_path(value: str | None, what: str) -> Path | None:
    """A paper's path, its format checked before any work (the suffix chooses HTML or PDF)."""
    if value is None:
        return None
    from ceremony.papers.render import PaperError, check_format
    path = Path(value)
    check_format(path, what)
    if not path.parent.is_dir():
        raise PaperError(f"{what} {path}: the folder {path.parent} does not exist")
    return path


def _write_paper(path: Path, doc: Any, force: bool) -> None:
    from ceremony.papers.render import render
    from qrng.atomic import atomic_write
    atomic_write(path, render(doc, path.suffix.lower(), __version__), overwrite=force)


def cmd_plan(args: argparse.Namespace) -> int:
    sheet = _paper_path(args.sheet, "--sheet")
    plan = _load(args)
    if sheet is not None:
        from ceremony.papers.sheet import run_sheet
        _write_paper(sheet, run_sheet(plan, plan.script.path.read_bytes(), plan.policy.path.read_bytes()),
                     args.force)
    if args.json:
        print(json.dumps({**plan.to_dict(), "sheet": str(sheet) if sheet else None}, indent=2))
    else:
        print(plan.render())
        print("\nplan is valid: script, policy and profile agree; nothing was touched")
        if sheet is not None:
            print(f"run sheet: {sheet} (print it; people initial each step and sign the last page)")
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

    papers = tuple(f".{p}" for p in args.papers.split(",") if p)
    hsm = Hsm(plan.profile, read_pin(plan.profile))
    try:
        result = Ceremony(plan, hsm, progress, papers).run()
    finally:
        hsm.close()
    written = [str(result.output / f"transcript{p}") for p in papers if (result.output / f"transcript{p}").exists()]
    out = {"status": "completed", "output": str(result.output), "log": str(result.log), "log_key": result.log_key,
           "steps_run": result.steps_run, "steps_skipped": result.steps_skipped, "tree_size": result.tree_size,
           "transcript": written}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"ceremony completed: {len(result.steps_run)} step(s) run, {len(result.steps_skipped)} already done")
        print(f"  output  {result.output}\n  log     {result.log} ({result.tree_size} entries)")
        for path in written:
            print(f"  paper   {path}")
        print(f"  verify  qrng ceremony verify {result.output}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Offline check of a ceremony folder: the audit log, every output digest, extractions, provenance."""
    from ceremony.verify import HOW, Check, verify_folder
    from qrng.audit.note import Verifier
    report = _paper_path(args.report, "--report")
    folder = Path(args.folder)
    key = Verifier.parse((Path(args.key) if args.key else folder / "log.pub").read_text())
    witnesses = [Verifier.parse(Path(w).read_text() if Path(w).exists() else w) for w in args.witness or []]
    checks: list[Check] = []
    files: list[tuple[str, str, str]] = []
    try:
        r = verify_folder(folder, key, witnesses, record=checks.append,
                          seen=lambda name, digest: files.append((name, digest, "matches")))
    except Exception as exc:
        if report is not None:
            failed = next(name for name in HOW if name not in {c.name for c in checks})
            checks.append(Check(failed, HOW[failed], "FAILED", str(exc)))
            _write_paper(report, _audit_report(folder, key, witnesses, checks, files, False), args.force)
            print(f"auditor's report: {report}", file=sys.stderr)
        raise
    if report is not None:
        _write_paper(report, _audit_report(folder, key, witnesses, checks, files, True), args.force)
    if args.json:
        print(json.dumps({"status": "verified", "entries": r.entries, "checkpoints": r.checkpoints,
                          "cosigners": list(r.cosigners), "outputs": r.outputs, "provenance": r.provenance,
                          "extractions_rerun": r.extractions_rerun, "report": str(report) if report else None,
                          "checks": [{"name": c.name, "result": c.result, "detail": c.detail} for c in checks]},
                         indent=2))
        return 0
    print(f"verified: log ({r.entries} entries, {r.checkpoints} checkpoints, cosigned by "
          f"{', '.join(r.cosigners) or 'no witness'}), {r.outputs} outputs, {r.provenance} provenance statements, "
          f"{r.extractions_rerun} extraction(s) re-run from the retained samples")
    if report is not None:
        print(f"auditor's report: {report}")
    return 0


def _audit_report(folder: Path, key: Any, witnesses: list[Any], checks: list[Any], files: list[tuple[str, str, str]],
                  passed: bool) -> Any:
    """The report's cover and checkpoint come from the log only where it verified; otherwise only what was
    asked for is shown."""
    import datetime

    from ceremony.papers.record import checkpoint_facts
    from ceremony.papers.report import AuditReport
    from ceremony.steps.base import Fact
    from qrng.audit.verify import verify_log
    ceremony, simulator, checkpoint = folder.name, False, None
    if passed:
        data = (folder / "audit.log").read_bytes()
        checkpoint = checkpoint_facts(verify_log(data, [key], witnesses, 0))
        first = json.loads(data.split(b"\n", 1)[0])
        ceremony, simulator = first.get("ceremony", ceremony), bool(first.get("data", {}).get("simulator"))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    cover = (Fact("Folder", str(folder.resolve()), digest=True), Fact("Verified at", now),
             Fact("Verifier", f"qrng-ceremony {__version__} (qrng ceremony verify)"),
             Fact("Log key", str(key), digest=True),
             Fact("Witness keys given", ", ".join(w.name for w in witnesses) or "none"))
    return AuditReport(ceremony, simulator, passed, cover, checkpoint, tuple(checks), tuple(files))


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
        if name == "plan":
            p.add_argument("--sheet", metavar="FILE.pdf|FILE.html",
                           help="also write the printable run sheet: a page per phase, a row per step (who acts, "
                                "what to say, do and compare), initials boxes, script and policy digests with PGP "
                                "words, sign-off page; the format follows the suffix")
            p.add_argument("--force", action="store_true", help="replace an existing run sheet file")
        else:
            p.add_argument("--papers", default="html,pdf", choices=("html,pdf", "html", "pdf", ""),
                           help="transcript formats written into the output folder after the run, from the verified "
                                "log (default: html,pdf; '' for none)")
    v = s.add_parser("verify", help="verify a ceremony folder offline: log, outputs, provenance")
    v.add_argument("folder", help="the ceremony's output folder (holds audit.log, log.pub and the outputs)")
    v.add_argument("--key", help="log verifier key file (default: FOLDER/log.pub)")
    v.add_argument("--witness", action="append", help="witness key (file or string); repeatable")
    v.add_argument("--report", metavar="FILE.html|FILE.pdf",
                   help="write the auditor's report: each check, how it was made and its result (also when a check "
                        "fails: the report then ends with the failed check)")
    v.add_argument("--force", action="store_true", help="replace an existing report file")
    v.add_argument("--json", action="store_true", help="print the result and each check as JSON")
    v.set_defaults(func=cmd_verify)
