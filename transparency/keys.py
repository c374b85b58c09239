"""The keys an auditor supplies, in the formats auditors hold: a C2SP verifier key string
(``<name>+<hex key ID>+<base64(type || key)>``, c2sp.org/signed-note), a file holding one, or a PEM public key
(SubjectPublicKeyInfo, what ``export_public`` writes and what a CA or witness operator publishes).

A PEM key carries no key name, and in a signed note a key is identified by its name and key ID (signed-note: "The
tuple of key name and key ID uniquely identifies the key"). A PEM key is therefore bound to the names that the
signature lines being verified use: for each line whose key ID is this key's ID under that line's name, the key
becomes the verifier ``name+id+key`` for that name. A line it does not match is simply not its signature; the
key never matches a signature made by another key.

Roles decide the signature type of a PEM key: a log key is Ed25519 (type 0x01) or ECDSA (type 0x02); a witness
key is an Ed25519 cosignature key (type 0x04, c2sp.org/tlog-cosignature) or ML-DSA-44 (type 0x06).

Pure apart from :func:`read_key`, which reads a file when given a path. Errors never quote key material."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from .errors import FormatError
from .note import (
    ALG_COSIGNATURE_V1,
    ALG_ECDSA,
    ALG_ED25519,
    ALG_MLDSA44_COSIGNATURE,
    COSIGNATURE_ALGS,
    Verifier,
    describe_key_text,
)

__all__ = ["KeyFileMissing", "Role", "SignatureIds", "key_from_pem", "read_key", "signature_ids"]

Role = Literal["log", "witness"]
SignatureIds = frozenset[tuple[str, bytes]]  # (key name, key ID) of the signature lines a key may be bound to
LOG_ALGS = (ALG_ED25519, ALG_ECDSA, ALG_MLDSA44_COSIGNATURE)  # tlog-checkpoint: logs SHOULD use ML-DSA-44


class KeyFileMissing(FormatError, FileNotFoundError):
    """A key was given as a path that does not exist: "no such file", naming it."""


def signature_ids(notes: Iterable[str]) -> SignatureIds:
    """The (key name, key ID) pairs of every signature line of these signed notes (cosignatures included)."""
    from .note import parse_note
    ids: set[tuple[str, bytes]] = set()
    for note in notes:
        try:
            _, sigs = parse_note(note)
        except FormatError:
            continue  # a malformed note is reported by the verifier that reads it
        ids.update((s.name, s.key_id) for s in sigs)
    return frozenset(ids)


def _pem_public(pem: bytes, where: str) -> tuple[str, bytes, bytes]:
    """(kind, raw public key, DER SubjectPublicKeyInfo) of a PEM public key or certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    pub: Any
    try:
        if b"CERTIFICATE" in pem:
            pub = x509.load_pem_x509_certificate(pem).public_key()
        else:
            pub = serialization.load_pem_public_key(pem)
    except ValueError:
        raise FormatError(f"{where}: not a PEM public key or certificate this tool can read") from None
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return "ed25519", pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw), spki
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise FormatError(f"{where}: ECDSA on {pub.curve.name} is not a signed-note key (P-256/384/521)")
        return "ecdsa", b"", spki
    from cryptography.hazmat.primitives.asymmetric import mldsa
    if isinstance(pub, mldsa.MLDSA44PublicKey):
        return "mldsa44", pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw), spki
    raise FormatError(f"{where}: a {type(pub).__name__.removesuffix('PublicKey') or 'key'} key is not a "
                      "signed-note key (Ed25519, ECDSA or ML-DSA-44)")


def _alg_for(kind: str, role: Role, where: str) -> int:
    table = {("ed25519", "log"): ALG_ED25519, ("ecdsa", "log"): ALG_ECDSA, ("mldsa44", "log"): ALG_MLDSA44_COSIGNATURE,
             ("ed25519", "witness"): ALG_COSIGNATURE_V1, ("mldsa44", "witness"): ALG_MLDSA44_COSIGNATURE}
    alg = table.get((kind, role))
    if alg is None:
        want = "Ed25519 or ECDSA" if role == "log" else "Ed25519 or ML-DSA-44"
        raise FormatError(f"{where}: a {role} key must be {want}; this PEM key is {kind}")
    return alg


def key_from_pem(pem: bytes, role: Role, name: str, where: str = "PEM key") -> Verifier:
    """The verifier key ``name+id+key`` of a PEM public key in ``role`` (the documented conversion)."""
    from .note import _key_id
    kind, raw, spki = _pem_public(pem, where)
    alg = _alg_for(kind, role, where)
    key = spki if alg == ALG_ECDSA else raw
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise FormatError(f"{where}: the key name must be non-empty, without spaces or '+'")
    return Verifier(name, _key_id(name, alg, key), alg, key)


def _bind_pem(pem: bytes, role: Role, seen: SignatureIds, where: str) -> list[Verifier]:
    """The verifiers of a PEM key under every name whose signature lines carry its key ID (see the module doc)."""
    from .note import _key_id
    kind, raw, spki = _pem_public(pem, where)
    alg = _alg_for(kind, role, where)
    key = spki if alg == ALG_ECDSA else raw
    bound = [Verifier(n, kid, alg, key) for n, kid in sorted(seen) if _key_id(n, alg, key) == kid
             and n and not any(c.isspace() for c in n) and "+" not in n]
    if bound:
        return bound
    # no signature line is this key's: a verifier that matches none, so the verdict names the key as absent
    digest = hashlib.sha256(key).hexdigest()[:16]
    return [Verifier(f"pem-{digest}", _key_id(f"pem-{digest}", alg, key), alg, key)]


def read_key(value: str, role: Role, seen: SignatureIds = frozenset(), what: str = "key") -> list[Verifier]:
    """A key the auditor gave (``--key``, ``--witness``): a verifier key string, or a file holding one or a PEM
    public key. A path that does not exist says "no such file", naming it; a private key is refused without
    quoting it. Returns the verifier keys it stands for (a PEM key: one per name it signed under)."""
    path = Path(value)
    looks_like_string = value.count("+") >= 2 and "\n" not in value and not path.exists()
    if looks_like_string:
        return [_check_role(Verifier.parse(value), role, what)]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileMissing(f"{what} {value}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{what} {value}: is a folder, not a key file") from None
    except OSError as exc:
        raise FormatError(f"{what} {value}: cannot read ({exc.strerror})") from None
    if len(data) > 64 << 10:
        raise FormatError(f"{what} {value}: larger than 64 KiB; not a key file")
    text = data.decode("utf-8", "replace")
    if "-----BEGIN" in text:
        kind = describe_key_text(text)
        if "private" in kind.lower():
            raise FormatError(f"{what} {value}: holds {kind}; give the public key")
        return _bind_pem(data, role, seen, f"{what} {value}")
    try:
        return [_check_role(Verifier.parse(text), role, f"{what} {value}")]
    except FormatError as exc:
        raise FormatError(f"{what} {value}: {exc}") from None


def _check_role(v: Verifier, role: Role, what: str) -> Verifier:
    if role == "witness" and v.alg not in COSIGNATURE_ALGS:
        raise FormatError(f"{what}: witness keys are cosignature keys (type 0x04 Ed25519 or 0x06 ML-DSA-44); "
                          f"{v.name} is type {v.alg:#04x}")
    if role == "log" and v.alg not in LOG_ALGS:
        raise FormatError(f"{what}: a log key signs checkpoints (type 0x01 Ed25519, 0x02 ECDSA or 0x06 ML-DSA-44); "
                          f"{v.name} is type {v.alg:#04x}, a cosignature key")
    return v
