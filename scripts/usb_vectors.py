"""Generate the USB protocol v1 test vectors (tests/vectors/usb-protocol-v1.json) from qrng.sources.usbproto,
and print them as the Markdown table of docs/usb-protocol.md ("Test vectors"). Deterministic: a fixed TEST-ONLY
P-256 key and deterministic ECDSA (RFC 6979), so the signatures are vectors too.

Usage: python scripts/usb_vectors.py [--write]"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from qrng.sources import usbproto as P

OUT = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "usb-protocol-v1.json"
TEST_KEY_SCALAR = int.from_bytes(hashlib.sha256(b"qrng-ceremony USB protocol v1 TEST-ONLY vector key").digest(),
                                 "big") % (2**256 - 2**224 + 2**192 + 2**96 - 1)  # TEST-ONLY, public


def setup(rt: int, req: int, value: int, index: int, length: int) -> str:
    return struct.pack("<BBHHH", rt, req, value, index, length).hex()


def vectors() -> dict[str, object]:
    key = ec.derive_private_key(TEST_KEY_SCALAR, ec.SECP256R1())

    def sign(msg: bytes) -> bytes:
        return key.sign(msg, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))

    info = P.DeviceInfo(8, 12, P.FLAG_ATTESTATION | P.FLAG_SIGNED_READ, 6.5,
                        hashlib.sha256(b"firmware 2.1.0").digest(), (2, 1, 0), "Example Vendor", "QX-1", "QX1-000042")
    status = P.Status(P.Status.STARTUP_DONE | P.Status.HEALTHY, 0, 0, 123456789, 36250, 3600)
    nonce = bytes(range(32))
    chain_sha = hashlib.sha256(b"the chain blob of the device").digest()
    att = P.Attestation(7, hashlib.sha256(info.encode()).digest(), chain_sha, status, b"")
    att = P.Attestation(7, att.info_sha256, chain_sha, status, sign(P.attestation_message(nonce, att)))
    rd = P.SignedRead(8, bytes(range(16)), b"")
    rd = P.SignedRead(8, rd.samples, sign(P.read_message(nonce, rd)))
    pub = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {
        "note": "TEST-ONLY key; deterministic ECDSA P-256/SHA-256 (RFC 6979). Hex strings. Made by "
                "scripts/usb_vectors.py from qrng/sources/usbproto.py.",
        "test_public_key_x962": pub.hex(),
        "nonce": nonce.hex(),
        "requests": [
            {"name": "GET_VERSION", "setup": setup(P.RT_IN, P.REQ.GET_VERSION, 1, 0, 4), "response": "01000100"},
            {"name": "GET_INFO", "setup": setup(P.RT_IN, P.REQ.GET_INFO, 0, 0, 512), "response": info.encode().hex()},
            {"name": "GET_STATUS", "setup": setup(P.RT_IN, P.REQ.GET_STATUS, 0, 0, 32),
             "response": status.encode().hex()},
            {"name": "SET_NONCE", "setup": setup(P.RT_OUT, P.REQ.SET_NONCE, 0, 0, 32), "data": nonce.hex()},
            {"name": "GET_ATTESTATION", "setup": setup(P.RT_IN, P.REQ.GET_ATTESTATION, 0, 0, 512),
             "response": att.encode().hex(), "signed_message": P.attestation_message(nonce, att).hex(),
             "chain_sha256": chain_sha.hex()},
            {"name": "SIGNED_READ", "setup": setup(P.RT_IN, P.REQ.SIGNED_READ, 16, 0, 16 + 128),
             "response": rd.encode().hex(), "signed_message": P.read_message(nonce, rd).hex()},
            {"name": "RESET", "setup": setup(P.RT_OUT, P.REQ.RESET, 0, 0, 0)},
        ],
    }


def markdown(v: dict[str, object]) -> str:
    rows = ["| request | setup packet | data or response |", "|---|---|---|"]
    for r in v["requests"]:  # type: ignore[attr-defined]
        rows.append(f"| {r['name']} | `{r['setup']}` | `{r.get('response', r.get('data', '(none)'))}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    v = vectors()
    if "--write" in sys.argv:
        OUT.write_text(json.dumps(v, indent=1) + "\n")
        print(f"wrote {OUT}", file=sys.stderr)
    print(markdown(v))
