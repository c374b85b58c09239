"""One offline check of a ceremony folder, used by ``qrng ceremony verify`` and by the verify_outputs step:
the signed log (RFC 9162 proofs, C2SP checkpoints, witness quorum), every output against the digest the log
recorded, every extraction re-run from the retained samples, every provenance statement's signature.
Verification raises; it never returns False."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StepFailed

__all__ = ["FolderReport", "check_output_digests", "verify_folder"]


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


def check_output_digests(folder: Path, log: bytes) -> int:
    """Every file the log recorded matches its SHA-256; returns how many were checked."""
    files = _files(log)
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise StepFailed(f"{path} is missing (recorded in the log with SHA-256 {digest[:16]}...)")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise StepFailed(f"{path} does not match the digest recorded in the log")
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


def verify_folder(folder: Path, key: Any, witnesses: list[Any], quorum: int | None = None) -> FolderReport:
    """Everything an auditor checks in a ceremony folder; raises AuditError, StepFailed or EnvelopeError."""
    from qrng.audit.verify import verify_log
    from qrng.dsse import open_envelope

    from .provenance import PAYLOAD_TYPE
    data = (folder / "audit.log").read_bytes()
    r = verify_log(data, [key], witnesses, len(witnesses) if quorum is None else quorum)
    outputs = check_output_digests(folder, data)
    rerun = rerun_extractions(folder, data)
    provs = sorted(folder.glob("*.provenance.json"))
    for p in provs:
        open_envelope(json.loads(p.read_text()), PAYLOAD_TYPE, key.verify)
    return FolderReport(r.entries, r.checkpoints, tuple(r.cosigners), outputs, len(provs), rerun)
