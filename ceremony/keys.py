"""Key specifications as the scripts state them (a leaf module: steps, the HSM edge and the model import it)."""

from __future__ import annotations

from dataclasses import dataclass

from qrng.errors import ConfigError
from qrng.yaml_input import Fields

__all__ = ["CURVES", "KeySpec", "parse_key_spec"]

LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
CURVES = {"P-256": "1.2.840.10045.3.1.7", "P-384": "1.3.132.0.34", "P-521": "1.3.132.0.35"}


@dataclass(frozen=True)
class KeySpec:
    label: str
    type: str  # rsa | ec | ed25519
    size: int = 0  # RSA modulus bits
    curve: str = ""  # EC curve name

    def describe(self) -> str:
        return {"rsa": f"RSA-{self.size}", "ec": f"EC {self.curve}", "ed25519": "Ed25519"}[self.type]


def parse_key_spec(f: Fields) -> KeySpec:
    kind = f.text("type", choices=("rsa", "ec", "ed25519"))
    label: str = f.text("label")
    if not label or len(label) > 64:
        raise ConfigError(f.p("label"), "must be 1 to 64 characters")
    # the label names output files (<label>.pub.pem, <label>.provenance.json): a plain, safe file-name stem
    if not set(label) <= LABEL_CHARS or label.startswith((".", "-")):
        raise ConfigError(f.p("label"), f"must be letters, digits, '-', '_' or '.', not starting with '.' or '-' "
                                        f"(got {label!r}); it names output files")
    if kind == "rsa":
        spec = KeySpec(label, kind, size=f.integer("size", lo=2048, hi=8192))
    elif kind == "ec":
        spec = KeySpec(label, kind, curve=f.text("curve", choices=tuple(CURVES)))
    else:
        spec = KeySpec(label, kind)
    f.done()
    return spec
