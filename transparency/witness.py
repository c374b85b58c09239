"""A C2SP tlog-witness (https://c2sp.org/tlog-witness, v1): the add-checkpoint decision, pure.

``add_checkpoint`` takes the request body, the logs the witness knows (origin -> verifier keys), its state (the
latest checkpoint it cosigned per origin), a signer and the time, and answers exactly as the spec says:
400 malformed or old > size, 404 unknown origin, 403 no valid signature from the log's key, 409 with the witness's
latest size (``text/x.tlog.size``) when old is not that size, 422 a consistency proof that does not verify (or a
proof from size zero, or a size-zero checkpoint whose root is not the empty tree's), 409 also for a checkpoint of
the cosigned size with another root, 200 with the cosignature/v1 line (tlog-cosignature) after the new state is
committed. Checking the old size and committing the new one happen under the state's per-origin lock, so two
requests can never roll the witness back; the witness never cosigns a checkpoint inconsistent with one it
cosigned before, across restarts (the state is durable; see witness_server.py)."""

from __future__ import annotations

import base64
import binascii
import contextlib
from dataclasses import dataclass
from typing import Protocol

from qrng.asciinum import is_ascii_decimal

from .errors import FormatError, ProofError, SignatureError
from .merkle import EMPTY_ROOT, verify_consistency
from .note import Checkpoint, Signer, Verifier, cosign, parse_note, verify_note

__all__ = ["Answer", "WitnessState", "add_checkpoint", "parse_request"]

MAX_PROOF_LINES = 63
SIZE_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class WitnessState(Protocol):
    def latest(self, origin: str) -> tuple[int, bytes]:
        """(size, root) of the latest checkpoint cosigned for ``origin``; (0, EMPTY_ROOT) before the first."""
        ...

    def commit(self, origin: str, size: int, root: bytes, cosigned_note: str) -> None:
        """Durably record the new latest checkpoint (raises if it cannot: then nothing is cosigned)."""
        ...

    def lock(self, origin: str) -> contextlib.AbstractContextManager[None]:
        ...


def parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """(old size, consistency proof, checkpoint note); FormatError for anything malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("the request is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise FormatError("no empty line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise FormatError("the first line must be `old <size>`")
    old_s = lines[0][4:]
    if not is_ascii_decimal(old_s):
        raise FormatError(f"old size {old_s!r} is not a decimal without leading zeros")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise FormatError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for ln in lines[1:]:
        try:
            h = base64.b64decode(ln, validate=True)
        except binascii.Error:
            raise FormatError("a consistency proof line is not base64") from None
        if len(h) != 32:
            raise FormatError("a consistency proof hash is not 32 bytes")
        proof.append(h)
    return int(old_s), proof, note


def add_checkpoint(body: bytes, logs: dict[str, list[Verifier]], state: WitnessState, signer: Signer,
                   now: int) -> Answer:
    try:
        old, proof, note = parse_request(body)
        text, _ = parse_note(note)
        cp = Checkpoint.parse(text)
    except FormatError as exc:
        return Answer(400, f"malformed request: {exc}\n".encode())
    keys = logs.get(cp.origin)
    if keys is None:
        return Answer(404, f"unknown log origin {cp.origin!r}\n".encode())
    try:
        verify_note(note, keys)
    except (SignatureError, FormatError) as exc:
        return Answer(403, f"checkpoint not signed by the log's key: {exc}\n".encode())
    if old > cp.size:
        return Answer(400, f"old size {old} is larger than the checkpoint's {cp.size}\n".encode())
    if cp.size == 0 and cp.root != EMPTY_ROOT:
        return Answer(422, b"a size-zero checkpoint must have the empty tree's root\n")
    with state.lock(cp.origin):
        size, root = state.latest(cp.origin)
        if old != size:
            return Answer(409, f"{size}\n".encode(), SIZE_TYPE)
        if cp.size == size and cp.root != root and size > 0:
            # tlog-witness: "If the old size matches the checkpoint size, the witness MUST check that the root
            # hashes are also identical. If they don't match, the witness MUST respond with a 409 Conflict"
            return Answer(409, f"{size}\n".encode(), SIZE_TYPE)
        try:
            if old == 0:
                if proof:
                    raise ProofError("a proof from size zero must be empty")
            else:
                verify_consistency(old, cp.size, root, cp.root, proof)
        except ProofError as exc:
            return Answer(422, f"not consistent with the checkpoint this witness cosigned (size {size}): {exc}\n"
                          .encode())
        sig = cosign(text, signer, now).line()
        state.commit(cp.origin, cp.size, cp.root, (note if note.endswith("\n") else note + "\n") + sig)
        return Answer(200, sig.encode())
