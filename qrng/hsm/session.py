"""An open, logged-in R/W session on a profile's token, through python-pkcs11: key generation with a checked
template and attribute read-back (CKA_LOCAL, CKA_NEVER_EXTRACTABLE, ...), signing in the formats X.509 and C2SP
notes need, C_SeedRandom.

SoftHSM 2.6.1 has no CKM_ECDSA_SHA256/384: ECDSA signs a digest computed here with CKM_ECDSA.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .errors import HsmError
from .keys import CURVES, KeySpec
from .profile import HsmProfile

__all__ = ["GeneratedKey", "HsmSession"]

_CURVE_OBJ = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_CURVE_HASH = {"P-256": hashlib.sha256, "P-384": hashlib.sha384, "P-521": hashlib.sha512}
CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055
CKM_EDDSA = 0x1057
ED25519_OID_DER = bytes.fromhex("06032b6570")  # 1.3.101.112
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")  # RFC 8017 9.2 note 1
SHA512_DIGEST_INFO = bytes.fromhex("3051300d060960864801650304020305000440")  # RFC 8017 9.2 note 1


@dataclass(frozen=True)
class GeneratedKey:
    label: str
    key_id: bytes
    spec: KeySpec
    public_der: bytes
    attributes: dict[str, Any]
    template: dict[str, Any]


class HsmSession:
    """An open, logged-in R/W session on the profile's token."""

    def __init__(self, profile: HsmProfile, pin: str) -> None:
        import pkcs11
        self._p = pkcs11
        for k, v in profile.env.items():
            os.environ[k] = v
        try:
            self.lib = pkcs11.lib(profile.module)
            self.token = self.lib.get_token(token_label=profile.token_label)
            self.session = self.token.open(user_pin=pin, rw=True)
        except pkcs11.exceptions.NoSuchToken:
            raise HsmError(f"no token labelled '{profile.token_label}' in {profile.module}") from None
        except pkcs11.exceptions.PinIncorrect:
            raise HsmError(f"the PIN for token '{profile.token_label}' is incorrect") from None
        except pkcs11.exceptions.PKCS11Error as exc:
            raise HsmError(f"cannot open token '{profile.token_label}': {type(exc).__name__}") from None
        self.profile = profile
        self._mechanisms: set[int] | None = None

    def close(self) -> None:
        self.session.close()

    def token_info(self) -> dict[str, str]:
        t = self.token
        return {"label": t.label, "manufacturer": t.manufacturer_id, "model": t.model, "serial": t.serial.decode()
                if isinstance(t.serial, bytes) else str(t.serial)}

    def mechanisms(self) -> set[int]:
        if self._mechanisms is None:
            self._mechanisms = {int(m) for m in self.token.slot.get_mechanisms()}
        return self._mechanisms

    # --- keys ------------------------------------------------------------------------------------------------
    def private_keys(self, label: str) -> list[Any]:
        p = self._p
        return list(self.session.get_objects({p.Attribute.CLASS: p.ObjectClass.PRIVATE_KEY, p.Attribute.LABEL: label}))

    def public_key_obj(self, label: str, key_id: bytes) -> Any:
        p = self._p
        objs = list(self.session.get_objects({p.Attribute.CLASS: p.ObjectClass.PUBLIC_KEY, p.Attribute.LABEL: label,
                                              p.Attribute.ID: key_id}))
        if len(objs) != 1:
            raise HsmError(f"expected one public key labelled '{label}', found {len(objs)}")
        return objs[0]

    def generate(self, spec: KeySpec, key_id: bytes) -> GeneratedKey:
        """Generate inside the HSM: token, private, sensitive, never extractable. Refuses an existing label."""
        p = self._p
        A = p.Attribute
        if self.private_keys(spec.label):
            raise HsmError(f"a key labelled '{spec.label}' already exists on token '{self.profile.token_label}'; "
                           "refusing to create a second one")
        common = {A.TOKEN: True, A.LABEL: spec.label, A.ID: key_id}
        priv_t = {**common, A.PRIVATE: True, A.SENSITIVE: True, A.EXTRACTABLE: False, A.SIGN: True,
                  A.DECRYPT: False, A.UNWRAP: False, A.DERIVE: False}
        pub_t = {**common, A.PRIVATE: False, A.VERIFY: True, A.ENCRYPT: False, A.WRAP: False}
        try:
            if spec.type == "rsa":
                pub_t[A.PUBLIC_EXPONENT] = b"\x01\x00\x01"  # python-pkcs11 sets CKA_MODULUS_BITS from key_length
                pub, priv = self.session.generate_keypair(p.KeyType.RSA, spec.size, public_template=pub_t,
                                                          private_template=priv_t,
                                                          mechanism=p.Mechanism.RSA_PKCS_KEY_PAIR_GEN)
            elif spec.type == "ec":
                from pkcs11.util.ec import encode_named_curve_parameters
                pub_t[A.EC_PARAMS] = encode_named_curve_parameters(CURVES[spec.curve])
                pub, priv = self.session.generate_keypair(p.KeyType.EC, public_template=pub_t,
                                                          private_template=priv_t,
                                                          mechanism=p.Mechanism.EC_KEY_PAIR_GEN)
            else:
                if CKM_EC_EDWARDS_KEY_PAIR_GEN not in self.mechanisms():
                    raise HsmError("this token has no CKM_EC_EDWARDS_KEY_PAIR_GEN: Ed25519 is not available")
                pub_t[A.EC_PARAMS] = ED25519_OID_DER
                pub, priv = self.session.generate_keypair(p.KeyType.EC_EDWARDS, public_template=pub_t,
                                                          private_template=priv_t,
                                                          mechanism=p.Mechanism(CKM_EC_EDWARDS_KEY_PAIR_GEN))
        except p.exceptions.PKCS11Error as exc:
            raise HsmError(f"key generation for '{spec.label}' failed: {type(exc).__name__}") from None
        template = {"private": {str(k).replace("Attribute.", ""): _show(v) for k, v in priv_t.items()},
                    "public": {str(k).replace("Attribute.", ""): _show(v) for k, v in pub_t.items()}}
        return self.describe(spec, key_id, priv, pub, template)

    def describe(self, spec: KeySpec, key_id: bytes, priv: Any, pub: Any,
                 template: dict[str, Any] | None = None) -> GeneratedKey:
        """Read back what proves the key was born here and never left, and fail if any is not as required."""
        A = self._p.Attribute
        attrs: dict[str, Any] = {}
        for name in ("LOCAL", "NEVER_EXTRACTABLE", "ALWAYS_SENSITIVE", "EXTRACTABLE", "SENSITIVE", "TOKEN",
                     "PRIVATE", "KEY_GEN_MECHANISM"):
            try:
                attrs[name] = priv[getattr(A, name)]
            except self._p.exceptions.PKCS11Error:
                attrs[name] = None
        attrs["KEY_GEN_MECHANISM"] = int(attrs["KEY_GEN_MECHANISM"]) if attrs["KEY_GEN_MECHANISM"] is not None else None
        want = {"LOCAL": True, "NEVER_EXTRACTABLE": True, "ALWAYS_SENSITIVE": True, "EXTRACTABLE": False,
                "SENSITIVE": True, "TOKEN": True, "PRIVATE": True}
        bad = [f"{k}={attrs[k]!r} (required {v})" for k, v in want.items() if attrs[k] is not v]
        expected_mech = {"rsa": 0x0, "ec": 0x1040, "ed25519": CKM_EC_EDWARDS_KEY_PAIR_GEN}[spec.type]
        if attrs["KEY_GEN_MECHANISM"] is None:
            # some tokens (openCryptoki's soft token, some HSMs) do not report it; CKA_LOCAL with NEVER_EXTRACTABLE
            # and ALWAYS_SENSITIVE, checked above, still prove the key was generated there and never left
            attrs["KEY_GEN_MECHANISM_NOTE"] = "not reported by this token; CKA_LOCAL proves on-token generation"
        elif attrs["KEY_GEN_MECHANISM"] != expected_mech:
            bad.append(f"KEY_GEN_MECHANISM={attrs['KEY_GEN_MECHANISM']!r} (required {expected_mech:#x})")
        der = self.public_der(spec, pub)
        params = _check_public(spec, der)
        if bad:
            raise HsmError(f"key '{spec.label}' read back wrong: {'; '.join(bad)}")
        return GeneratedKey(spec.label, key_id, spec, der, {**attrs, **params}, template or {})

    def public_der(self, spec: KeySpec, pub: Any) -> bytes:
        A = self._p.Attribute
        enc = serialization.Encoding.DER
        fmt = serialization.PublicFormat.SubjectPublicKeyInfo
        if spec.type == "rsa":
            n = int.from_bytes(pub[A.MODULUS], "big")
            e = int.from_bytes(pub[A.PUBLIC_EXPONENT], "big")
            return rsa.RSAPublicNumbers(e, n).public_key().public_bytes(enc, fmt)
        point = _unwrap_octets(pub[A.EC_POINT])
        if spec.type == "ec":
            return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE_OBJ[spec.curve], point).public_bytes(enc, fmt)
        return ed25519.Ed25519PublicKey.from_public_bytes(point).public_bytes(enc, fmt)

    def find(self, spec: KeySpec, key_id: bytes) -> GeneratedKey | None:
        """The key generated earlier for this step (resume), checked like a new one."""
        found = self.private_keys(spec.label)
        if not found:
            return None
        A = self._p.Attribute
        if len(found) > 1 or found[0][A.ID] != key_id:
            raise HsmError(f"a key labelled '{spec.label}' exists but is not the one this ceremony generated")
        return self.describe(spec, key_id, found[0], self.public_key_obj(spec.label, key_id))

    # --- signing -----------------------------------------------------------------------------------------------
    def sign(self, spec: KeySpec, key_id: bytes, data: bytes, hash_name: str = "") -> bytes:
        """Sign as X.509 expects: RSA PKCS#1 v1.5 with SHA-256, ECDSA as DER over the curve's hash, Ed25519 pure."""
        p = self._p
        found = [k for k in self.private_keys(spec.label) if k[p.Attribute.ID] == key_id]
        if len(found) != 1:
            raise HsmError(f"signing key '{spec.label}' not found on token '{self.profile.token_label}' (its objects "
                           "are gone: a removed or replaced token?)")
        key = found[0]
        try:
            if spec.type == "rsa":
                if hash_name == "sha512":  # the beacon's cipher suite 0 (NIST Randomness Beacon 2.0)
                    if 0x0042 in self.mechanisms():
                        return bytes(key.sign(data, mechanism=p.Mechanism.SHA512_RSA_PKCS))
                    return bytes(key.sign(SHA512_DIGEST_INFO + hashlib.sha512(data).digest(),
                                          mechanism=p.Mechanism.RSA_PKCS))
                if 0x0040 in self.mechanisms():
                    return bytes(key.sign(data, mechanism=p.Mechanism.SHA256_RSA_PKCS))
                # tokens without CKM_SHA256_RSA_PKCS (openCryptoki's soft token, many HSMs): PKCS#1 v1.5 over the
                # DER DigestInfo of SHA-256 (RFC 8017 9.2), the same signature byte for byte
                digest_info = SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
                return bytes(key.sign(digest_info, mechanism=p.Mechanism.RSA_PKCS))
            if spec.type == "ec":
                h = {"sha256": hashlib.sha256, "sha384": hashlib.sha384,
                     "sha512": hashlib.sha512}.get(hash_name) or _CURVE_HASH[spec.curve]
                raw = bytes(key.sign(h(data).digest(), mechanism=p.Mechanism.ECDSA))
                half = len(raw) // 2
                return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
            return bytes(key.sign(data, mechanism=p.Mechanism(CKM_EDDSA)))
        except p.exceptions.PKCS11Error as exc:
            raise HsmError(f"signing with '{spec.label}' failed: {type(exc).__name__}") from None

    def log_signer(self, label: str) -> tuple[bytes, Callable[[bytes], bytes]]:
        """An HSM-held key for checkpoints: ECDSA P-256 (C2SP signed-note type 0x02; SHA-256 then ECDSA) or Ed25519
        (type 0x01, CKM_EDDSA over the message, PKCS#11 v3.0 6.3.14), told by the key's CKA_KEY_TYPE.
        Returns (SPKI DER, sign function)."""
        p = self._p
        keys = self.private_keys(label)
        if len(keys) != 1:
            raise HsmError(f"expected one audit-log key labelled '{label}' on the token, found {len(keys)}; "
                           "run the audit-key ceremony first")
        key_id = keys[0][p.Attribute.ID]
        edwards = keys[0][p.Attribute.KEY_TYPE] == p.KeyType.EC_EDWARDS
        spec = KeySpec(label, "ed25519") if edwards else KeySpec(label, "ec", curve="P-256")
        der = self.public_der(spec, self.public_key_obj(label, key_id))
        return der, lambda message: self.sign(spec, key_id, message, "sha256")

    def beacon_signer(self, label: str) -> tuple[bytes, Callable[[bytes], bytes]]:
        """An HSM-held RSA key for beacon pulses (NIST Beacon 2.0 cipher suite 0: RSA PKCS#1 v1.5 with SHA-512).
        Returns (SPKI DER, sign function)."""
        p = self._p
        keys = self.private_keys(label)
        if len(keys) != 1:
            raise HsmError(f"expected one beacon key labelled '{label}' on the token, found {len(keys)}")
        if keys[0][p.Attribute.KEY_TYPE] != p.KeyType.RSA:
            raise HsmError(f"the beacon key '{label}' must be RSA (cipher suite 0 of the NIST Beacon 2.0 format)")
        key_id = keys[0][p.Attribute.ID]
        pub = self.public_key_obj(label, key_id)
        spec = KeySpec(label, "rsa", size=len(pub[p.Attribute.MODULUS]) * 8)
        der = self.public_der(spec, pub)
        return der, lambda message: self.sign(spec, key_id, message, "sha512")

    def seed_random(self, data: bytes) -> str:
        """C_SeedRandom. Returns 'accepted' or the CKR name the token answered."""
        p = self._p
        try:
            self.session.seed_random(data)
        except p.exceptions.PKCS11Error as exc:
            return type(exc).__name__
        return "accepted"


def _unwrap_octets(v: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING holding the point (some tokens give the raw point)."""
    if v and v[0] == 0x04 and len(v) > 2:
        n = v[1]
        if n < 0x80 and n == len(v) - 2:
            return v[2:]
        if n == 0x81 and v[2] == len(v) - 3:
            return v[3:]
    return v


def _check_public(spec: KeySpec, der: bytes) -> dict[str, Any]:
    pub = serialization.load_der_public_key(der)
    if spec.type == "rsa":
        assert isinstance(pub, rsa.RSAPublicKey)
        if pub.key_size != spec.size or pub.public_numbers().e != 65537:
            raise HsmError(f"public key of '{spec.label}' is RSA-{pub.key_size}, e={pub.public_numbers().e}; "
                           f"required RSA-{spec.size}, e=65537")
        return {"public_key": f"RSA-{pub.key_size}", "public_exponent": 65537}
    if spec.type == "ec":
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != _CURVE_OBJ[spec.curve].name:
            raise HsmError(f"public key of '{spec.label}' is not on {spec.curve}")
        return {"public_key": f"EC {spec.curve}"}
    if not isinstance(pub, ed25519.Ed25519PublicKey):
        raise HsmError(f"public key of '{spec.label}' is not Ed25519")
    return {"public_key": "Ed25519"}


def _show(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, bool | int | str):
        return v
    return str(v)
