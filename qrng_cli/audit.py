"""``qrng audit``: verify, prove, publish, check-proof, show, keygen, cosign. No HSM needed.

A log is a JSON-lines file, or a C2SP tlog-tiles log (an http(s) URL prefix or a folder, made by ``publish``):
``verify`` then checks every tile and entry bundle, ``prove`` fetches only the O(log n) tiles one entry needs.

Exit codes: 0 verified; 1 tampered or inconsistent (the first bad entry is named); 2 usage or I/O error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrng.audit.errors import AuditError, FormatError, TamperedError

from .common import int_at_least

if TYPE_CHECKING:
    from qrng.audit.note import Verifier

__all__ = ["register"]


def _read_key(value: str) -> Verifier:
    """A verifier key given as a file or as the key string itself; a missing file is named as such."""
    from qrng.audit.note import Verifier
    p = Path(value)
    if p.exists():
        return Verifier.parse(p.read_text().strip())
    if value.count("+") < 2:
        raise FileNotFoundError(f"{value}: no such file (and not a name+id+key verifier key string)")
    return Verifier.parse(value)


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
    from qrng.audit.note import Checkpoint, verify_note
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    path = _state_file(state, origin)
    if not path.exists():
        return None, path
    return Checkpoint.parse(verify_note(path.read_text(), keys)[0]), path


def _save(path: Path | None, note: str) -> None:
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(note)
        tmp.replace(path)


def _tiles_origin(src: Any, keys: list[Verifier]) -> str:
    from qrng.audit.note import Checkpoint, verify_note
    return Checkpoint.parse(verify_note(src.get("checkpoint").decode("utf-8", "replace"), keys)[0]).origin


def cmd_verify_tiles(args: argparse.Namespace) -> int:
    from qrng.audit.tilesio import TileSource, verify_tiles
    keys = [_read_key(k) for k in args.key]
    witnesses = [_read_key(w) for w in args.witness or []]
    src = TileSource(args.log)
    saved, state_path = _saved(args.state, _tiles_origin(src, keys), keys)
    quorum = args.quorum if args.quorum is not None else len(witnesses)
    r = verify_tiles(src, keys, witnesses, quorum, args.origin, saved)
    _check_policy(args, r.cosigners)
    _save(state_path, r.note)
    out = {"status": "verified", "tiles": args.log, "entries": r.entries, "origin": r.checkpoint.origin,
           "tree_size": r.checkpoint.size, "root": r.checkpoint.root.hex(), "cosigners": list(r.cosigners),
           "fetches": r.fetches, "saved_state": str(state_path) if state_path else None}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"verified from tiles: {r.entries} entries, every tile and bundle, origin {r.checkpoint.origin}, root "
              f"{r.checkpoint.root.hex()[:16]}...; cosigned by {', '.join(r.cosigners) or 'no witness'} "
              f"({r.fetches} fetches)")
    return 0


def _policy_keys(args: argparse.Namespace) -> None:
    """--policy FILE (C2SP tlog-policy): its logs are the log keys (unless --key), its witnesses the witness keys,
    and its quorum rule replaces --quorum (checked after verification by _check_policy)."""
    args.policy_obj = None
    if not getattr(args, "policy", None):
        if not args.key:
            raise ValueError("give --key (the log's verifier key) or --policy")
        return
    from qrng.audit.policy import load_policy
    pol = load_policy(args.policy)
    args.policy_obj = pol
    if not args.key:
        args.key = [str(k) for k, _ in pol.logs]
        if not args.key:
            raise ValueError(f"{args.policy}: lists no log; give --key")
    args.witness = [str(w) for w in pol.witness_keys()]
    args.quorum = 0


def _check_policy(args: argparse.Namespace, cosigners: tuple[str, ...]) -> None:
    pol = args.policy_obj
    if pol is not None and not pol.satisfied(pol.names_of(set(cosigners))):
        raise TamperedError(f"the latest checkpoint's cosignatures ({', '.join(cosigners) or 'none'}) do not meet "
                            f"the quorum of {args.policy} ({pol.quorum})")


def cmd_verify(args: argparse.Namespace) -> int:
    from qrng.audit.note import Checkpoint
    from qrng.audit.verify import parse_log, verify_log
    _policy_keys(args)
    if _is_tiles(args.log):
        return cmd_verify_tiles(args)
    keys = [_read_key(k) for k in args.key]
    witnesses = [_read_key(w) for w in args.witness or []]
    data = Path(args.log).read_bytes()
    view = parse_log(data)
    saved: Checkpoint | None = None
    state_path: Path | None = None
    if args.state:
        state = Path(args.state)
        state.mkdir(parents=True, exist_ok=True)
        from qrng.audit.note import verify_note
        first_origin = None
        if view.checkpoints:
            try:
                first_origin = Checkpoint.parse(verify_note(view.checkpoints[-1].note, keys)[0]).origin
            except AuditError:
                first_origin = None
        if first_origin:
            state_path = _state_file(state, first_origin)
            if state_path.exists():
                saved_text, _ = verify_note(state_path.read_text(), keys)
                saved = Checkpoint.parse(saved_text)
    quorum = args.quorum if args.quorum is not None else len(witnesses)
    result = verify_log(data, keys, witnesses, quorum, args.origin, saved, view)
    _check_policy(args, result.cosigners)
    if state_path is not None:
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(result.latest_note)
        tmp.replace(state_path)
    out = {"status": "verified", "entries": result.entries, "checkpoints": result.checkpoints,
           "origin": result.latest.origin, "tree_size": result.latest.size, "root": result.latest.root.hex(),
           "cosigners": list(result.cosigners), "saved_state": str(state_path) if state_path else None}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"verified: {result.entries} entries, {result.checkpoints} signed checkpoints, origin "
              f"{result.latest.origin}, root {result.latest.root.hex()[:16]}...; "
              f"cosigned by {', '.join(result.cosigners) or 'no witness'}")
    return 0


def _write_proof(args: argparse.Namespace, text: str, entry: bytes) -> None:
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".entry").write_bytes(entry)
        print(f"wrote {args.out} and {Path(args.out).with_suffix('.entry')}")
    else:
        sys.stdout.write(text)


def cmd_prove_tiles(args: argparse.Namespace) -> int:
    from qrng.audit.proof import format_proof
    from qrng.audit.tilesio import TileSource, prove_from_tiles
    if not args.key:
        raise FormatError("proving from tiles needs --key: no tile is used before the checkpoint's signature verifies")
    keys = [_read_key(k) for k in args.key]
    src = TileSource(args.log)
    saved, state_path = _saved(args.state, _tiles_origin(src, keys), keys)
    entry, proof, note, r = prove_from_tiles(src, args.index, keys, saved=saved)
    _save(state_path, note)
    print(f"entry {args.index} verified in {r.checkpoint.origin} at tree size {r.checkpoint.size} from "
          f"{r.fetches} fetches in {r.seconds * 1e3:.1f} ms", file=sys.stderr)
    _write_proof(args, format_proof(args.index, proof, note), entry)
    return 0


def cmd_prove(args: argparse.Namespace) -> int:
    from qrng.audit.merkle import TreeLevels
    from qrng.audit.proof import format_proof
    from qrng.audit.verify import _with_cosignatures, parse_log
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
    from qrng.audit.tilesio import publish
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
    from qrng.audit.proof import verify_proof
    entry = sys.stdin.buffer.read() if args.entry == "-" else Path(args.entry).read_bytes()
    entry = entry.rstrip(b"\n")
    witnesses = [_read_key(w) for w in args.witness or []]
    cp = verify_proof(Path(args.proof).read_text(), entry, [_read_key(k) for k in args.key], witnesses,
                      args.quorum or 0)
    print(f"included: entry is in {cp.origin} at tree size {cp.size}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from qrng.audit.verify import parse_log
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
    from qrng.audit.note import ALG_COSIGNATURE_V1, generate_ed25519, load_ed25519_signer
    out = Path(args.out)
    if out.exists():
        raise FormatError(f"{out} exists; refusing to overwrite a key")
    if args.mldsa44:
        if not args.witness:
            raise ValueError("--mldsa44 is for witness keys (tlog-cosignature type 0x06): add --witness")
        from qrng.audit.note import generate_mldsa44_witness
        priv, vkey = generate_mldsa44_witness(args.name)
    else:
        priv, vkey = generate_ed25519(args.name)
    if args.witness and not args.mldsa44:
        vkey = str(load_ed25519_signer(priv, ALG_COSIGNATURE_V1).verifier)
    out.touch(mode=0o600)
    out.write_text(priv + "\n")
    Path(str(out) + ".pub").write_text(vkey + "\n")
    print(vkey)
    return 0


def cmd_cosign(args: argparse.Namespace) -> int:
    """A witness cosigns the latest checkpoint of a log it has verified (tlog-cosignature v1)."""
    from qrng.audit.log import AuditLog
    from qrng.audit.note import ALG_COSIGNATURE_V1, cosign, load_ed25519_signer
    from qrng.audit.verify import verify_log
    keys = [_read_key(k) for k in args.key]
    data = Path(args.log).read_bytes()
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
    v.add_argument("--key", action="append", help="log verifier key (string or file); repeatable")
    v.add_argument("--witness", action="append", help="witness cosignature key (string or file); repeatable")
    v.add_argument("--policy", metavar="FILE", help="a C2SP tlog-policy file: its logs and witnesses, and its quorum "
                                                    "rule instead of --quorum")
    v.add_argument("--quorum", type=int_at_least(0), help="witness cosignatures required on the latest checkpoint "
                                              "(default: all --witness keys)")
    v.add_argument("--origin", help="require this checkpoint origin")
    v.add_argument("--state", metavar="DIR", help="remember the last verified checkpoint; catch rollback and forks")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=(cmd_verify))
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
