"""The token's objects as attribute tables (PKCS#11 v2.40 4.4 data objects, 4.6 certificates) and the
encodings of attribute values: no state, no cffi."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from . import ckdefs as ck

__all__ = ["TokenObject", "certificate_object", "health_object", "encode_bool", "encode_ulong", "padded"]


def encode_ulong(v: int) -> bytes:
    """CK_ULONG is the platform's unsigned long: native size and byte order."""
    return struct.pack("@L", v)


def encode_bool(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def padded(text: str, size: int) -> bytes:
    """Blank-padded, not NUL-terminated (v2.40 3.2 for CK_UTF8CHAR arrays)."""
    raw = text.encode("utf-8")[:size]
    return raw + b" " * (size - len(raw))


@dataclass
class TokenObject:
    handle: int
    attributes: dict[int, bytes | Callable[[], bytes]]
    sensitive: frozenset[int] = frozenset()

    def value(self, attr: int) -> bytes:
        v = self.attributes[attr]
        return v() if callable(v) else v


def health_object(handle: int, value: Callable[[], bytes]) -> TokenObject:
    """The public data object "qrng health report": its CKA_VALUE is the report as JSON, read when asked for."""
    return TokenObject(handle, {
        ck.CKA_CLASS: encode_ulong(ck.CKO_DATA), ck.CKA_TOKEN: encode_bool(True),
        ck.CKA_PRIVATE: encode_bool(False), ck.CKA_MODIFIABLE: encode_bool(False),
        ck.CKA_LABEL: b"qrng health report", ck.CKA_APPLICATION: b"qrng-ceremony",
        ck.CKA_OBJECT_ID: b"", ck.CKA_VALUE: value,
    })


def certificate_object(handle: int, der: bytes) -> TokenObject:
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    from cryptography.hazmat.primitives import hashes
    digest = cert.fingerprint(hashes.SHA1())
    serial = cert.serial_number
    serial_der = b"\x02" + bytes([len(_int_bytes(serial))]) + _int_bytes(serial)
    return TokenObject(handle, {
        ck.CKA_CLASS: encode_ulong(ck.CKO_CERTIFICATE), ck.CKA_CERTIFICATE_TYPE: encode_ulong(ck.CKC_X_509),
        ck.CKA_TOKEN: encode_bool(True), ck.CKA_PRIVATE: encode_bool(False), ck.CKA_MODIFIABLE: encode_bool(False),
        ck.CKA_TRUSTED: encode_bool(False), ck.CKA_CERTIFICATE_CATEGORY: encode_ulong(0),
        ck.CKA_LABEL: b"qrng device attestation", ck.CKA_ID: digest[:8],
        ck.CKA_SUBJECT: cert.subject.public_bytes(), ck.CKA_ISSUER: cert.issuer.public_bytes(),
        ck.CKA_SERIAL_NUMBER: serial_der, ck.CKA_VALUE: der, ck.CKA_CHECK_VALUE: digest[:3],
    })


def _int_bytes(v: int) -> bytes:
    b = v.to_bytes((v.bit_length() + 8) // 8 or 1, "big")
    return b
