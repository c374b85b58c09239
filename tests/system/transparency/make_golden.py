"""Generates the golden audit logs in golden/: one valid log, and one file per corruption, named after it.

Run from the repository root: ``python -m tests.system.transparency.make_golden``. Keys are fixed TEST-ONLY keys
(deterministic Ed25519), times are fixed, so the files are reproducible. expected.json records, for each
file, the exit code, a phrase the message must contain and the first bad entry.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from transparency.log import AuditLog
from transparency.note import ALG_COSIGNATURE_V1, cosign, ed25519_signer, parse_note
from transparency.records import canonical

HERE = Path(__file__).resolve().parent / "golden"
ORIGIN = "golden.test.invalid/ceremony-log"


def key(seed: int, name: str, alg: int = 1):  # TEST-ONLY keys: seeds are public
    return ed25519_signer(name, ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32), alg)


LOG_KEY = key(1, ORIGIN)
OTHER_KEY = key(2, ORIGIN)
WITNESS = key(3, "witness.test.invalid/w1", ALG_COSIGNATURE_V1)


def write_log(path: Path, n: int, signer=LOG_KEY, variant: str = "a", cosigned: bool = True) -> None:
    if path.exists():
        path.unlink()
    with AuditLog(path, ORIGIN, signer, ceremony="golden-ceremony") as log:
        for i in range(n):
            step = f"step-{i // 3}"
            data = {"i": i, "note": "same" if i < 6 else variant}
            log.append(step, "operator", "step.event", data=data, when=f"2026-11-26T10:00:{i:02d}.000000Z")
            if i % 3 == 2:
                log.checkpoint()
        log.checkpoint()
        if cosigned:
            log.add_cosignature(log.size, cosign(_checkpoint_text(log), WITNESS, 1795000000))


def _checkpoint_text(log: AuditLog) -> str:
    from transparency.note import Checkpoint
    return Checkpoint(log.origin, log.size, log.root()).text()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def save(path: Path, ls: list[bytes]) -> None:
    path.write_bytes(b"".join(x + b"\n" for x in ls))


def entry_lines(ls: list[bytes]) -> list[int]:
    return [i for i, x in enumerate(ls) if b'"kind":"entry"' in x]


def main() -> None:
    if HERE.exists():
        shutil.rmtree(HERE)
    HERE.mkdir()
    (HERE / "log.pub").write_text(str(LOG_KEY.verifier) + "\n")
    (HERE / "other.pub").write_text(str(OTHER_KEY.verifier) + "\n")
    (HERE / "witness.pub").write_text(str(WITNESS.verifier) + "\n")
    good = HERE / "valid.log"
    write_log(good, 12)
    base = lines(good)
    ents = entry_lines(base)
    expected: dict[str, dict[str, object]] = {"valid.log": {"rc": 0, "phrase": "verified", "index": None}}

    def corrupt(name: str, ls: list[bytes], phrase: str, index: int | None, raw: bytes | None = None,
                state: bool = False, status: str = "tampered") -> None:
        p = HERE / name
        if raw is not None:
            p.write_bytes(raw)
        else:
            save(p, ls)
        expected[name] = {"rc": 1, "phrase": phrase, "index": index, "state": state}
        if status != "tampered":
            expected[name]["status"] = status

    ls = list(base)
    ls[ents[5]] = ls[ents[5]].replace(b'"i":5', b'"i":7')
    corrupt("changed-byte.log", ls, "entry 5 was changed", 5)

    ls = list(base)
    ls[ents[8]] = ls[ents[8]].replace(b'"note":"a"', b'"note":"b"')  # the last entry before a checkpoint
    corrupt("changed-last-entry-before-checkpoint.log", ls[:ents[9]], "does not match the entries", 6)

    ls = list(base)
    del ls[ents[4]]
    corrupt("deleted-entry.log", ls, "entry 4 (line", 4)

    ls = list(base)
    ls[ents[3]], ls[ents[4]] = ls[ents[4]], ls[ents[3]]
    corrupt("swapped-entries.log", ls, "entry 3 (line", 3)

    raw = good.read_bytes()
    corrupt("truncated-tail.log", [], "torn last record", 12, raw=raw[:-25])

    ls = list(base)
    last = json.loads(ls[ents[-1]])
    import hashlib
    extra = {**last, "seq": 12, "prev": hashlib.sha256(b"\x00" + ls[ents[-1]]).hexdigest(), "event": "sneaky"}
    corrupt("appended-unsigned-entry.log", ls + [canonical(extra)], "not covered by a signed checkpoint", 12)

    ls = list(base)
    cp_idx = [i for i, x in enumerate(ls) if b'"kind":"checkpoint"' in x][-1]
    rec = json.loads(ls[cp_idx])
    text, sigs = parse_note(rec["note"])
    parts = text.split("\n")
    parts[2] = base64.b64encode(bytes(32)).decode()
    rec["note"] = "\n".join(parts) + "\n" + "".join(s.line() for s in sigs)
    ls[cp_idx] = canonical(rec)
    corrupt("forged-checkpoint.log", ls, "does not verify", 12)

    ls = list(base)
    rec = json.loads(ls[cp_idx])
    text, _ = parse_note(rec["note"])
    from transparency.note import sign_note
    rec["note"] = sign_note(text, [OTHER_KEY])
    ls[cp_idx] = canonical(rec)
    corrupt("checkpoint-other-key.log", ls, "no signature from a trusted key", 12)

    ls = [x for x in base if b'"kind":"cosignature"' not in x]
    # the log is intact; the witness key given did not cosign it: a failed verification, not tampering
    corrupt("missing-cosignature.log", ls, "0 cosignature(s) by the witness keys given", None, status="failed")

    # Saved auditor state: the last checkpoint of the valid log.
    (HERE / "state").mkdir()
    state_note = json.loads(base[cp_idx])["note"]
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in ORIGIN)
    (HERE / "state" / f"{safe}.checkpoint").write_text(state_note)

    cut = [i for i, x in enumerate(base) if b'"kind":"checkpoint"' in x][1]  # after entry 5
    corrupt("rolled-back.log", base[:cut + 1], "rolled back", 6, state=True)

    forked = HERE / "forked.log"
    write_log(forked, 14, variant="fork")  # same first 6 entries, then a different history, validly signed
    expected["forked.log"] = {"rc": 1, "phrase": "fork", "index": None, "state": True}

    (HERE / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(expected)} logs to {HERE}")


if __name__ == "__main__":
    main()
