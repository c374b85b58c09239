"""A witnessed QRNG randomness beacon: pulses in the shape of the NIST Randomness Beacon 2.0 format (NISTIR 8213),
pure. The loop that makes them (QRNG, HSM, audit log, witnesses, tiles) is qrng_cli/beacon.py.

A pulse: version, period, chain and pulse indices, timestamp (UTC, on the period), a 512-bit local random value
(extracted, health-tested QRNG output), the precommitment (SHA-512 of the next pulse's local random value), the
previous pulse's output value and the hour, day, month and year link values, the status code, the signature by the
beacon key over all of that (C2SP signed-note key: Ed25519, possibly held in an HSM), and the output value: SHA-512
of everything including the signature. Status codes (bit flags, as NIST's): 0 normal; 1 the first pulse of a chain;
2 a time gap before this pulse (pulses were not emitted: a failed health state never emits a pulse); 4 the previous
pulse's precommitment is not honoured (a restart lost the precommitted value).

Link values: ``hour`` is the output value of the first pulse of this chain in the UTC hour of the previous pulse
(likewise day, month, year), all zeros before there is one; they let a relying party check a pulse against an old
one quickly. Every pulse is an entry of a tiles log whose checkpoint is witnessed, so a relying party can prove a
pulse was published before it was used and that no other pulse with its index was ever signed.

Beacon values are public. They must never be used as secret keys or seeds of secrets."""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from .audit.note import Signer, Verifier

__all__ = ["STATUS_CHAIN_START", "STATUS_GAP", "STATUS_PRECOMMIT_BROKEN", "BeaconError", "Pulse", "next_pulse",
           "verify_pulses"]

VERSION = "qrng-ceremony beacon 1 (NIST Randomness Beacon 2.0 format)"
STATUS_CHAIN_START, STATUS_GAP, STATUS_PRECOMMIT_BROKEN = 1, 2, 4
ZERO = "00" * 64
CONTEXT = b"qrng-ceremony beacon pulse v1\n"


class BeaconError(Exception):
    """A pulse or a run of pulses does not verify; names the pulse index and the check."""


@dataclass(frozen=True)
class Pulse:
    version: str
    period_ms: int
    chain_index: int
    pulse_index: int
    time_stamp: str              # RFC 3339, UTC, on the period
    local_random_value: str      # 512 bits, hex
    precommitment_value: str     # SHA-512(next pulse's local_random_value), hex
    previous: str                # output values, hex
    hour: str
    day: str
    month: str
    year: str
    status_code: int
    signer: str                  # the beacon key's C2SP verifier key string
    signature_value: str = ""    # base64
    output_value: str = ""       # hex

    def signed_bytes(self) -> bytes:
        d = asdict(self)
        d.pop("signature_value")
        d.pop("output_value")
        return CONTEXT + json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    def computed_output(self) -> str:
        return hashlib.sha512(self.signed_bytes() + base64.b64decode(self.signature_value)).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pulse:
        try:
            return cls(**d)
        except TypeError as exc:
            raise BeaconError(f"not a pulse: {exc}") from None


def _stamp(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _when(p: Pulse) -> datetime.datetime:
    return datetime.datetime.strptime(p.time_stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)


def _links(history: list[Pulse]) -> tuple[str, str, str, str]:
    """hour, day, month, year: the first pulse of the chain in the UTC hour (day, month, year) of the last pulse."""
    if not history:
        return ZERO, ZERO, ZERO, ZERO
    last = _when(history[-1])
    out = []
    for fmt in ("%Y%m%d%H", "%Y%m%d", "%Y%m", "%Y"):
        first = next((p for p in history if _when(p).strftime(fmt) == last.strftime(fmt)), None)
        out.append(first.output_value if first else ZERO)
    return out[0], out[1], out[2], out[3]


def next_pulse(history: list[Pulse], when: datetime.datetime, period_ms: int, local: bytes, next_local: bytes,
               signer: Signer, chain_index: int = 1, gap: bool = False, precommit_broken: bool = False) -> Pulse:
    """The pulse after ``history`` (this chain's pulses so far, in order) at ``when``."""
    if len(local) != 64 or len(next_local) != 64:
        raise ValueError("local random values are 512 bits")
    prev = history[-1] if history else None
    status = (STATUS_CHAIN_START if prev is None else 0) | (STATUS_GAP if gap else 0) | \
        (STATUS_PRECOMMIT_BROKEN if precommit_broken else 0)
    hour, day, month, year = _links(history)
    p = Pulse(VERSION, period_ms, chain_index, prev.pulse_index + 1 if prev else 1, _stamp(when), local.hex(),
              hashlib.sha512(next_local).hexdigest(), prev.output_value if prev else ZERO, hour, day, month, year,
              status, str(signer.verifier))
    p = replace(p, signature_value=base64.b64encode(signer.sign(p.signed_bytes())).decode())
    return replace(p, output_value=p.computed_output())


def verify_pulses(pulses: list[Pulse], key: Verifier, whole_chain: bool = True) -> None:
    """Signatures, output values, chaining, precommitments, link values and timing of consecutive pulses of one
    chain (``whole_chain``: they start at its first pulse, so link values are recomputed). Raises BeaconError, also
    for a pulse whose fields are not what they must be (hex, base64, a time stamp)."""
    for i, p in enumerate(pulses):
        try:
            _verify_one(pulses, i, key, whole_chain)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise BeaconError(f"pulse {getattr(p, 'pulse_index', i)}: a malformed field ({exc})") from None


def _verify_one(pulses: list[Pulse], i: int, key: Verifier, whole_chain: bool) -> None:
    p = pulses[i]
    at = f"pulse {p.pulse_index}"
    if p.signer != str(key):
        raise BeaconError(f"{at}: signed by {p.signer.split('+')[0]}, not by the beacon key {key.name}")
    if not key.verify(p.signed_bytes(), base64.b64decode(p.signature_value)):
        raise BeaconError(f"{at}: the signature does not verify")
    if p.computed_output() != p.output_value:
        raise BeaconError(f"{at}: the output value is not SHA-512 of the pulse and its signature")
    if len(bytes.fromhex(p.local_random_value)) != 64:
        raise BeaconError(f"{at}: the local random value is not 512 bits")
    if i == 0:
        if whole_chain and (p.status_code & STATUS_CHAIN_START == 0 or p.previous != ZERO):
            raise BeaconError(f"{at}: the first pulse of a chain must say so (status 1) and link to nothing")
        return
    q = pulses[i - 1]
    if p.chain_index != q.chain_index or p.pulse_index != q.pulse_index + 1:
        raise BeaconError(f"{at}: does not follow pulse {q.pulse_index} of chain {q.chain_index}")
    if p.previous != q.output_value:
        raise BeaconError(f"{at}: its previous value is not pulse {q.pulse_index}'s output value")
    if _when(p) <= _when(q):
        raise BeaconError(f"{at}: its time stamp is not after pulse {q.pulse_index}'s")
    honoured = hashlib.sha512(bytes.fromhex(p.local_random_value)).hexdigest() == q.precommitment_value
    if not honoured and not p.status_code & STATUS_PRECOMMIT_BROKEN:
        raise BeaconError(f"{at}: its local random value is not the one pulse {q.pulse_index} precommitted to")
    late = (_when(p) - _when(q)).total_seconds() * 1000 > 1.5 * p.period_ms
    if late and not p.status_code & STATUS_GAP:
        raise BeaconError(f"{at}: comes after a gap but its status code does not say so")
    if whole_chain and (p.hour, p.day, p.month, p.year) != _links(pulses[:i]):
        raise BeaconError(f"{at}: its hour/day/month/year link values are wrong")
