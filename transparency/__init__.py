"""Tamper-evident audit log: RFC 9162 Merkle tree, C2SP signed checkpoints, cosignatures and proofs."""

__all__: list[str] = []
