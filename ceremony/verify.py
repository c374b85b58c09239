"""One offline check of a ceremony folder, used by ``qrng ceremony verify`` and by the verify_outputs step:
the signed log (RFC 9162 proofs, C2SP checkpoints, witness quorum), every output against the digest the log
recorded, every extraction re-run from the retained samples, every provenance statement's signature.
Verification raises; it never returns False."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StepFailed
from .papers.report import Check

__all__ = ["Check", "FolderReport", "check_output_digests", "verify_folder"]

Record = Callable[[Check], None]


def _ignore(check: Check) -> None:
    pass


@dataclass(frozen=True)
class FolderReport:
    entries: int
    checkpoints: int
    cosigners: tuple[str, ...]
    outputs: int
    provenance: int
    extractions_rerun: int


def _files(log: bytes) -> dict[str, str]:
    from qrng.audit.verify import parse_log
    files: dict[str, str] = {}
    for line in parse_log(log).entries:
        files.update(json.loads(line).get("files", {}))
    return files


def check_output_digests(folder: Path, log: bytes, seen: Callable[[str, str], None] | None = None) -> int:
    """Every file the log recorded matches its SHA-256 (``seen(name, digest)`` after each); returns how many."""
    files = _files(log)
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise StepFailed(f"{path} is missing (recorded in the log with SHA-256 {digest[:16]}...)")
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != digest:
            raise StepFailed(f"{path} does not match the digest recorded in the log")
        if seen is not None:
            seen(name, digest)
    return len(files)


def rerun_extractions(folder: Path, log: bytes) -> int:
    """Re-run each logged Toeplitz extraction from the retained samples and seed; the output digest must match."""
    from qrng.audit.verify import parse_log
    count = 0
    for line in parse_log(log).entries:
        e: dict[str, Any] = json.loads(line)
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
            raise StepFailed(f"re-running the extraction over {raw_name} does not give the logged output")
        count += 1
    return count


# The checks in the order they are made: what each is and how it is made, as the auditor's report states them.
HOW = {
    "Log records and hash chain":
        "Each record of audit.log parsed as JSON; entry i carries sequence number i and the SHA-256 leaf hash "
        "(RFC 9162 2.1.1) of entry i-1, so a changed, removed or inserted entry is found.",
    "Signed checkpoints and consistency":
        "Every checkpoint is a C2SP signed note (c2sp.org/signed-note, tlog-checkpoint) verified with the log key; "
        "its tree size and root hash are recomputed from the entries (RFC 9162 2.1.1), and each checkpoint is "
        "proved consistent with the one before (RFC 9162 2.1.4), so the log only grew.",
    "Witness cosignatures":
        "The latest checkpoint's witness cosignatures (c2sp.org/tlog-cosignature) are verified with the witness "
        "keys given to the verifier; the quorum must be met.",
    "Outputs against their logged digests":
        "Every file the log records is read and its SHA-256 compared with the digest logged when it was made.",
    "Extractions re-run":
        "Each logged Toeplitz extraction is re-run from the retained raw samples and extractor seed; the SHA-256 "
        "of the output must equal the logged one.",
    "Provenance statements": "Each key's in-toto statement in its DSSE envelope is verified with the log key.",
}


def verify_folder(folder: Path, key: Any, witnesses: list[Any], quorum: int | None = None,
                  record: Record = _ignore, seen: Callable[[str, str], None] | None = None) -> FolderReport:
    """Everything an auditor checks in a ceremony folder; raises AuditError, StepFailed or EnvelopeError. Each
    check that passes is handed to ``record`` (for the auditor's report) before the next one starts."""
    from qrng.audit.errors import TamperedError
    from qrng.audit.verify import parse_log, verify_log
    from qrng.dsse import open_envelope

    from .provenance import PAYLOAD_TYPE

    def ok(name: str, detail: str) -> None:
        record(Check(name, HOW[name], "passed", detail))

    quorum = len(witnesses) if quorum is None else quorum
    data = (folder / "audit.log").read_bytes()
    view = parse_log(data)
    ok("Log records and hash chain", f"{len(view.entries)} entries, {len(view.checkpoints)} checkpoints, "
                                     f"{sum(len(c.cosignatures) for c in view.checkpoints)} cosignatures")
    r = verify_log(data, [key], witnesses, 0, view=view)
    ok("Signed checkpoints and consistency",
       f"{r.checkpoints} checkpoints signed by {key.name}; the latest covers all {r.entries} entries")
    if len(r.cosigners) < quorum:
        raise TamperedError(f"the latest checkpoint (size {r.latest.size}) has {len(r.cosigners)} of the {quorum} "
                            f"required witness cosignatures ({', '.join(r.cosigners) or 'none'})",
                            index=r.latest.size)
    ok("Witness cosignatures", f"{', '.join(r.cosigners) or 'none'} (quorum {quorum})")
    outputs = check_output_digests(folder, data, seen)
    ok("Outputs against their logged digests", f"{outputs} files match")
    rerun = rerun_extractions(folder, data)
    ok("Extractions re-run", f"{rerun} extraction(s) re-run; outputs identical" if rerun else
       "no Toeplitz extraction logged")
    provs = sorted(folder.glob("*.provenance.json"))
    for p in provs:
        open_envelope(json.loads(p.read_text()), PAYLOAD_TYPE, key.verify)
    ok("Provenance statements", ", ".join(p.name for p in provs) + " verified" if provs else "none in the folder")
    return FolderReport(r.entries, r.checkpoints, tuple(r.cosigners), outputs, len(provs), rerun)
