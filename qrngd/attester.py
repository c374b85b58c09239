"""Device attestation inside qrngd (issue 13; the guide's M8): a USB QRNG that speaks the protocol is attested
with a fresh nonce when its source is opened and again every ``every`` seconds, against the manufacturer roots
given to the daemon (docs/usb-protocol.md, "Verification"). A device that fails is not served from (its source
is closed and opened again, with attestation, a second later): fail closed. Sources that cannot attest (the
simulator, a file, /dev/hwrng) are not attested and say so (``None``).

The result feeds the metrics ``qrng_attestation_valid``, ``qrng_attestation_expiry_timestamp_seconds`` and
``qrng_attestation_verified_timestamp_seconds``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Attester"]


@dataclass(frozen=True)
class Attester:
    """``state``: a JSON file keeping the last attestation counter seen per device serial, so a statement whose
    counter goes back (a replay, or a device reset to an earlier state) fails across re-attestations *and*
    restarts; without it the counters are kept for the daemon's life only."""

    roots_pem: tuple[Path, ...]
    allow_emulator: bool = False
    every_s: float = 3600.0
    state: Path | None = None
    counters: dict[str, int] = field(default_factory=dict, compare=False)

    def _load(self) -> None:
        if self.counters or self.state is None or not self.state.exists():
            return
        import json
        try:
            data = json.loads(self.state.read_text())
            self.counters.update({str(k): int(v) for k, v in data.items()})
        except (ValueError, TypeError, AttributeError, OSError) as exc:
            from qrng.attestation.statement import AttestationError
            raise AttestationError(f"{self.state}: the attestation counters cannot be read ({exc}); a device is "
                                   "not served while its last counter is unknown") from None

    def _save(self) -> None:
        if self.state is None:
            return
        import json

        from qrng.atomic import atomic_write
        atomic_write(self.state, json.dumps(self.counters, sort_keys=True).encode(), overwrite=True)

    def roots(self) -> list[Any]:
        from cryptography import x509
        out = []
        for p in self.roots_pem:
            out += x509.load_pem_x509_certificates(p.read_bytes())
        return out

    def __call__(self, seed: Any) -> dict[str, Any] | None:
        """Attest the seed source's device now; raises AttestationError (an EntropyError) when it does not verify.
        None: the source has no device that attests (a simulator, a file, an upstream qrngd)."""
        from cryptography import x509

        from qrng.attestation.usb import bind_to_source, verify_usb_attestation
        src = seed.device
        if src is None or not hasattr(src, "attest"):
            return None
        self._load()
        in_use = getattr(src, "device_info", None)
        last = self.counters.get(in_use.serial, 0) if in_use is not None else 0
        nonce = os.urandom(32)
        statement, info_raw = src.attest(nonce)
        _, chain = src.chain()
        r = verify_usb_attestation(statement, info_raw, chain, nonce, self.roots(), self.allow_emulator,
                                   last_counter=last)  # a counter that goes back fails: a replayed statement
        bind_to_source(r, in_use)  # the identity it serves under is the attested one
        self.counters[r.serial] = r.counter
        self._save()
        device = x509.load_der_x509_certificate(chain[0])
        return {"valid": True, "serial": r.serial, "model": r.model, "emulator": r.emulator, "counter": r.counter,
                "firmware_sha256": r.firmware_sha256, "verified_at": time.time(),
                "not_after": device.not_valid_after_utc.timestamp()}
