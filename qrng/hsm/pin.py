"""The user PIN: from the environment, a file or a prompt; never from a script, never into a log or a message."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from .errors import HsmError
from .profile import HsmProfile

__all__ = ["read_pin"]


def read_pin(profile: HsmProfile) -> str:
    src = profile.pin
    if src.source == "env":
        pin = os.environ.get(src.value)
        if not pin:
            raise HsmError(f"profile {profile.name}: environment variable {src.value} (the PIN) is not set")
        return pin
    if src.source == "file":
        path = Path(src.value)
        if not path.exists():
            raise HsmError(f"profile {profile.name}: PIN file {path} does not exist")
        text = path.read_text().strip()
        for line in text.splitlines():  # KEY=VALUE files (scripts/softhsm-token.sh writes one)
            if line.startswith("QRNG_HSM_USER_PIN="):
                return line.split("=", 1)[1]
        return text
    return getpass.getpass(f"User PIN for token '{profile.token_label}': ")
