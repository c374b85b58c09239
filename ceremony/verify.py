"""One offline check of a ceremony folder, used by ``qrng ceremony verify`` (and, for the output digests, by the
verify_outputs step): the signed log (RFC 9162 proofs, C2SP checkpoints) with the log key the auditor gives, the
witness quorum the policy recorded in the log asks for, counted by the auditor's witness keys, every output against
the digest the log recorded, every extraction re-run from the retained samples, every provenance statement's
signature, and the papers (transcript.html, transcript.pdf) re-rendered from the verified log and compared byte
for byte.

Verification raises at the first failure; it never returns False. A check that could not be made is recorded as
``not checked`` with the reason (transparency.verdict), and the report says whether the verdict is complete."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transparency.verdict import NOT_CHECKED, WITNESS_HOW, Check, Verdict, recorded_requirement, witness_check
from transparency.verify import LogView

from .errors import StepFailed

__all__ = ["HOW", "Check", "FolderReport", "check_output_digests", "verify_folder"]

Record = Callable[[Check], None]


def _ignore(check: Check) -> None:
    pass


@dataclass(frozen=True)
class FolderReport:
    entries: int
    checkpoints: int
    cosigners: tuple[str, ...]  # the witness keys (named) whose cosignatures verified with the auditor's keys
    outputs: int
    provenance: int
    extractions_rerun: int
    checks: tuple[Check, ...] = ()

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.checks)


def _view(log: LogView | bytes) -> LogView:
    from transparency.verify import parse_log
    return log if isinstance(log, LogView) else parse_log(log)


def _files(log: LogView | bytes) -> dict[str, str]:
    files: dict[str, str] = {}
    for line in _view(log).entries:
        files.update(json.loads(line).get("files", {}))
    return files


def check_output_digests(folder: Path, log: LogView | bytes, seen: Callable[[str, str], None] | None = None) -> int:
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


def rerun_extractions(folder: Path, log: LogView | bytes) -> int:
    """Re-run each logged Toeplitz extraction from the retained samples and seed; the output digest must match."""
    count = 0
    for line in _view(log).entries:
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
    "Log key":
        "The key that must have signed the log's checkpoints is the one the auditor gives (--key: a verifier key or "
        "a PEM public key, obtained from the ceremony's published records). A key read from the folder being "
        "verified proves nothing: a folder whose log and log.pub were replaced together would verify with it.",
    "Log records and hash chain":
        "Each record of audit.log parsed as JSON; entry i carries sequence number i and the SHA-256 leaf hash "
        "(RFC 9162 2.1.1) of entry i-1, so a changed, removed or inserted entry is found.",
    "Signed checkpoints and consistency":
        "Every checkpoint is a C2SP signed note (c2sp.org/signed-note, tlog-checkpoint) verified with the log key; "
        "its tree size and root hash are recomputed from the entries (RFC 9162 2.1.1), and each checkpoint is "
        "proved consistent with the one before (RFC 9162 2.1.4), so the log only grew.",
    "Witness cosignatures": WITNESS_HOW,
    "Outputs against their logged digests":
        "Every file the log records is read and its SHA-256 compared with the digest logged when it was made.",
    "Extractions re-run":
        "Each logged Toeplitz extraction is re-run from the retained raw samples and extractor seed; the SHA-256 "
        "of the output must equal the logged one.",
    "Provenance statements": "Each key's in-toto statement in its DSSE envelope is verified with the log key.",
    "Papers":
        "transcript.html and transcript.pdf are renderings of the verified log: each is rendered again from the "
        "log and must be identical, byte for byte, so a paper edited after the ceremony is found.",
}


def _open_with(keys: list[Any]) -> Callable[[bytes, bytes], bool]:
    return lambda message, sig: any(k.accepts(message, sig) for k in keys)


def check_papers(folder: Path, view: LogView, verified: Any, version: str) -> Check:
    """Re-render the transcript from the verified log and compare it with each paper in the folder; raises
    TamperedError naming an altered paper. A paper made by another version (whose templates differ) cannot be
    compared here: not checked, and said."""
    import re

    from transparency.errors import TamperedError

    from .papers.record import transcript
    from .papers.render import PaperError, render
    name = "Papers"
    present = [p for p in (folder / "transcript.html", folder / "transcript.pdf") if p.is_file()]
    if not present:
        return Check(name, HOW[name], NOT_CHECKED, "the folder holds no transcript.html or transcript.pdf",
                     required=False)
    doc = transcript(view, verified)
    same: list[str] = []
    for path in present:
        held = path.read_bytes()
        made_by = re.search(rb"qrng-ceremony ([0-9][0-9A-Za-z.+-]*)", held)
        try:
            again = render(doc, path.suffix, version)
        except PaperError as exc:
            return Check(name, HOW[name], NOT_CHECKED, f"{path.name} cannot be rendered again here: {exc}")
        if again == held:
            same.append(path.name)
            continue
        if made_by is not None and made_by.group(1).decode() != version:
            return Check(name, HOW[name], NOT_CHECKED,
                         f"{path.name} was rendered by qrng-ceremony {made_by.group(1).decode()}, this verifier is "
                         f"{version}: verify with that version to compare the paper")
        raise TamperedError(f"{path}: differs from the transcript rendered from the verified log (the paper was "
                            "altered after the ceremony, or is not this log's)")
    return Check(name, HOW[name], "passed", f"{', '.join(same)} identical to the rendering of the verified log")


def verify_folder(folder: Path, keys: list[Any], witnesses: list[Any], *, key_from_auditor: bool = True,
                  key_source: str = "", witness_policy: Any = None, record: Record = _ignore,
                  seen: Callable[[str, str], None] | None = None, version: str | None = None,
                  log: tuple[bytes, LogView] | None = None) -> FolderReport:
    """Everything an auditor checks in a ceremony folder; raises AuditError, StepFailed or EnvelopeError at the first
    failure. ``keys`` are the log's verifier keys; ``key_from_auditor`` False when they were read from the folder
    itself (then the verdict cannot be complete). Each check is handed to ``record`` (for the auditor's report) as
    it is decided. ``log``: audit.log's bytes and their parse, when the caller already read them (parsed once)."""
    from qrng import __version__
    from qrng.dsse import open_envelope
    from transparency.errors import FormatError
    from transparency.verify import key_names, parse_log, verify_log

    from .provenance import PAYLOAD_TYPE
    checks: list[Check] = []

    def note(check: Check) -> None:
        checks.append(check)
        record(check)

    def ok(name: str, detail: str) -> None:
        note(Check(name, HOW[name], "passed", detail))

    described = ", ".join(f"{k.name} ({k.key_id.hex()})" for k in keys)
    if key_from_auditor:
        ok("Log key", f"given by the auditor ({key_source or '--key'}): {described}")
    else:
        note(Check("Log key", HOW["Log key"], NOT_CHECKED,
                   f"taken from {key_source} in the folder being verified (--trust-folder-key), not given by the "
                   "auditor: a folder whose log and log.pub were replaced together would pass"))
    if log is None:
        try:
            data = (folder / "audit.log").read_bytes()
        except FileNotFoundError:
            raise FormatError(f"{folder / 'audit.log'}: no such file (is {folder} a ceremony folder?)") from None
        log = data, parse_log(data)
    data, view = log
    ok("Log records and hash chain", f"{len(view.entries)} entries, {len(view.checkpoints)} checkpoints, "
                                     f"{sum(len(c.cosignatures) for c in view.checkpoints)} cosignatures")
    r = verify_log(data, keys, witnesses, 0, view=view)
    ok("Signed checkpoints and consistency",
       f"{r.checkpoints} checkpoints signed by the log key; the latest covers all {r.entries} entries")
    note(witness_check(r.cosigners, len(r.cosignature_lines), r.latest.size,
                       recorded_requirement(view.entries[:r.latest.size]), len(witnesses),
                       policy=witness_policy, how=HOW["Witness cosignatures"]))
    outputs = check_output_digests(folder, view, seen)  # the view verified above: the log is parsed once
    ok("Outputs against their logged digests", f"{outputs} files match")
    rerun = rerun_extractions(folder, view)
    ok("Extractions re-run", f"{rerun} extraction(s) re-run; outputs identical" if rerun else
       "no Toeplitz extraction logged")
    provs = sorted(folder.glob("*.provenance.json"))
    for p in provs:
        open_envelope(json.loads(p.read_text()), PAYLOAD_TYPE, _open_with(keys))
    ok("Provenance statements", ", ".join(p.name for p in provs) + " verified" if provs else "none in the folder")
    note(check_papers(folder, view, r, version or __version__))
    return FolderReport(r.entries, r.checkpoints, key_names(r.cosigners), outputs, len(provs), rerun,
                        tuple(checks))
