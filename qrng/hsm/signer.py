"""One key in a token as a signing function: a log's or witness's checkpoint key, or the beacon's RSA key.

:func:`open_signer` is how the beacon and a witness reach their key (profile -> PIN -> session -> signer), and
the ceremony runner uses :func:`log_signer` on its own session: one way for all three.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import HsmError
from .keys import KeySpec
from .pin import read_pin
from .profile import HsmProfile
from .session import HsmSession

__all__ = ["HsmSigner", "beacon_signer", "log_signer", "open_signer"]

Sign = Callable[[bytes], bytes]


def log_signer(session: HsmSession, label: str) -> tuple[bytes, Sign]:
    """An HSM-held key for checkpoints: ECDSA P-256 (C2SP signed-note type 0x02; SHA-256 then ECDSA) or Ed25519
    (type 0x01, CKM_EDDSA over the message, PKCS#11 v3.0 6.3.14), told by the key's CKA_KEY_TYPE.
    Returns (SPKI DER, sign function)."""
    p = session._p  # noqa: SLF001 - the session's python-pkcs11 module, within the HSM package
    keys = session.private_keys(label)
    if len(keys) != 1:
        raise HsmError(f"expected one audit-log key labelled '{label}' on the token, found {len(keys)}; "
                       "run the audit-key ceremony first")
    key_id = keys[0][p.Attribute.ID]
    edwards = keys[0][p.Attribute.KEY_TYPE] == p.KeyType.EC_EDWARDS
    spec = KeySpec(label, "ed25519") if edwards else KeySpec(label, "ec", curve="P-256")
    der = session.public_der(spec, session.public_key_obj(label, key_id))
    return der, lambda message: session.sign(spec, key_id, message, "sha256")


def beacon_signer(session: HsmSession, label: str) -> tuple[bytes, Sign]:
    """An HSM-held RSA key for beacon pulses (NIST Beacon 2.0 cipher suite 0: RSA PKCS#1 v1.5 with SHA-512).
    Returns (SPKI DER, sign function)."""
    p = session._p  # noqa: SLF001 - as above
    keys = session.private_keys(label)
    if len(keys) != 1:
        raise HsmError(f"expected one beacon key labelled '{label}' on the token, found {len(keys)}")
    if keys[0][p.Attribute.KEY_TYPE] != p.KeyType.RSA:
        raise HsmError(f"the beacon key '{label}' must be RSA (cipher suite 0 of the NIST Beacon 2.0 format)")
    key_id = keys[0][p.Attribute.ID]
    pub = session.public_key_obj(label, key_id)
    spec = KeySpec(label, "rsa", size=len(pub[p.Attribute.MODULUS]) * 8)
    der = session.public_der(spec, pub)
    return der, lambda message: session.sign(spec, key_id, message, "sha512")


@dataclass
class HsmSigner:
    """A key in a token, open for signing from any thread (one signature at a time: a PKCS#11 session is not
    shared between threads). ``close()`` ends the session."""

    public_der: bytes
    _sign: Sign
    _session: HsmSession
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sign(self, message: bytes) -> bytes:
        with self._lock:
            return self._sign(message)

    def close(self) -> None:
        self._session.close()


def open_signer(profile: HsmProfile, label: str, purpose: str = "log") -> HsmSigner:
    """Open ``profile``'s token with its PIN and return the key ``label`` as a signer: ``purpose`` "log" (a log's
    or witness's checkpoint key: Ed25519 or ECDSA P-256) or "beacon" (RSA, cipher suite 0)."""
    session = HsmSession(profile, read_pin(profile))
    try:
        der, sign = (beacon_signer if purpose == "beacon" else log_signer)(session, label)
    except BaseException:
        session.close()
        raise
    return HsmSigner(der, sign, session)
