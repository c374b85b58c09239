"""Exceptions of the audit log. Verification raises; it never returns False."""

from __future__ import annotations

__all__ = ["AuditError", "FormatError", "ProofError", "QuorumNotMet", "SignatureError", "TamperedError",
           "TileUnavailable", "TornLogError"]


class AuditError(Exception):
    """Root of audit-log failures."""


class FormatError(AuditError, ValueError):
    """A note, checkpoint, proof or key string is malformed (names what and where)."""


class ProofError(AuditError):
    """An inclusion or consistency proof does not verify (carries the computed and expected roots)."""

    def __init__(self, message: str, got: bytes | None = None, want: bytes | None = None) -> None:
        extra = f" (computed {got.hex()[:16]}..., expected {want.hex()[:16]}...)" if got and want else ""
        super().__init__(message + extra)
        self.got, self.want = got, want


class SignatureError(AuditError):
    """A signature from a known key fails, or no trusted signature is present, or a quorum is missing."""


class QuorumNotMet(SignatureError):
    """The witness keys the verifier was given did not cosign enough (the log itself may be intact): a failed
    verification, named as what it is rather than as tampering."""


class TamperedError(AuditError):
    """The log does not match its signed checkpoints; ``index`` names the first bad entry when known."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class TornLogError(TamperedError):
    """The last record of the log is incomplete (a crash mid-write, or truncation)."""


class TileUnavailable(AuditError):
    """A tile, entry bundle or checkpoint of a tiles log cannot be fetched (missing, HTTP error, unreachable):
    the log cannot be verified, which is a failed verification, never a pass."""

