"""Key provenance: a DSSE envelope around an in-toto Statement v1 whose subject is the key's public key
digest, and whose predicate records where the key came from: the device attestation, the entropy
commitment, the template sent, the attributes read back, the step and the time."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from qrng.dsse import seal

__all__ = ["PAYLOAD_TYPE", "PREDICATE_TYPE", "statement", "sign_statement"]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://qrng-ceremony.invalid/key-provenance/v1"


def statement(label: str, public_der: bytes, predicate: dict[str, Any]) -> dict[str, Any]:
    return {"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": label, "digest": {"sha256": hashlib.sha256(public_der).hexdigest()}}],
            "predicateType": PREDICATE_TYPE, "predicate": predicate}


def sign_statement(stmt: dict[str, Any], sign: Any, keyid: str) -> dict[str, Any]:
    payload = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    return seal(PAYLOAD_TYPE, payload, sign, keyid)
