"""FakeHsm: an in-memory implementation of ceremony.hsmapi.HsmApi, for unit tests of the runner and the steps.

A FAKE, named as such: keys live in this process and are "generated inside the HSM" only in the sense the runner
can observe (attributes read back as a real token reports them). The real thing is exercised against SoftHSM2 in
tests/system/ceremony.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ceremony.errors import HsmError
from ceremony.hsmapi import GeneratedKey
from ceremony.keys import KeySpec

_CURVES = {"P-256": (ec.SECP256R1(), hashes.SHA256()), "P-384": (ec.SECP384R1(), hashes.SHA384()),
           "P-521": (ec.SECP521R1(), hashes.SHA512())}
_READ_BACK = {"LOCAL": True, "NEVER_EXTRACTABLE": True, "ALWAYS_SENSITIVE": True, "EXTRACTABLE": False,
              "SENSITIVE": True, "TOKEN": True, "PRIVATE": True}


class FakeHsm:
    def __init__(self, seed_status: str = "accepted",
                 offered: tuple[int, ...] = (0x0, 0x40, 0x1040, 0x1041, 0x1055, 0x1057)) -> None:
        self.offered = offered
        self.keys: dict[tuple[str, bytes], tuple[KeySpec, Any]] = {}
        self.seeds: list[bytes] = []
        self.seed_status = seed_status
        self.closed = False

    def token_info(self) -> dict[str, str]:
        return {"label": "fake", "manufacturer": "FakeHsm (unit tests)", "model": "in-memory", "serial": "0"}

    def mechanisms(self) -> set[int]:
        return set(self.offered)

    def private_keys(self, label: str) -> list[Any]:
        return [k for (lab, _), (_, k) in self.keys.items() if lab == label]

    def _describe(self, spec: KeySpec, key_id: bytes, key: Any) -> GeneratedKey:
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return GeneratedKey(spec.label, key_id, spec, der, dict(_READ_BACK), {"fake": True})

    def find(self, spec: KeySpec, key_id: bytes) -> GeneratedKey | None:
        entry = self.keys.get((spec.label, key_id))
        if entry is None:
            if self.private_keys(spec.label):
                raise HsmError(f"a key labelled '{spec.label}' exists but is not the one this ceremony generated")
            return None
        return self._describe(spec, key_id, entry[1])

    def generate(self, spec: KeySpec, key_id: bytes) -> GeneratedKey:
        if self.private_keys(spec.label):
            raise HsmError(f"a key labelled '{spec.label}' already exists")
        if spec.type == "rsa":
            key: Any = rsa.generate_private_key(65537, spec.size)
        elif spec.type == "ec":
            key = ec.generate_private_key(_CURVES[spec.curve][0])
        else:
            key = ed25519.Ed25519PrivateKey.generate()
        self.keys[(spec.label, key_id)] = (spec, key)
        return self._describe(spec, key_id, key)

    def sign(self, spec: KeySpec, key_id: bytes, data: bytes, hash_name: str = "") -> bytes:
        entry = self.keys.get((spec.label, key_id))
        if entry is None:
            raise HsmError(f"signing key '{spec.label}' not found")
        key = entry[1]
        if spec.type == "rsa":
            return bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        if spec.type == "ec":
            h = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}.get(
                hash_name, _CURVES[spec.curve][1])
            return bytes(key.sign(data, ec.ECDSA(h)))
        return bytes(key.sign(data))

    def log_signer(self, label: str) -> tuple[bytes, Callable[[bytes], bytes]]:
        found = [(spec, kid) for (lab, kid), (spec, _) in self.keys.items() if lab == label]
        if len(found) != 1:
            raise HsmError(f"expected one audit-log key labelled '{label}', found {len(found)}")
        spec, kid = found[0]
        return self._describe(spec, kid, self.keys[(label, kid)][1]).public_der, \
            lambda m: self.sign(spec, kid, m, "sha256")

    def seed_random(self, data: bytes) -> str:
        self.seeds.append(hashlib.sha256(data).digest())
        return self.seed_status

    def close(self) -> None:
        self.closed = True
