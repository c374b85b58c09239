"""An OpenSSL 3 configuration that makes pkcs11-provider, with a given PKCS#11 module, OpenSSL's random source
(`OPENSSL_CONF=FILE openssl rand ...`): what the consumer tests and the cold-start benchmark use, and what an
operator writes to send OpenSSL's RAND_bytes through the QRNG."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PKCS11_PROVIDER", "openssl_rand_conf"]

PKCS11_PROVIDER = Path("/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so")  # Debian's pkcs11-provider


def openssl_rand_conf(module: str | Path, provider: Path | None = None) -> str:
    """The configuration of contrib/openssl/qrng-rand-*.cnf for ``module``; ``provider``: pkcs11-provider's own
    file when it is not in OpenSSL's modules folder (default: found there by its name)."""
    where = f"module = {provider}\n" if provider is not None else ""
    return f"""openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
random = random_sect
[provider_sect]
default = default_sect
pkcs11 = pkcs11_sect
[default_sect]
activate = 1
[pkcs11_sect]
{where}pkcs11-module-path = {module}
pkcs11-module-load-behavior = early
activate = 1
[random_sect]
random = PKCS11-RAND
"""
