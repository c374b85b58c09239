"""The auditor's verifier: pure. Log bytes, trusted keys and optional saved state in; a result or a
typed error out (TamperedError names the first bad entry when it can be known).

What it checks, in order:
1. every record is a complete line of JSON (a torn tail is TornLogError);
2. entries are numbered 0, 1, 2... and each names its predecessor's leaf hash (deleted, swapped or
   changed entries are named here);
3. every checkpoint note verifies against the log key (C2SP signed-note), is for this origin, and its root
   equals the RFC 9162 root recomputed over the entries before it;
4. each checkpoint is consistent with the one before it (an RFC 9162 2.1.4 proof, generated and verified);
5. with saved state: the log has not shrunk below, nor forked from, the checkpoint this auditor saw before;
6. no entry follows the last checkpoint (an unsigned entry is not accepted);
7. every cosignature present verifies, and the latest checkpoint carries the witness quorum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import FormatError, ProofError, SignatureError, TamperedError, TornLogError
from .merkle import TreeLevels, leaf_hash, verify_consistency
from .note import COSIGNATURE_ALGS, Checkpoint, Verifier, parse_note, verify_note
from .records import CHECKPOINT, COSIGNATURE, ENTRY

__all__ = ["CheckpointRecord", "LogView", "VerifyResult", "distinct_keys", "key_names", "parse_log",
           "signature_line_ids", "verify_log"]


@dataclass
class CheckpointRecord:
    position: int  # entries before this record
    note: str
    cosignatures: list[str] = field(default_factory=list)


@dataclass
class LogView:
    entries: list[bytes]
    leaf_hashes: list[bytes]
    checkpoints: list[CheckpointRecord]


@dataclass(frozen=True)
class VerifyResult:
    entries: int
    checkpoints: int
    latest: Checkpoint
    latest_note: str
    cosigners: tuple[Verifier, ...]  # the witness keys whose cosignatures of the latest checkpoint verified
    cosignature_lines: tuple[str, ...] = ()  # the latest checkpoint's cosignature lines as the log holds them

    @property
    def cosignature_names(self) -> tuple[str, ...]:
        """The key names on the latest checkpoint's cosignature lines (as recorded; verified or not)."""
        return tuple(ln.split(" ")[1] for ln in self.cosignature_lines if ln.count(" ") >= 2)

    @property
    def cosigner_names(self) -> tuple[str, ...]:
        return key_names(self.cosigners)


def key_names(keys: tuple[Verifier, ...] | list[Verifier]) -> tuple[str, ...]:
    """Names of keys for people to read; two keys sharing a name are told apart by their key IDs."""
    counts: dict[str, int] = {}
    for k in keys:
        counts[k.name] = counts.get(k.name, 0) + 1
    return tuple(sorted(k.name if counts[k.name] == 1 else f"{k.name} ({k.key_id.hex()})" for k in keys))


def parse_log(data: bytes) -> LogView:
    """Split and check the records; raises TornLogError / TamperedError naming the entry."""
    cut = data.rfind(b"\n") + 1
    if cut != len(data):
        raise TornLogError(f"torn last record: {len(data) - cut} bytes at offset {cut} do not end in a newline "
                           "(interrupted write or truncation)", index=data[:cut].count(b'"kind":"entry"'))
    entries: list[bytes] = []
    hashes: list[bytes] = []
    cps: list[CheckpointRecord] = []
    prev = ""
    for lineno, line in enumerate(data[:cut].split(b"\n")[:-1], 1):
        try:
            rec: dict[str, Any] = json.loads(line)
            kind = rec["kind"]
        except (ValueError, KeyError, TypeError):
            raise TamperedError(f"line {lineno}: not a valid record (entry {len(entries)} or later was changed)",
                                index=len(entries)) from None
        if kind == ENTRY:
            i = len(entries)
            if rec.get("seq") != i:
                raise TamperedError(f"entry {i} (line {lineno}) has sequence number {rec.get('seq')}: an entry was "
                                    "deleted, inserted or moved", index=i)
            if rec.get("prev") != prev:
                raise TamperedError(f"entry {i - 1} was changed: entry {i} records a different hash for it",
                                    index=i - 1)
            h = leaf_hash(line)
            prev = h.hex()
            entries.append(line)
            hashes.append(h)
        elif kind == CHECKPOINT:
            if not isinstance(rec.get("note"), str):
                raise TamperedError(f"line {lineno}: checkpoint record has no note", index=len(entries))
            cps.append(CheckpointRecord(len(entries), rec["note"]))
        elif kind == COSIGNATURE:
            size, sig_line = rec.get("size"), rec.get("line")
            target = next((c for c in reversed(cps) if c.position == size), None)
            if target is None or not isinstance(sig_line, str):
                raise TamperedError(f"line {lineno}: cosignature for tree size {size} has no checkpoint",
                                    index=len(entries))
            target.cosignatures.append(sig_line)
        else:
            raise TamperedError(f"line {lineno}: unknown record kind {kind!r}", index=len(entries))
    return LogView(entries, hashes, cps)


def _with_cosignatures(cp: CheckpointRecord) -> str:
    return cp.note + "".join(s if s.endswith("\n") else s + "\n" for s in cp.cosignatures)


def verify_log(data: bytes, log_keys: list[Verifier], witness_keys: list[Verifier] | None = None,
               quorum: int = 0, origin: str | None = None, saved: Checkpoint | None = None,
               view: LogView | None = None) -> VerifyResult:
    witness_keys = witness_keys or []
    if any(w.alg not in COSIGNATURE_ALGS for w in witness_keys):
        raise FormatError("witness keys must be cosignature keys (type 0x04 Ed25519 or 0x06 ML-DSA-44)")
    if quorum > len(witness_keys):
        raise FormatError(f"a quorum of {quorum} needs at least {quorum} witness keys (got {len(witness_keys)})")
    v = view or parse_log(data)
    if not v.checkpoints:
        raise TamperedError("the log has no signed checkpoint", index=0 if v.entries else None)
    tree = TreeLevels(v.leaf_hashes)
    previous: Checkpoint | None = None
    latest: Checkpoint | None = None
    cosigners: list[Verifier] = []
    for n, rec in enumerate(v.checkpoints):
        try:
            text, _ = verify_note(rec.note, log_keys)
        except SignatureError as exc:
            raise TamperedError(f"checkpoint {n} (after entry {rec.position - 1}): {exc}", index=rec.position) from None
        except FormatError as exc:
            raise TamperedError(f"checkpoint {n}: malformed note ({exc})", index=rec.position) from None
        cp = Checkpoint.parse(text)
        if origin is not None and cp.origin != origin:
            raise TamperedError(f"checkpoint {n} is for origin {cp.origin!r}, not {origin!r}", index=rec.position)
        if cp.size != rec.position:
            raise TamperedError(f"checkpoint {n} claims {cp.size} entries but {rec.position} precede it",
                                index=min(cp.size, rec.position))
        root = tree.root(cp.size)
        if root != cp.root:
            lo = previous.size if previous else 0
            raise TamperedError(f"checkpoint {n} (tree size {cp.size}) does not match the entries: an entry in "
                                f"[{lo}, {cp.size}) was changed", index=lo)
        if previous is not None and previous.size > 0:
            try:
                verify_consistency(previous.size, cp.size, previous.root, cp.root,
                                   tree.consistency_proof(previous.size, cp.size))
            except ProofError as exc:
                raise TamperedError(f"checkpoint {n} is not consistent with checkpoint {n - 1}: {exc}",
                                    index=previous.size) from None
        verified: list[Verifier] = []
        if rec.cosignatures:
            _, sigs = parse_note(_with_cosignatures(rec))
            witness_ids = {(w.name, w.key_id) for w in witness_keys}
            if any((s.name, s.key_id) in witness_ids for s in sigs):
                try:
                    _, ok = verify_note(_with_cosignatures(rec), witness_keys)
                except SignatureError as exc:
                    raise TamperedError(f"checkpoint {n}: {exc}", index=rec.position) from None
                verified = distinct_keys(ok)
        previous = latest = cp
        cosigners = verified
    assert latest is not None
    if saved is not None:
        check_against_saved(tree, latest, saved)
    if len(v.entries) > latest.size:
        raise TamperedError(f"entries {latest.size}..{len(v.entries) - 1} are not covered by a signed checkpoint",
                            index=latest.size)
    if len(cosigners) < quorum:
        raise TamperedError(f"the latest checkpoint (size {latest.size}) has {len(cosigners)} of the {quorum} "
                            f"required witness cosignatures ({', '.join(key_names(cosigners)) or 'none'})",
                            index=latest.size)
    return VerifyResult(len(v.entries), len(v.checkpoints), latest, _with_cosignatures(v.checkpoints[-1]),
                        tuple(cosigners), tuple(v.checkpoints[-1].cosignatures))


def signature_line_ids(lines: list[str]) -> set[tuple[str, bytes]]:
    """(key name, key ID) of signature lines (c2sp.org/signed-note: the tuple identifies the key); a line that is not
    one is skipped."""
    import base64
    import binascii
    out: set[tuple[str, bytes]] = set()
    for ln in lines:
        parts = ln.rstrip("\n").split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            continue
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            continue
        if len(raw) > 4:
            out.add((parts[1], raw[:4]))
    return out


def distinct_keys(keys: list[Verifier]) -> list[Verifier]:
    """Each key once (a note may carry two lines from one key); counted by key, never by name."""
    out: list[Verifier] = []
    for k in keys:
        if k not in out:
            out.append(k)
    return sorted(out, key=lambda k: (k.name, k.key_id))


def check_against_saved(tree: TreeLevels, latest: Checkpoint, saved: Checkpoint) -> None:
    """The auditor's memory (as Go's sumdb client keeps it): never accept a shrunk or forked log."""
    if saved.origin != latest.origin:
        raise TamperedError(f"saved state is for origin {saved.origin!r}, the log is {latest.origin!r}")
    if latest.size < saved.size:
        raise TamperedError(f"rolled back: this auditor verified tree size {saved.size} before, the log now has "
                            f"{latest.size}", index=latest.size)
    if tree.root(saved.size) != saved.root:
        raise TamperedError(f"fork: the log's tree at size {saved.size} differs from the one this auditor "
                            "verified before", index=None)


