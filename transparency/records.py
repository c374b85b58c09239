"""The log's record encoding: one JSON object per line; an entry's line is its Merkle leaf, byte for byte.

Entries are canonical JSON (sorted keys, no spaces, UTF-8). Each carries ``prev``, the hex leaf hash of
the entry before it, so a changed entry is named precisely; the Merkle tree and signed checkpoints are
what make the log tamper-evident. Checkpoint and cosignature records are not leaves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Entry", "canonical", "ENTRY", "CHECKPOINT", "COSIGNATURE"]

ENTRY, CHECKPOINT, COSIGNATURE = "entry", "checkpoint", "cosignature"


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Entry:
    """One audit event: sequence number (= leaf index), time, ceremony identity, step, actor, event type,
    SHA-256 digests of the files it refers to, event data, and the previous entry's leaf hash."""

    seq: int
    time: str
    ceremony: str
    step: str
    actor: str
    event: str
    files: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    prev: str = ""

    def encode(self) -> bytes:
        return canonical({"kind": ENTRY, **asdict(self)})

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> Entry:
        return cls(seq=obj["seq"], time=obj["time"], ceremony=obj["ceremony"], step=obj["step"],
                   actor=obj["actor"], event=obj["event"], files=obj.get("files", {}), data=obj.get("data", {}),
                   prev=obj.get("prev", ""))
