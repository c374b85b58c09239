"""``qrng audit``: verify, prove, publish, check-proof, show, keygen, cosign. No HSM needed.

A log is a JSON-lines file, or a C2SP tlog-tiles log (an http(s) URL prefix or a folder, made by ``publish``):
``verify`` then checks every tile and entry bundle, ``prove`` fetches only the O(log n) tiles one entry needs.

Exit codes: 0 verified (every check asked for was made with keys the auditor gave, and passed); 1 tampered or
inconsistent (the first bad entry is named); 2 usage or I/O error; 4 consistent but not independently verified
(nothing failed, but a required check was not made, e.g. no witness keys while the log's recorded policy asks for
cosignatures: it says "not checked" and why).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrng.errors import UsageError
from transparency.errors import AuditError, FormatError, TamperedError
from transparency.verify import key_names

from .common import ExitCode, int_at_least

if TYPE_CHECKING:
    from transparency.note import Verifier

__all__ = ["register"]


def _read_key(value: str, role: str = "log", ids: Any = frozenset(), what: str = "--key") -> list[Verifier]:
    """A key as the auditor gave it: a verifier key string, a file holding one, or a PEM public key (bound to the
    names the log's signature lines use); a missing file says "no such file", naming it."""
    from transparency.keys import read_key
    return read_key(value, "witness" if role == "witness" else "log", ids, what)


def _keys(values: list[str] | None, role: str, ids: Any, what: str) -> list[Verifier]:
    out: list[Verifier] = []
    for v in values or []:
        out += [k for k in _read_key(v, role, ids, what) if k not in out]
    return out


def _state_file(state: Path, origin: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in origin)
    return state / f"{safe}.checkpoint"


def _is_tiles(where: str) -> bool:
    """A tiles log: an http(s) URL prefix, or a folder holding a C2SP tlog-tiles ``checkpoint``."""
    return where.startswith(("http://", "https://")) or (Path(where) / "checkpoint").is_file()


def _saved(state_dir: str | None, origin: str, keys: list[Verifier]) -> tuple[Any, Path | None]:
    """The checkpoint this auditor verified before (signature checked again), and where to save the next."""
    if not state_dir:
        return None, None
    from transparency.note import Checkpoint, verify_note
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    path = _state_file(state, origin)
    if not path.exists():
        return None, path
    return Checkpoint.parse(verify_note(path.read_text(), keys)[0]), path


def _save(path: Path | None, note: str) -> None:
    if path is not None:
        from qrng.atomic import atomic_write
        atomic_write(path, note.encode(), overwrite=True)  # fsync'd: the next run's rollback check reads it


def _tiles_origin(src: Any, keys: list[Verifier]) -> str:
    from transparency.note import Checkpoint, verify_note
    return Checkpoint.parse(verify_note(src.get("checkpoint").decode("utf-8", "replace"), keys)[0]).origin


def _auditor_keys(args: argparse.Namespace, notes: list[str]) -> tuple[list[Verifier], list[Verifier], Any]:
    """(log keys, witness keys, the tlog-policy given or None), as the auditor gave them. --policy FILE (C2SP
    tlog-policy): its logs are the log keys (unless --key), its witnesses witness keys, its quorum rule applies."""
    from transparency.keys import signature_ids
    ids = signature_ids(notes)
    policy = None
    keys = _keys(args.key, "log", ids, "--key")
    witnesses = _keys(args.witness, "witness", ids, "--witness")
    if getattr(args, "policy", None):
        from transparency.policy import load_policy
        policy = load_policy(args.policy)
        if not keys:
            keys = [k for k, _ in policy.logs]
            if not keys:
                raise UsageError(f"{args.policy}: lists no log; give --key")
        witnesses += [k for k in policy.witness_keys() if k not in witnesses]
    if not keys:
        raise UsageError("give --key (the log's verifier key or PEM public key, from the log's published records) "
                         "or --policy")
    return keys, witnesses, policy


def _origin_is_a_policy_log(args: argparse.Namespace, policy: Any, origin: str) -> None:
    """tlog-policy: a log's key name "MUST correspond to the log's origin line"."""
    if policy is not None and not args.key and origin not in {k.name for k, _ in policy.logs}:
        raise TamperedError(f"the checkpoint's origin {origin!r} is not the key name of a log in {args.policy}")


def _verdict(args: argparse.Namespace, out: dict[str, Any], checks: list[Any], summary: str) -> int:
    """Print the checks and the verdict; exit 0 only when every required check passed, 4 when one was not made."""
    from transparency.verdict import NOT_CHECKED, Verdict
    complete = Verdict(tuple(checks)).complete
    out = {"status": "verified" if complete else "unverified", "exit_code": 0 if complete else 4, **out,
           "checks": [c.to_dict() for c in checks]}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for c in checks:
            print(c.line())
        if complete:
            print(f"verified: {summary}")
        else:
            missing = [c.name for c in checks if c.required and c.result == NOT_CHECKED]
            print(f"NOT INDEPENDENTLY VERIFIED (exit 4): nothing failed, but {', '.join(missing)} not checked; "
                  f"this is not a pass ({summary})", file=sys.stderr)
    return 0 if complete else ExitCode.UNVERIFIED


def _common_checks(args: argparse.Namespace, keys: list[Verifier], what: str, saved_size: int | None,
                   state_path: Path | None) -> list[Any]:
    from transparency.verdict import NOT_CHECKED, Check
    src = "--key" if args.key else f"--policy {args.policy}"
    checks = [Check("Log key", "The checkpoints must be signed by a key the auditor gives (c2sp.org/signed-note).",
                    "passed", f"given by the auditor ({src}): "
                              + ", ".join(f"{k.name} ({k.key_id.hex()})" for k in keys)),
              Check("Log, checkpoints and consistency", "RFC 9162 2.1.1 and 2.1.4, C2SP tlog-checkpoint" +
                    (", C2SP tlog-tiles" if what == "tiles" else ""), "passed", "")]
    if state_path is None:
        checks.append(Check("Consistency with an earlier verification", "RFC 9162 2.1.4 against the saved "
                            "checkpoint (--state)", NOT_CHECKED, "no --state: a rollback or fork since an earlier "
                            "verification cannot be seen", required=False))
    else:
        checks.append(Check("Consistency with an earlier verification", "RFC 9162 2.1.4 against the saved "
                            "checkpoint (--state)", "passed", f"consistent with the checkpoint of size {saved_size} "
                            "verified before" if saved_size is not None else f"first verification; saved in "
                            f"{state_path}"))
    return checks


def cmd_verify_tiles(args: argparse.Namespace) -> int:
    from transparency.tilesio import TileSource, verify_tiles
    from transparency.verdict import recorded_requirement, witness_check
    src = TileSource(args.log)
    try:
        first_note = [src.get("checkpoint").decode("utf-8", "replace")]
    except AuditError:
        first_note = []
    keys, witnesses, policy = _auditor_keys(args, first_note)
    saved, state_path = _saved(args.state, _tiles_origin(src, keys), keys)
    r = verify_tiles(src, keys, witnesses, 0, args.origin, saved)
    _origin_is_a_policy_log(args, policy, r.checkpoint.origin)
    checks = _common_checks(args, keys, "tiles", saved.size if saved else None, state_path)
    checks[1] = checks[1].__class__(checks[1].name, checks[1].how, "passed",
                                    f"{r.entries} entries, every tile and bundle; origin {r.checkpoint.origin}")
    lines = sum(1 for ln in r.note.split("\n") if ln.startswith("\u2014 ")) - 1
    checks.append(witness_check(r.cosigners, max(lines, 0), r.checkpoint.size, recorded_requirement(r.entry_bytes),
                                len(witnesses), args.quorum, policy))
    _save(state_path, r.note)
    out = {"tiles": args.log, "entries": r.entries, "origin": r.checkpoint.origin, "tree_size": r.checkpoint.size,
           "root": r.checkpoint.root.hex(), "cosigners": list(key_names(r.cosigners)), "fetches": r.fetches,
           "saved_state": str(state_path) if state_path else None}
    return _verdict(args, out, checks, f"{r.entries} entries from tiles, origin {r.checkpoint.origin}, root "
                                       f"{r.checkpoint.root.hex()[:16]}... ({r.fetches} fetches)")


def cmd_verify(args: argparse.Namespace) -> int:
    from transparency.note import Checkpoint, verify_note
    from transparency.verdict import recorded_requirement, witness_check
    from transparency.verify import _with_cosignatures, parse_log, verify_log
    if _is_tiles(args.log):
        return cmd_verify_tiles(args)
    try:
        data = Path(args.log).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{args.log}: no such file") from None
    view = parse_log(data)
    keys, witnesses, policy = _auditor_keys(args, [_with_cosignatures(c) for c in view.checkpoints])
    saved: Checkpoint | None = None
    state_path: Path | None = None
    if args.state and view.checkpoints:
        state = Path(args.state)
        state.mkdir(parents=True, exist_ok=True)
        try:
            origin = Checkpoint.parse(verify_note(view.checkpoints[-1].note, keys)[0]).origin
        except AuditError:
            origin = None  # verify_log names what is wrong
        if origin:
            state_path = _state_file(state, origin)
            if state_path.exists():
                saved = Checkpoint.parse(verify_note(state_path.read_text(), keys)[0])
    result = verify_log(data, keys, witnesses, 0, args.origin, saved, view)
    _origin_is_a_policy_log(args, policy, result.latest.origin)
    checks = _common_checks(args, keys, "log", saved.size if saved else None, state_path)
    checks[1] = checks[1].__class__(checks[1].name, checks[1].how, "passed",
                                    f"{result.entries} entries, {result.checkpoints} signed checkpoints, origin "
                                    f"{result.latest.origin}")
    checks.append(witness_check(result.cosigners, len(result.cosignature_lines), result.latest.size,
                                recorded_requirement(view.entries[:result.latest.size]), len(witnesses),
                                args.quorum, policy))
    _save(state_path, result.latest_note)
    out = {"entries": result.entries, "checkpoints": result.checkpoints, "origin": result.latest.origin,
           "tree_size": result.latest.size, "root": result.latest.root.hex(),
           "cosigners": list(result.cosigner_names), "saved_state": str(state_path) if state_path else None}
    return _verdict(args, out, checks, f"{result.entries} entries, {result.checkpoints} signed checkpoints, origin "
                                       f"{result.latest.origin}, root {result.latest.root.hex()[:16]}...; cosigned "
                                       f"by {', '.join(result.cosigner_names) or 'no witness key given'}")


def _write_proof(args: argparse.Namespace, text: str, entry: bytes) -> None:
    if args.out:
        from qrng.atomic import atomic_write
        out = Path(args.out)
        for path in (out, out.with_suffix(".entry")):  # never overwritten, never through a symbolic link
            if path.is_symlink() or path.exists():
                raise FileExistsError(f"{path} exists; refusing to overwrite it")
        atomic_write(out, text.encode())
        atomic_write(out.with_suffix(".entry"), entry)
        print(f"wrote {args.out} and {out.with_suffix('.entry')}")
    else:
        sys.stdout.write(text)


def cmd_prove_tiles(args: argparse.Namespace) -> int:
    from transparency.proof import format_proof
    from transparency.tilesio import TileSource, prove_from_tiles
    if not args.key:
        raise FormatError("proving from tiles needs --key: no tile is used before the checkpoint's signature verifies")
    from transparency.keys import signature_ids
    src = TileSource(args.log)
    keys = _keys(args.key, "log", signature_ids([src.get("checkpoint").decode("utf-8", "replace")]), "--key")
    saved, state_path = _saved(args.state, _tiles_origin(src, keys), keys)
    entry, proof, note, r = prove_from_tiles(src, args.index, keys, saved=saved)
    _save(state_path, note)
    print(f"entry {args.index} verified in {r.checkpoint.origin} at tree size {r.checkpoint.size} from "
          f"{r.fetches} fetches in {r.seconds * 1e3:.1f} ms", file=sys.stderr)
    _write_proof(args, format_proof(args.index, proof, note), entry)
    return 0


def cmd_prove(args: argparse.Namespace) -> int:
    from transparency.merkle import TreeLevels
    from transparency.proof import format_proof
    from transparency.verify import _with_cosignatures, parse_log
    if _is_tiles(args.log):
        return cmd_prove_tiles(args)
    view = parse_log(Path(args.log).read_bytes())
    if not view.checkpoints:
        raise TamperedError("the log has no signed checkpoint to prove against")
    cp_rec = next((c for c in view.checkpoints if c.position > args.index), None)
    if cp_rec is None:
        raise FormatError(f"entry {args.index} is not covered by a checkpoint (log has {len(view.entries)} entries)")
    tree = TreeLevels(view.leaf_hashes)
    text = format_proof(args.index, tree.inclusion_proof(args.index, cp_rec.position), _with_cosignatures(cp_rec))
    _write_proof(args, text, view.entries[args.index])
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from transparency.tilesio import publish
    r = publish(Path(args.log), Path(args.dir))
    out = {"status": "published", "tree_size": r.size, "new_entries": r.new_entries, "tiles_written": r.tiles_written,
           "bundles_written": r.bundles_written, "seconds": round(r.seconds, 3), "dir": args.dir}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"published {args.log} as tiles in {args.dir}: tree size {r.size} ({r.new_entries} new entries, "
              f"{r.tiles_written} hash tiles and {r.bundles_written} entry bundles written, {r.seconds:.2f} s)")
    return 0


def cmd_check_proof(args: argparse.Namespace) -> int:
    from transparency.proof import verify_proof
    entry = sys.stdin.buffer.read() if args.entry == "-" else Path(args.entry).read_bytes()
    entry = entry.rstrip(b"\n")
    from transparency.keys import signature_ids
    text = Path(args.proof).read_text()
    ids = signature_ids([text.partition("\n\n")[2]])
    witnesses = _keys(args.witness, "witness", ids, "--witness")
    cp = verify_proof(text, entry, _keys(args.key, "log", ids, "--key"), witnesses, args.quorum or 0)
    print(f"included: entry is in {cp.origin} at tree size {cp.size}"
          + (f"; {args.quorum} witness cosignature(s) verified" if args.quorum else
             "; witness cosignatures not checked (no --quorum)"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from transparency.verify import parse_log
    view = parse_log(Path(args.log).read_bytes())
    events: list[dict[str, Any]] = []
    cps = {c.position: c for c in view.checkpoints}
    for i, line in enumerate(view.entries):
        e = json.loads(line)
        events.append({k: e[k] for k in ("seq", "time", "step", "actor", "event", "files", "data")})
        if i + 1 in cps:
            events.append({"checkpoint": i + 1, "signatures": cps[i + 1].note.count("\u2014 ") +
                           len(cps[i + 1].cosignatures)})
    if args.json:
        print(json.dumps(events, indent=2))
        return 0
    for ev in events:
        if "checkpoint" in ev:
            print(f"{'':26}  -- checkpoint at tree size {ev['checkpoint']} ({ev['signatures']} signature(s))")
            continue
        files = ", ".join(f"{k} {v[:12]}" for k, v in ev["files"].items())
        print(f"{ev['time'][:26]:26}  #{ev['seq']:<5} {ev['step']:<22} {ev['actor']:<14} {ev['event']}"
              + (f"  [{files}]" if files else ""))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from transparency.note import ALG_COSIGNATURE_V1, generate_ed25519, load_ed25519_signer
    out = Path(args.out)
    pub = Path(str(out) + ".pub")
    for path in (out, pub):  # a dangling symbolic link does not "exist": it is refused all the same
        if path.is_symlink() or path.exists():
            raise FormatError(f"{path} exists; refusing to overwrite a key (or to write through a link)")
    if args.mldsa44:
        if not args.witness:
            raise UsageError("--mldsa44 is for witness keys (tlog-cosignature type 0x06): add --witness")
        from transparency.note import generate_mldsa44_witness
        priv, vkey = generate_mldsa44_witness(args.name)
    else:
        priv, vkey = generate_ed25519(args.name)
    if args.witness and not args.mldsa44:
        vkey = str(load_ed25519_signer(priv, ALG_COSIGNATURE_V1).verifier)
    from qrng.atomic import atomic_write
    atomic_write(out, (priv + "\n").encode())  # mode 600 (mkstemp), linked into place: never through a symlink
    atomic_write(pub, (vkey + "\n").encode())
    print(vkey)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from qrng.asciinum import is_ascii_decimal
    from transparency.tileserver import serve
    host, _, port = args.listen.rpartition(":")
    if not host or not is_ascii_decimal(port) or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {args.listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    if not Path(args.dir).is_dir():
        raise FileNotFoundError(f"{args.dir}: no such folder (a tiles folder made by `qrng audit publish`, or a "
                                "folder holding several under their prefixes)")

    def ready(bound: int) -> None:
        print(f"serving tiles of {args.dir} on http://{host}:{bound}/", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.dir, host.strip("[]"), int(port), ready)
    return 0


def cmd_key(args: argparse.Namespace) -> int:
    from transparency.keys import key_from_pem
    try:
        pem = Path(args.pem).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{args.pem}: no such file") from None
    print(key_from_pem(pem, "witness" if args.witness else "log", args.name, args.pem))
    return 0


def cmd_cosign(args: argparse.Namespace) -> int:
    """A witness cosigns the latest checkpoint of a log it has verified (tlog-cosignature v1)."""
    from transparency.keys import signature_ids
    from transparency.log import AuditLog
    from transparency.note import ALG_COSIGNATURE_V1, cosign, load_ed25519_signer
    from transparency.verify import _with_cosignatures, parse_log, verify_log
    data = Path(args.log).read_bytes()
    keys = _keys(args.key, "log", signature_ids(_with_cosignatures(c) for c in parse_log(data).checkpoints), "--key")
    result = verify_log(data, keys)
    signer = load_ed25519_signer(Path(args.witness_key).read_text(), ALG_COSIGNATURE_V1)
    sig = cosign(result.latest.text(), signer, int(datetime.datetime.now(datetime.UTC).timestamp()))
    log = AuditLog(args.log, result.latest.origin)
    log.add_cosignature(result.latest.size, sig)
    log.close()
    print(f"cosigned tree size {result.latest.size} as {signer.name}")
    return 0


def register(sub: Any) -> None:
    ap = sub.add_parser("audit", help="verify, prove and inspect signed audit logs (offline, no HSM)",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = ap.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = s.add_parser("verify", help="recompute the tree, check every signature, consistency and quorum")
    v.add_argument("log", help="the audit log (JSON lines), or a tiles log: an http(s) URL prefix or a folder "
                               "(`qrng audit publish`)")
    v.add_argument("--key", action="append", help="the log's key, from its published records: a verifier key "
                                                  "(name+id+key), a file holding one, or a PEM public key; repeatable")
    v.add_argument("--witness", action="append", help="a witness's key: verifier key (type 0x04/0x06), file, or PEM "
                                                      "public key (Ed25519, ML-DSA-44); repeatable")
    v.add_argument("--policy", metavar="FILE", help="a C2SP tlog-policy file: its logs (unless --key) and witnesses "
                                                    "are keys, and its quorum rule must hold")
    v.add_argument("--quorum", type=int_at_least(0), help="distinct witness keys that must have cosigned the latest "
                                                          "checkpoint, on top of the quorum a ceremony log records "
                                                          "(default: only the recorded one)")
    v.add_argument("--origin", help="require this checkpoint origin")
    v.add_argument("--state", metavar="DIR", help="remember the last verified checkpoint; catch rollback and forks")
    v.add_argument("--json", action="store_true", help="print the result and each check as JSON")
    v.set_defaults(func=(cmd_verify))
    sv = s.add_parser("serve", help="serve a tiles folder over HTTP with the headers C2SP tlog-tiles requires")
    sv.add_argument("dir", help="a tiles folder (`qrng audit publish`), or a folder of several under their prefixes; "
                               "served read-only, the publisher's state hidden")
    sv.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                    help="address (default 127.0.0.1:8080; port 0: any free port, said on stderr)")
    sv.set_defaults(func=cmd_serve)
    kp = s.add_parser("key", help="convert a PEM public key into a C2SP verifier key string (name+id+key)")
    kp.add_argument("pem", help="PEM public key or certificate (Ed25519, ECDSA P-256/384/521 or ML-DSA-44)")
    kp.add_argument("--name", required=True, help="the key name (a log's: its checkpoint origin; a witness's: its "
                                                  "name in cosignature lines)")
    kp.add_argument("--witness", action="store_true", help="a witness cosignature key (Ed25519 type 0x04 or "
                                                           "ML-DSA-44 type 0x06) rather than a log key")
    kp.set_defaults(func=cmd_key)
    p = s.add_parser("prove", help="write a c2sp.org/tlog-proof for one entry")
    p.add_argument("log", help="the audit log (JSON lines), or a tiles log (URL prefix or folder): then only the "
                               "O(log n) tiles the proof needs are fetched, and verified against --key")
    p.add_argument("--index", type=int_at_least(0), required=True, help="the entry to prove (0-based)")
    p.add_argument("--key", action="append", help="log verifier key (needed for a tiles log); repeatable")
    p.add_argument("--state", metavar="DIR", help="with a tiles log: remember the checkpoint; catch rollback and "
                                                  "forks")
    p.add_argument("--out", help="proof file (the entry's bytes go to the same name with .entry)")
    p.set_defaults(func=(cmd_prove))
    pub = s.add_parser("publish", help="write or update the log as static C2SP tlog-tiles in DIR (any web server "
                                       "serves it)")
    pub.add_argument("log", help="the audit log (JSON lines); its latest signed checkpoint is published")
    pub.add_argument("dir", help="the tiles folder (created; full tiles are never rewritten; the checkpoint last)")
    pub.add_argument("--json", action="store_true", help="print the result as JSON")
    pub.set_defaults(func=cmd_publish)
    c = s.add_parser("check-proof", help="verify a tlog-proof for an entry, offline")
    c.add_argument("proof", help="the c2sp.org/tlog-proof file")
    c.add_argument("entry", help="file holding the entry's exact bytes, or - for stdin")
    c.add_argument("--key", action="append", required=True, help="log verifier key (string or file); repeatable")
    c.add_argument("--witness", action="append", help="witness cosignature key (string or file); repeatable")
    c.add_argument("--quorum", type=int_at_least(0), help="witness cosignatures required (default 0)")
    c.set_defaults(func=(cmd_check_proof))
    sh = s.add_parser("show", help="print the timeline of a log")
    sh.add_argument("log", help="the audit log (JSON lines)")
    sh.add_argument("--json", action="store_true", help="print the timeline as JSON")
    sh.set_defaults(func=(cmd_show))
    k = s.add_parser("keygen", help="make an Ed25519 file key (log or --witness); prints the verifier key")
    k.add_argument("name", help="the key name (for a log: its origin, e.g. example.com/log)")
    k.add_argument("--out", required=True, help="private key file (mode 600; the verifier key goes to FILE.pub)")
    k.add_argument("--witness", action="store_true", help="a cosignature (type 0x04) key")
    k.add_argument("--mldsa44", action="store_true", help="with --witness: an ML-DSA-44 cosignature key (type 0x06, "
                                                          "FIPS 204; what tlog-witness recommends for new witnesses)")
    k.set_defaults(func=(cmd_keygen))
    w = s.add_parser("cosign", help="as a witness, verify the log and cosign its latest checkpoint")
    w.add_argument("log", help="the audit log to verify and cosign")
    w.add_argument("--key", action="append", required=True, help="the log's verifier key")
    w.add_argument("--witness-key", required=True, help="the witness's private key file")
    w.set_defaults(func=(cmd_cosign))
