"""Importing ``cryptography`` without the host's OpenSSL configuration, when the host is not ours.

cryptography carries its own OpenSSL, which reads ``OPENSSL_CONF`` when its bindings are imported. Inside a host
configured to use our PKCS#11 module through pkcs11-provider (``openssl rand`` with the README's configuration),
that would load pkcs11-provider and our module again from inside our own call. The PKCS#11 module sets
:data:`ISOLATE` when it started the interpreter itself (a C host, where nothing else uses this cryptography);
:func:`prepare` is then called right before cryptography is first imported: the bindings are imported with
``OPENSSL_CONF`` pointing at an empty file and the host's value is put back at once. Elsewhere it does nothing.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ISOLATE", "prepare"]

ISOLATE = False


def prepare() -> None:
    if not ISOLATE or "cryptography.hazmat.bindings._rust" in sys.modules:
        return
    saved = os.environ.get("OPENSSL_CONF")
    os.environ["OPENSSL_CONF"] = os.devnull
    try:
        import cryptography.hazmat.bindings._rust  # noqa: F401 - loads (and configures) cryptography's OpenSSL
    finally:
        if saved is None:
            del os.environ["OPENSSL_CONF"]
        else:
            os.environ["OPENSSL_CONF"] = saved
