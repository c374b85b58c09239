"""One key in a token as a signing function: a log's or witness's checkpoint key, or the beacon's RSA key.

:func:`open_signer` is how the beacon and a witness reach their key (profile -> PIN -> session -> signer), and
the ceremony runner uses :meth:`HsmSession.log_signer` on its own session: one way for all three.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .pin import read_pin
from .profile import HsmProfile
from .session import HsmSession

__all__ = ["HsmSigner", "open_signer"]

Sign = Callable[[bytes], bytes]


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
        der, sign = (session.beacon_signer if purpose == "beacon" else session.log_signer)(label)
    except BaseException:
        session.close()
        raise
    return HsmSigner(der, sign, session)
