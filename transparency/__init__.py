"""Transparency: the tamper-evident audit log (RFC 9162 Merkle tree, C2SP signed checkpoints, cosignatures and
proofs; log.py, verify.py), the log as C2SP tiles on any static server (tiles.py, tilesio.py), tlog-witness
witnesses and policies (witness*.py, policy.py), and the witnessed randomness beacon (beacon.py, the pulse format
and its verification; beacon_service.py, the service the CLI starts)."""

__all__: list[str] = []
