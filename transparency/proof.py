"""Offline inclusion proofs in the C2SP tlog-proof format (c2sp.org/tlog-proof@v1)."""

from __future__ import annotations

import base64
import binascii

from qrng.asciinum import is_ascii_decimal

from .errors import FormatError, ProofError, SignatureError
from .merkle import leaf_hash, verify_inclusion
from .note import Checkpoint, Verifier, verify_note

__all__ = ["HEADER", "format_proof", "parse_proof", "verify_proof"]

HEADER = "c2sp.org/tlog-proof@v1"


def format_proof(index: int, hashes: list[bytes], checkpoint_note: str, extra: bytes | None = None) -> str:
    lines = [HEADER]
    if extra is not None:
        lines.append("extra " + base64.b64encode(extra).decode())
    lines.append(f"index {index}")
    lines += [base64.b64encode(h).decode() for h in hashes]
    return "\n".join(lines) + "\n\n" + checkpoint_note


def parse_proof(text: str) -> tuple[int, list[bytes], str, bytes | None]:
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise FormatError("proof has no blank line before its checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise FormatError(f"proof must start with {HEADER!r}")
    i = 1
    extra = None
    if i < len(lines) and lines[i].startswith("extra "):
        extra = base64.b64decode(lines[i][6:])
        i += 1
    if i >= len(lines) or not lines[i].startswith("index "):
        raise FormatError("proof has no index line")
    idx = lines[i][6:]
    if not is_ascii_decimal(idx):
        raise FormatError(f"proof index {idx!r} is not a decimal without leading zeros")
    try:
        hashes = [base64.b64decode(h, validate=True) for h in lines[i + 1:]]
    except binascii.Error:
        raise FormatError("proof hash lines must be base64") from None
    if any(len(h) != 32 for h in hashes):
        raise FormatError("proof hashes must be 32 bytes")
    return int(idx), hashes, note, extra


def verify_proof(text: str, entry: bytes, log_keys: list[Verifier], witness_keys: list[Verifier] | None = None,
                 quorum: int = 0) -> Checkpoint:
    """Verify that ``entry`` (the exact leaf bytes) is in the log the signed checkpoint commits to."""
    index, hashes, note, _ = parse_proof(text)
    checkpoint_text, _ = verify_note(note, log_keys)
    cp = Checkpoint.parse(checkpoint_text)
    if quorum:
        try:
            _, ok = verify_note(note, witness_keys or [])
        except SignatureError as exc:
            raise SignatureError(f"witness quorum: {exc}") from None
        if len({v.name for v in ok}) < quorum:
            raise SignatureError(f"{len(ok)} of {quorum} required witness cosignatures")
    verify_inclusion(index, cp.size, leaf_hash(entry), hashes, cp.root)
    if not hashes and cp.size != 1:
        raise ProofError("empty proof for a tree of more than one entry")
    return cp
