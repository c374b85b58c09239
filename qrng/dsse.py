"""DSSE envelopes (github.com/secure-systems-lab/dsse, v1): signatures over
PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, LEN in ASCII decimal."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

__all__ = ["EnvelopeError", "open_envelope", "pae", "seal"]


class EnvelopeError(ValueError):
    """The envelope is malformed, of the wrong type, or no signature verifies."""


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def seal(payload_type: str, payload: bytes, sign: Callable[[bytes], bytes], keyid: str = "") -> dict[str, Any]:
    sig = sign(pae(payload_type, payload))
    return {"payloadType": payload_type, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}]}


def open_envelope(env: dict[str, Any] | str, payload_type: str, verify: Callable[[bytes, bytes], bool]) -> bytes:
    """Return the payload if ``verify(pae, signature)`` accepts one signature; raise EnvelopeError otherwise."""
    if isinstance(env, str):
        try:
            env = json.loads(env)
        except ValueError:
            raise EnvelopeError("envelope is not JSON") from None
    if not isinstance(env, dict) or env.get("payloadType") != payload_type:
        raise EnvelopeError(f"envelope payloadType must be {payload_type!r}")
    try:
        payload = base64.b64decode(env["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in env["signatures"]]
    except (KeyError, TypeError, ValueError):
        raise EnvelopeError("envelope payload or signatures are malformed") from None
    message = pae(payload_type, payload)
    if not any(verify(message, s) for s in sigs):
        raise EnvelopeError("no envelope signature verifies")
    return payload
