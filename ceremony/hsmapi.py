"""What a ceremony needs from an HSM, as a Protocol. qrng.hsm.HsmSession implements it with python-pkcs11 (SoftHSM2 or
a production HSM); unit tests implement it in memory. The runner and the steps know only this interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from qrng.hsm import GeneratedKey, KeySpec

__all__ = ["GeneratedKey", "HsmApi"]


class HsmApi(Protocol):
    def token_info(self) -> dict[str, str]:
        """Manufacturer, model, serial and label of the token, for the log."""

    def mechanisms(self) -> set[int]:
        """The CKM_* mechanisms the token offers (C_GetMechanismList)."""

    def private_keys(self, label: str) -> list[Any]:
        """Private key objects with this label (empty: none)."""

    def find(self, spec: KeySpec, key_id: bytes) -> GeneratedKey | None:
        """The key pair with this label and CKA_ID, read back and checked; None when there is none."""

    def generate(self, spec: KeySpec, key_id: bytes) -> GeneratedKey:
        """Generate a key pair inside the token (token, private, sensitive, never extractable); read it back."""

    def sign(self, spec: KeySpec, key_id: bytes, data: bytes, hash_name: str = "") -> bytes:
        """Sign ``data`` with the private key (X.509 formats: DER ECDSA, PKCS#1 v1.5 RSA, raw Ed25519)."""

    def log_signer(self, label: str) -> tuple[bytes, Callable[[bytes], bytes]]:
        """The DER public key and a signing function of a log key held in the token (ECDSA P-256 or Ed25519)."""

    def seed_random(self, data: bytes) -> str:
        """C_SeedRandom: "accepted", or the CKR name the token answered."""

    def close(self) -> None:
        """End the session."""
