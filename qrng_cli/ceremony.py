"""``qrng ceremony``: plan, run and verify key ceremonies, and print their papers.

  plan SCRIPT --profile P [--sheet run-sheet.pdf]   check everything; print the plan and the run sheet to print
  run SCRIPT --profile P                            run or resume; writes transcript.html and .pdf in the folder
  verify FOLDER --key KEY [--witness KEY ...] [--report report.pdf]
                                                    the auditor's offline check, and its report

Exit codes: 0 done (verify: verified); 1 a step failed or verification failed; 2 the script, policy or profile
is wrong (nothing was touched), or a paper cannot be written; 3 entropy failure; 4 (verify) consistent but not
independently verified: a check the recorded policy asks for was not made with keys the auditor gave.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qrng import __version__

from .common import SIGINT_EXIT, SIGPIPE_EXIT, ExitCode, Interrupted, raise_on_sigterm

__all__ = ["register"]


def _load(args: argparse.Namespace) -> Any:
    from ceremony.loader import load_policy, load_profile, load_script
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
    progress = _progress_so_far(plan)
    if args.json:
        print(json.dumps({**plan.to_dict(), "sheet": str(sheet) if sheet else None, "progress": progress}, indent=2))
    else:
        print(plan.render())
        print("\nplan is valid: script, policy and profile agree; nothing was touched")
        if progress is not None:
            print(progress["summary"])
        if sheet is not None:
            print(f"run sheet: {sheet} (print it; people initial each step and sign the last page)")
    return 0


def _same_command(args: argparse.Namespace) -> str:
    import shlex
    return shlex.join(["qrng", "ceremony", "run", args.script, "--profile", args.profile,
                       *(["--output", args.output] if args.output else [])])


def _progress_so_far(plan: Any) -> dict[str, Any] | None:
    """For a ceremony already begun: which steps its log records as done and where ``run`` resumes. Read from the
    log's records up to its last checkpoint (plan opens no HSM and holds no log key: ``run`` verifies the log's
    signatures before it resumes)."""
    from ceremony.resume import resume_state
    from transparency.errors import AuditError
    log = plan.script.output / "audit.log"
    if not log.exists():
        return None
    try:
        from transparency.verify import parse_log
        data = log.read_bytes()
        view = parse_log(data[:data.rfind(b"\n") + 1])
        signed = view.checkpoints[-1].position if view.checkpoints else 0
        import hashlib
        state = resume_state(list(view.entries[:signed]), hashlib.sha256(plan.script.path.read_bytes()).hexdigest(),
                             str(plan.script.path))
    except (AuditError, OSError, ValueError, KeyError) as exc:
        return {"done": [], "next": None, "summary": f"{log} exists but cannot be read as this ceremony's log: {exc}"}
    ids = [s.id for s in plan.script.steps]
    done = [i for i in ids if i in state.completed]
    nxt = next((i for i in ids if i not in state.completed), None)
    if nxt is None:
        summary = f"this ceremony's log ({log}) records every step as done; `run` only completes what is missing"
    else:
        summary = (f"this ceremony has begun ({log}): {len(done)} of {len(ids)} steps done"
                   + (f" ({', '.join(done)})" if done else "") + f"; `run` will resume at step {nxt}"
                   + (" (started before, it is redone)" if nxt in state.started else ""))
    return {"done": done, "next": nxt, "summary": summary}


def cmd_run(args: argparse.Namespace) -> int:
    """Run or resume. An interruption (Ctrl-C, SIGTERM, or standard output or error closing: a pager quit, ``|
    head``, a dead ``tee``) stops the run like Ctrl-C: no step is logged as failed, the log keeps everything up to
    its last checkpoint, the exit code is 130, 143 or 141 (never 0), and running the same command resumes."""
    from ceremony.runner import Ceremony
    from qrng.hsm import HsmSession, read_pin
    plan = _load(args)  # every check before any HSM session is opened
    resume = f"the ceremony can be resumed by running the same command: {_same_command(args)}"

    def progress(msg: str) -> None:
        try:
            if args.json:
                print(json.dumps({"progress": msg}), flush=True)
            else:
                print(msg, file=sys.stderr, flush=True)
        except (OSError, ValueError):  # EPIPE, or a closed stream: whoever watched the run is gone
            raise Interrupted("the output was closed", SIGPIPE_EXIT, resume) from None

    papers = tuple(f".{p}" for p in args.papers.split(",") if p)
    previous = raise_on_sigterm()
    hsm = HsmSession(plan.profile.hsm, read_pin(plan.profile.hsm))
    try:
        result = Ceremony(plan, hsm, progress, papers).run()
    except Interrupted as exc:
        raise Interrupted(exc.reason, exc.code, resume) from None
    except KeyboardInterrupt:
        raise Interrupted("Ctrl-C", SIGINT_EXIT, resume) from None
    finally:
        hsm.close()
        import signal
        signal.signal(signal.SIGTERM, previous)
    written = [str(result.output / f"transcript{p}") for p in papers if (result.output / f"transcript{p}").exists()]
    out = {"status": "completed", "output": str(result.output), "log": str(result.log), "log_key": result.log_key,
           "steps_run": result.steps_run, "steps_skipped": result.steps_skipped, "tree_size": result.tree_size,
           "transcript": written, "verify_command": _verify_command(plan, result)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"ceremony completed: {len(result.steps_run)} step(s) run, {len(result.steps_skipped)} already done")
        print(f"  output  {result.output}\n  log     {result.log} ({result.tree_size} entries)")
        for path in written:
            print(f"  paper   {path}")
        print(f"  verify  {_verify_command(plan, result)}")
    return 0


def _verify_command(plan: Any, result: Any) -> str:
    """The complete command an auditor runs: the log key and every witness key given explicitly (the auditor
    should take them from the ceremony's published records, not from the folder)."""
    import shlex

    from transparency.note import ALG_COSIGNATURE_V1, load_ed25519_signer
    parts = ["qrng", "ceremony", "verify", str(result.output), "--key", result.log_key]
    if plan.profile.witness_policy:
        parts += ["--policy", str(plan.profile.witness_policy)]
    elif any(s.type == "witness_signoff" for s in plan.script.steps):
        for name in plan.script.witnesses:
            key_file = plan.profile.witness_keys.get(name)
            if key_file:
                w = load_ed25519_signer(Path(key_file).read_text(), ALG_COSIGNATURE_V1)
                parts += ["--witness", str(w.verifier)]
    return shlex.join(parts)


def _read_log(folder: Path) -> Any:
    """audit.log's bytes and their parse (transparency.verify.LogView), read once for the whole verification; None
    when it cannot be read or parsed (the verifier then names what is wrong)."""
    from transparency.errors import AuditError
    from transparency.verify import parse_log
    try:
        data = (folder / "audit.log").read_bytes()
        return data, parse_log(data)
    except (OSError, AuditError):
        return None


def _folder_keys(args: argparse.Namespace, folder: Path, log: Any) -> tuple[list[Any], list[Any], Any, str]:
    """(log keys, witness keys, the auditor's tlog-policy or None, where the log key came from). Keys are read as
    the auditor gave them: verifier strings, files, or PEM public keys bound to the names the log's signature lines
    use (transparency.keys)."""
    from transparency.errors import FormatError
    from transparency.keys import read_key, signature_ids
    from transparency.verify import _with_cosignatures
    # without a readable log, the verifier names what is wrong with it; the keys are read regardless
    ids = signature_ids(_with_cosignatures(c) for c in log[1].checkpoints) if log is not None else frozenset()
    if args.key and args.trust_folder_key:
        raise FormatError("give either --key or --trust-folder-key, not both")
    if args.key:
        keys = [k for v in args.key for k in read_key(v, "log", ids, "--key")]
        source = ", ".join(f"--key {v}" if Path(v).exists() else "--key <verifier key>" for v in args.key)
    elif args.trust_folder_key:
        keys = read_key(str(folder / "log.pub"), "log", ids, "the folder's log key")
        source = str(folder / "log.pub")
    else:
        raise FormatError(f"give the log's key with --key (a verifier key or a PEM public key from the ceremony's "
                          f"published records). --trust-folder-key uses {folder / 'log.pub'} instead, and the "
                          "verdict is then at best 'not independently verified' (exit 4)")
    witnesses = [k for v in args.witness or [] for k in read_key(v, "witness", ids, "--witness")]
    policy = None
    if args.policy:
        from transparency.policy import load_policy
        policy = load_policy(args.policy)
        witnesses += [k for k in policy.witness_keys() if k not in witnesses]
    return keys, witnesses, policy, source


def cmd_verify(args: argparse.Namespace) -> int:
    """Offline check of a ceremony folder: the audit log, witnesses, every output digest, extractions, provenance,
    papers. Exit 0 only when every check the recorded policy asks for was made with keys the auditor gave."""
    from ceremony.verify import HOW, Check, verify_folder
    from transparency.verdict import NOT_CHECKED
    report = _paper_path(args.report, "--report")
    folder = Path(args.folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    log = _read_log(folder)  # read and parsed once for the keys, the verification and the report
    keys, witnesses, policy, source = _folder_keys(args, folder, log)
    checks: list[Check] = []
    files: list[tuple[str, str, str]] = []
    try:
        r = verify_folder(folder, keys, witnesses, key_from_auditor=not args.trust_folder_key, key_source=source,
                          witness_policy=policy, record=checks.append,
                          seen=lambda name, digest: files.append((name, digest, "matches")), log=log)
    except Exception as exc:
        failed = next((name for name in HOW if name not in {c.name for c in checks}), None)
        if failed is not None:
            checks.append(Check(failed, HOW[failed], "failed", str(exc)))
        exc.checks = tuple(checks)  # type: ignore[attr-defined]  # for --json (qrng_cli.common.report)
        if report is not None:
            _write_paper(report, _audit_report(folder, keys, witnesses, checks, files, "failed", log), args.force)
            print(f"auditor's report: {report}", file=sys.stderr)
        if not args.json:
            for c in checks:
                print(c.line())
        raise
    complete = r.verdict.complete
    outcome = "verified" if complete else "not independently verified"
    if report is not None:
        _write_paper(report, _audit_report(folder, keys, witnesses, checks, files, outcome, log), args.force)
    if args.json:
        print(json.dumps({"status": "verified" if complete else "unverified",
                          "exit_code": 0 if complete else 4, "entries": r.entries,
                          "checkpoints": r.checkpoints, "cosigners": list(r.cosigners), "outputs": r.outputs,
                          "provenance": r.provenance, "extractions_rerun": r.extractions_rerun,
                          "report": str(report) if report else None, "checks": [c.to_dict() for c in checks]},
                         indent=2))
    else:
        for c in checks:
            print(c.line())
        if complete:
            print(f"verified: every check the recorded policy asks for was made with the keys given and passed "
                  f"(log: {r.entries} entries, {r.checkpoints} checkpoints; cosigned by "
                  f"{', '.join(r.cosigners) or 'no witness'}; {r.outputs} outputs, {r.provenance} provenance "
                  f"statements, {r.extractions_rerun} extraction(s) re-run from the retained samples)")
        else:
            missing = [c.name for c in checks if c.required and c.result == NOT_CHECKED]
            print(f"NOT INDEPENDENTLY VERIFIED (exit 4): nothing failed, but {', '.join(missing)} not checked; "
                  "this is not a pass", file=sys.stderr)
        if report is not None:
            print(f"auditor's report: {report}")
    return 0 if complete else ExitCode.UNVERIFIED


def _audit_report(folder: Path, keys: list[Any], witnesses: list[Any], checks: list[Any],
                  files: list[tuple[str, str, str]], outcome: str, log: Any) -> Any:
    """The report's cover and checkpoint come from the log only where it verified; otherwise only what was
    asked for is shown."""
    import datetime

    from ceremony.papers.record import checkpoint_facts
    from ceremony.papers.report import AuditReport
    from ceremony.papers.vocabulary import Fact
    from transparency.verify import key_names, verify_log
    ceremony, simulator, checkpoint = folder.name, False, None
    if outcome != "failed" and log is not None:
        data, view = log
        checkpoint = checkpoint_facts(verify_log(data, keys, witnesses, 0, view=view))
        first = json.loads(data.split(b"\n", 1)[0])
        ceremony, simulator = first.get("ceremony", ceremony), bool(first.get("data", {}).get("simulator"))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    cover = (Fact("Folder", str(folder.resolve()), digest=True), Fact("Verified at", now),
             Fact("Verifier", f"qrng-ceremony {__version__} (qrng ceremony verify)"),
             Fact("Log key", ", ".join(str(k) for k in keys), digest=True),
             Fact("Witness keys given", ", ".join(key_names(witnesses)) or "none"))
    return AuditReport(ceremony, simulator, outcome, cover, checkpoint, tuple(checks), tuple(files))


def cmd_reference(args: argparse.Namespace) -> int:
    """The reference of every field of scripts, steps, policies and profiles, read off the parsers."""
    from ceremony.reference import DOC, build
    text, missing = build()
    if args.write_docs:
        from qrng.atomic import atomic_write
        atomic_write(DOC, text.encode(), overwrite=True)
        print(f"wrote {DOC}", file=sys.stderr)
    else:
        print(text, end="")
    for m in missing:
        print(f"qrng ceremony reference: incomplete: {m}", file=sys.stderr)
    return ExitCode.VERIFY_FAILED if missing else ExitCode.OK


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
    v = s.add_parser("verify", help="verify a ceremony folder offline: log, witnesses, outputs, provenance, papers",
                     description="Exit codes: 0 verified (every check the policy recorded in the log asks for was "
                                 "made with the keys given, and passed); 1 a check failed (named); 2 usage or I/O "
                                 "error; 4 consistent but not independently verified (nothing failed, but a "
                                 "required check was not made: each says 'not checked' and why).")
    v.add_argument("folder", help="the ceremony's output folder (holds audit.log and the outputs)")
    v.add_argument("--key", action="append",
                   help="the log's key, from the ceremony's published records: a verifier key (name+id+key), a file "
                        "holding one, or a PEM public key; repeatable. Required unless --trust-folder-key")
    v.add_argument("--trust-folder-key", action="store_true",
                   help="use FOLDER/log.pub as the log key. That proves nothing about who made the log (a folder "
                        "whose log and log.pub were replaced together passes), so the verdict is at best 'not "
                        "independently verified' (exit 4)")
    v.add_argument("--witness", action="append",
                   help="a witness's key: a verifier key (type 0x04 or 0x06), a file holding one, or a PEM public "
                        "key (Ed25519 or ML-DSA-44); repeatable. The quorum comes from the policy recorded in the "
                        "log; without witness keys the witness check is 'not checked'")
    v.add_argument("--policy", metavar="FILE",
                   help="a C2SP tlog-policy file: its witnesses are witness keys, and its quorum rule must hold as "
                        "well as the recorded quorum")
    v.add_argument("--report", metavar="FILE.html|FILE.pdf",
                   help="write the auditor's report: each check, how it was made and its result (also when a check "
                        "fails: the report then ends with the failed check)")
    v.add_argument("--force", action="store_true", help="replace an existing report file")
    v.add_argument("--json", action="store_true", help="print the result and each check as JSON")
    v.set_defaults(func=cmd_verify)
    r = s.add_parser("reference", help="every field of scripts, step types, policies and profiles: type, default, "
                                       "allowed values, what it does (docs/ceremony-reference.md)",
                     description="Print the reference of every field the ceremony's parsers read (read off the parsers "
                                 "while the shipped examples are parsed). Exit 1 when a field has no description.")
    r.add_argument("--write-docs", action="store_true", help="write docs/ceremony-reference.md instead of printing")
    r.set_defaults(func=cmd_reference)
