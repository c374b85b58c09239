"""Key specifications: what a key is (type, size, curve) and its label in the token."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CURVES", "KeySpec"]

CURVES = {"P-256": "1.2.840.10045.3.1.7", "P-384": "1.3.132.0.34", "P-521": "1.3.132.0.35"}


@dataclass(frozen=True)
class KeySpec:
    label: str
    type: str  # rsa | ec | ed25519
    size: int = 0  # RSA modulus bits
    curve: str = ""  # EC curve name

    def describe(self) -> str:
        return {"rsa": f"RSA-{self.size}", "ec": f"EC {self.curve}", "ed25519": "Ed25519"}[self.type]
