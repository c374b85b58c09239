"""The HSM boundary's one exception root (exit code 1 in the CLI's table, like a failed ceremony step)."""

from __future__ import annotations

__all__ = ["HsmError"]


class HsmError(Exception):
    """The HSM refused or failed an operation, or could not be reached (module, token, PIN, key, mechanism).
    Messages name the token, key label and CKR class, never a PIN or key material."""
