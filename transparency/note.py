"""C2SP signed notes (c2sp.org/signed-note), checkpoints (c2sp.org/tlog-checkpoint) and cosignatures
(c2sp.org/tlog-cosignature v1). Pure apart from the signing callables a Signer wraps.

Signature types: 0x01 Ed25519 (key ID over name, 0x0A, type, 32-byte key); 0x02 ECDSA P-256 over
SHA-256, ASN.1 DER signatures, key ID = SHA-256(DER SubjectPublicKeyInfo)[:4] (as transparency-dev/witness
implements it, which the spec names); 0x04 timestamped Ed25519 cosignature, signing
``cosignature/v1\\ntime <t>\\n`` followed by the checkpoint body, signature = u64 BE time || Ed25519.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from qrng.asciinum import is_ascii_decimal

from .errors import FormatError, SignatureError

__all__ = [
    "ALG_COSIGNATURE_V1", "ALG_ECDSA", "ALG_ED25519", "ALG_MLDSA44_COSIGNATURE", "Checkpoint", "NoteSignature",
    "Signer", "Verifier", "cosignature_message", "ecdsa_signer", "ed25519_signer", "format_note", "generate_ed25519",
    "generate_mldsa44_witness", "hsm_cosigner", "hsm_signer", "load_witness_signer", "mldsa44_signer", "parse_note",
    "is_ascii_decimal", "subtree_message", "verify_note",
]

ALG_ED25519 = 0x01
ALG_ECDSA = 0x02
ALG_COSIGNATURE_V1 = 0x04
ALG_MLDSA44_COSIGNATURE = 0x06  # tlog-cosignature: ML-DSA-44 (FIPS 204) over a subtree/v1 cosigned_message
MLDSA44_PUBLIC, MLDSA44_SIGNATURE = 1312, 2420
COSIGNATURE_ALGS = (ALG_COSIGNATURE_V1, ALG_MLDSA44_COSIGNATURE)
DASH = "\u2014"
MAX_SIGNATURES = 100


def _key_id(name: str, alg: int, key: bytes) -> bytes:
    if alg == ALG_ECDSA:
        return hashlib.sha256(key).digest()[:4]
    # a name read from a file whose high-bit octets are kept opaque (surrogate-escaped) hashes as those octets
    return hashlib.sha256(name.encode("utf-8", "surrogateescape") + b"\n" + bytes([alg]) + key).digest()[:4]


def describe_key_text(text: str) -> str:
    """What a key text looks like, for messages that must not echo it."""
    t = text.strip()
    if t.startswith("PRIVATE+KEY+"):
        return "a signed-note private key (PRIVATE+KEY+...)"
    if "-----BEGIN" in t:
        if "PRIVATE KEY" in t:
            return "a PEM private key"
        return "a PEM file (" + ("a certificate" if "CERTIFICATE" in t else "a public key" if "PUBLIC KEY" in t
                                 else "not a verifier key") + ")"
    if not t:
        return "an empty text"
    if t.count("+") >= 2 and "\n" not in t:
        return "verifier key"
    return "neither a verifier key nor a key file this tool knows"


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise FormatError(f"key name {name!r} must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class Verifier:
    """A verifier key: ``<name>+<hex key ID>+<base64(type || public key)>``."""

    name: str
    key_id: bytes
    alg: int
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """Parse a verifier key. Errors describe what the text looks like and never quote it: a private key
        given by mistake must not reach a terminal or a log."""
        kind = describe_key_text(text)
        if kind != "verifier key":
            raise FormatError(f"expected a verifier key (name+id+key), got what looks like {kind}")
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise FormatError(f"verifier key must be name+id+key, got {len(parts)} part(s)")
        name, hid, b64 = parts
        if not name or any(c.isspace() for c in name) or "+" in name:
            raise FormatError("verifier key: the key name must be non-empty, without spaces or '+'")
        try:
            raw = base64.b64decode(b64, validate=True)
            kid = bytes.fromhex(hid)
        except (binascii.Error, ValueError):
            raise FormatError(f"verifier key {name}: bad hex key ID or base64 key") from None
        if len(kid) != 4 or len(raw) < 2:
            raise FormatError(f"verifier key {name}: key ID must be 8 hex digits and the key non-empty")
        alg, key = raw[0], raw[1:]
        if alg not in (ALG_ED25519, ALG_ECDSA, ALG_COSIGNATURE_V1, ALG_MLDSA44_COSIGNATURE):
            raise FormatError(f"verifier key {name}: unsupported signature type {alg:#04x}")
        if alg in (ALG_ED25519, ALG_COSIGNATURE_V1) and len(key) != 32:
            raise FormatError(f"verifier key {name}: Ed25519 keys are 32 bytes")
        if alg == ALG_MLDSA44_COSIGNATURE and len(key) != MLDSA44_PUBLIC:
            raise FormatError(f"verifier key {name}: ML-DSA-44 keys are {MLDSA44_PUBLIC} bytes")
        if _key_id(name, alg, key) != kid:
            raise FormatError(f"verifier key {name}: key ID {hid} does not match the key")
        return cls(name, kid, alg, key)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([self.alg]) + self.public_key).decode()}"

    def verify(self, message: bytes, sig: bytes) -> None:
        """Verify ``sig`` over ``message`` with this key (C2SP signed-note: the signature types of
        :data:`ALG_ED25519`, ECDSA P-256, tlog-cosignature v1 and its ML-DSA-44 form). Raises SignatureError
        when it does not verify; returns nothing: there is no False to forget to check."""
        ok = True
        try:
            if self.alg == ALG_ED25519:
                ed25519.Ed25519PublicKey.from_public_bytes(self.public_key).verify(sig, message)
            elif self.alg == ALG_COSIGNATURE_V1:
                ok = len(sig) == 72
                if ok:
                    ed25519.Ed25519PublicKey.from_public_bytes(self.public_key).verify(sig[8:], message)
            elif self.alg == ALG_MLDSA44_COSIGNATURE:
                ok = len(sig) == 8 + MLDSA44_SIGNATURE
                if ok:
                    from cryptography.hazmat.primitives.asymmetric import mldsa  # cryptography >= 50, as pinned
                    mldsa.MLDSA44PublicKey.from_public_bytes(self.public_key).verify(sig[8:], message)
            else:
                pub = serialization.load_der_public_key(self.public_key)
                ok = isinstance(pub, ec.EllipticCurvePublicKey)
                if isinstance(pub, ec.EllipticCurvePublicKey):
                    pub.verify(sig, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            ok = False
        if not ok:
            raise SignatureError(f"signature by {self.name} (key {self.key_id.hex()}) does not verify")

    def accepts(self, message: bytes, sig: bytes) -> bool:
        """A predicate for "any one of these signatures" callers (a DSSE envelope): :meth:`verify` as a bool."""
        try:
            self.verify(message, sig)
        except SignatureError:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """Signs note text. ``sign`` is any callable (a file key, or a key held in an HSM through PKCS#11)."""

    verifier: Verifier
    sign: Callable[[bytes], bytes]

    @property
    def name(self) -> str:
        return self.verifier.name


def ed25519_signer(name: str, key: ed25519.Ed25519PrivateKey, alg: int = ALG_ED25519) -> Signer:
    _check_name(name)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Signer(Verifier(name, _key_id(name, alg, pub), alg, pub), key.sign)


def mldsa44_signer(name: str, key: Any) -> Signer:
    """An ML-DSA-44 cosigner (tlog-cosignature type 0x06) from a cryptography MLDSA44PrivateKey."""
    _check_name(name)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Signer(Verifier(name, _key_id(name, ALG_MLDSA44_COSIGNATURE, pub), ALG_MLDSA44_COSIGNATURE, pub),
                  key.sign)


def hsm_cosigner(name: str, spki_der: bytes, sign: Callable[[bytes], bytes]) -> Signer:
    """A witness key held in an HSM: Ed25519, signing cosignature/v1 messages (type 0x04)."""
    pub = serialization.load_der_public_key(spki_der)
    if not isinstance(pub, ed25519.Ed25519PublicKey):
        raise FormatError("a witness key in an HSM must be Ed25519 (cosignature/v1, type 0x04)")
    _check_name(name)
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Signer(Verifier(name, _key_id(name, ALG_COSIGNATURE_V1, raw), ALG_COSIGNATURE_V1, raw), sign)


def hsm_signer(name: str, spki_der: bytes, sign: Callable[[bytes], bytes]) -> Signer:
    """A signer for a key held elsewhere (an HSM): Ed25519 (type 0x01; ``sign`` returns the raw signature of the
    message) or ECDSA (type 0x02; ``sign`` returns a DER signature over SHA-256 of the message), by the SPKI."""
    pub = serialization.load_der_public_key(spki_der)
    if isinstance(pub, ed25519.Ed25519PublicKey):
        _check_name(name)
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return Signer(Verifier(name, _key_id(name, ALG_ED25519, raw), ALG_ED25519, raw), sign)
    return ecdsa_signer(name, spki_der, sign)


def ecdsa_signer(name: str, spki_der: bytes, sign_der: Callable[[bytes], bytes]) -> Signer:
    """ECDSA P-256 (type 0x02). ``sign_der(message)`` returns an ASN.1 DER signature over SHA-256(message)."""
    _check_name(name)
    pub = serialization.load_der_public_key(spki_der)
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name not in ("secp256r1", "secp384r1",
                                                                                "secp521r1"):
        raise FormatError("type 0x02 needs an ECDSA key on P-256, P-384 or P-521")
    return Signer(Verifier(name, _key_id(name, ALG_ECDSA, spki_der), ALG_ECDSA, spki_der), sign_der)


def generate_ed25519(name: str) -> tuple[str, str]:
    """A new Ed25519 key as (private key file text, verifier key string). The private text is
    ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`` as Go's note package writes it."""
    k = ed25519.Ed25519PrivateKey.generate()
    s = ed25519_signer(name, k)
    seed = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                           serialization.NoEncryption())
    packed = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
    priv = f"PRIVATE+KEY+{name}+{s.verifier.key_id.hex()}+{packed}"
    return priv, str(s.verifier)


def load_ed25519_signer(text: str, alg: int = ALG_ED25519) -> Signer:
    parts = text.strip().split("+", 4)  # the base64 part may itself contain '+'
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise FormatError("private key must read PRIVATE+KEY+name+id+base64")
    raw = base64.b64decode(parts[4])
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise FormatError("private key: expected an Ed25519 seed")
    return ed25519_signer(parts[2], ed25519.Ed25519PrivateKey.from_private_bytes(raw[1:]), alg)


def generate_mldsa44_witness(name: str) -> tuple[str, str]:
    """A new ML-DSA-44 cosigner key (tlog-cosignature type 0x06) as (private key text, verifier key). The private
    text extends Go's format: ``PRIVATE+KEY+<name>+<hex id>+<base64(0x06 || 32-byte FIPS 204 seed)>``."""
    from cryptography.hazmat.primitives.asymmetric import mldsa
    k = mldsa.MLDSA44PrivateKey.generate()
    s = mldsa44_signer(name, k)
    packed = base64.b64encode(bytes([ALG_MLDSA44_COSIGNATURE]) + k.private_bytes_raw()).decode()
    return f"PRIVATE+KEY+{name}+{s.verifier.key_id.hex()}+{packed}", str(s.verifier)


def load_witness_signer(text: str) -> Signer:
    """A witness's private key text: Ed25519 (signs cosignature/v1, type 0x04) or ML-DSA-44 (type 0x06)."""
    parts = text.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise FormatError("private key must read PRIVATE+KEY+name+id+base64")
    raw = base64.b64decode(parts[4])
    if len(raw) == 33 and raw[0] == ALG_MLDSA44_COSIGNATURE:
        from cryptography.hazmat.primitives.asymmetric import mldsa
        return mldsa44_signer(parts[2], mldsa.MLDSA44PrivateKey.from_seed_bytes(raw[1:]))
    return load_ed25519_signer(text, ALG_COSIGNATURE_V1)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise FormatError("note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise FormatError("note text contains a control character")


def format_note(text: str, signatures: Iterable[NoteSignature]) -> str:
    _check_text(text)
    return text + "\n" + "".join(s.line() for s in signatures)


def sign_note(text: str, signers: Iterable[Signer]) -> str:
    _check_text(text)
    sigs = [NoteSignature(s.name, s.verifier.key_id, s.sign(text.encode())) for s in signers]
    return format_note(text, sigs)


def parse_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and signatures (the last blank line separates them)."""
    if not note.endswith("\n"):
        raise FormatError("signed note must end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise FormatError("signed note has no blank line before its signatures")
    text, sig_block = note[:cut + 1], note[cut + 2:]
    _check_text(text)
    sigs = []
    # c2sp.org/signed-note: lines end with "\n" only; no control characters anywhere (str.splitlines would also
    # split on CR, VT, FF, U+2028 ... and so accept what Go's note.Open refuses)
    if any(ord(c) < 0x20 and c != "\n" for c in sig_block):
        raise FormatError("signature block contains a control character")
    for line in sig_block.split("\n")[:-1]:
        if not line.startswith(DASH + " "):
            raise FormatError(f"signature line must start with an em dash: {line[:40]!r}")
        try:
            _, name, b64 = line.split(" ")
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise FormatError(f"malformed signature line {line[:60]!r}") from None
        if not name or any(c.isspace() for c in name) or "+" in name:
            raise FormatError(f"signature line: key name {name!r} must be non-empty, without spaces or '+'")
        if len(raw) < 5:
            raise FormatError(f"signature of {name} is too short")
        sigs.append(NoteSignature(name, raw[:4], raw[4:]))
    if not sigs:
        raise FormatError("signed note has no signatures")
    if len(sigs) > MAX_SIGNATURES:
        raise FormatError(f"signed note has {len(sigs)} signatures; at most {MAX_SIGNATURES} are read")
    return text, sigs


def verify_note(note: str, verifiers: Iterable[Verifier]) -> tuple[str, list[Verifier]]:
    """Verify the note against known keys; unknown keys are ignored, a failing known key rejects the note.

    Returns the text and the verifiers whose signatures verified. Raises SignatureError if none did."""
    text, sigs = parse_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    ok: list[Verifier] = []
    for s in sigs:
        v = known.get((s.name, s.key_id))
        if v is None:
            continue
        msg = text.encode()
        if v.alg == ALG_COSIGNATURE_V1:
            if len(s.signature) != 72:
                raise SignatureError(f"cosignature by {v.name} is {len(s.signature)} bytes, not 72")
            (t,) = struct.unpack(">Q", s.signature[:8])
            if t >= 1 << 63:  # c2sp.org/tlog-cosignature: the timestamp is at most 2^63 - 1
                raise SignatureError(f"cosignature by {v.name} has timestamp {t}, not below 2^63")
            msg = cosignature_message(text, t)
        elif v.alg == ALG_MLDSA44_COSIGNATURE:
            if len(s.signature) != 8 + MLDSA44_SIGNATURE:
                raise SignatureError(f"ML-DSA-44 cosignature by {v.name} is {len(s.signature)} bytes, not "
                                     f"{8 + MLDSA44_SIGNATURE}")
            (t,) = struct.unpack(">Q", s.signature[:8])
            if t >= 1 << 63:
                raise SignatureError(f"cosignature by {v.name} has timestamp {t}, not below 2^63")
            msg = subtree_message(v.name, t, Checkpoint.parse(text))
        v.verify(msg, s.signature)
        ok.append(v)
    if not ok:
        raise SignatureError("no signature from a trusted key")
    return text, ok


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """tlog-cosignature v1: ``cosignature/v1\\ntime <t>\\n`` followed by the checkpoint body."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + checkpoint_text.encode()


def subtree_message(cosigner: str, timestamp: int, cp: Checkpoint, start: int = 0) -> bytes:
    """tlog-cosignature ML-DSA-44 ``cosigned_message``: label "subtree/v1\\n\\0", the cosigner name and log origin
    (u8-length-prefixed), timestamp, start and end (u64 big-endian) and the root hash; a checkpoint is the subtree
    [0, size). Extension lines are not covered."""
    name, origin = cosigner.encode(), cp.origin.encode()
    if not 1 <= len(name) < 256 or not 1 <= len(origin) < 256:
        raise FormatError("cosigner name and origin must be 1..255 bytes")
    return (b"subtree/v1\n\0" + bytes([len(name)]) + name + struct.pack(">Q", timestamp) + bytes([len(origin)])
            + origin + struct.pack(">QQ", start, cp.size) + cp.root)


def cosign(checkpoint_text: str, signer: Signer, timestamp: int) -> NoteSignature:
    if signer.verifier.alg == ALG_MLDSA44_COSIGNATURE:
        sig = signer.sign(subtree_message(signer.name, timestamp, Checkpoint.parse(checkpoint_text)))
        return NoteSignature(signer.name, signer.verifier.key_id, struct.pack(">Q", timestamp) + sig)
    if signer.verifier.alg != ALG_COSIGNATURE_V1:
        raise FormatError("a cosignature needs a type 0x04 or 0x06 witness key")
    sig = signer.sign(cosignature_message(checkpoint_text, timestamp))
    return NoteSignature(signer.name, signer.verifier.key_id, struct.pack(">Q", timestamp) + sig)


@dataclass(frozen=True)
class Checkpoint:
    """tlog-checkpoint body: origin, tree size in decimal, base64 root hash (and optional extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        return "".join(line + "\n" for line in (self.origin, str(self.size),
                                                base64.b64encode(self.root).decode(), *self.extensions))

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise FormatError("checkpoint must have origin, size and root lines, each ending in a newline")
        origin, size_s, root_b64 = lines[0], lines[1], lines[2]
        if not origin:
            raise FormatError("checkpoint origin is empty")
        if not is_ascii_decimal(size_s):  # tlog-checkpoint: "the ASCII decimal representation"
            raise FormatError(f"checkpoint size {size_s!r} is not an ASCII decimal without leading zeros")
        try:
            root = base64.b64decode(root_b64, validate=True)
        except binascii.Error:
            raise FormatError("checkpoint root is not base64") from None
        if len(root) != 32:
            raise FormatError(f"checkpoint root is {len(root)} bytes, not 32")
        extensions = tuple(lines[3:-1])
        if any(not e for e in extensions):  # tlog-checkpoint: extension lines, if any, MUST be non-empty
            raise FormatError("checkpoint has an empty extension line")
        return cls(origin, int(size_s), root, extensions)

