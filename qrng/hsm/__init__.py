"""The HSM edge (PKCS#11 through python-pkcs11), below everything that holds a key in a token: ceremonies, the
beacon and witnesses (the daemon's audit log signs with a key file). A profile says which module and token; the
PIN comes from the environment, a file or a prompt; a session generates, reads back and signs; a signer is one
key's signing function for a log, a witness or the beacon. Its errors have one root, :class:`HsmError`."""

from __future__ import annotations

from .errors import HsmError
from .keys import CURVES, KeySpec
from .pin import read_pin
from .profile import HsmProfile, PinSource
from .session import GeneratedKey, HsmSession
from .signer import HsmSigner, open_signer

__all__ = ["CURVES", "GeneratedKey", "HsmError", "HsmProfile", "HsmSession", "HsmSigner", "KeySpec", "PinSource",
           "open_signer", "read_pin"]
