"""Key specifications as the scripts state them (KeySpec itself is the HSM edge's, qrng/hsm/keys.py)."""

from __future__ import annotations

from qrng.errors import ConfigError
from qrng.hsm.keys import CURVES, KeySpec
from qrng.yaml_input import Fields

__all__ = ["CURVES", "KeySpec", "parse_key_spec"]

LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


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
