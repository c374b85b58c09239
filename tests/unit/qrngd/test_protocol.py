"""The qrngd wire protocol v1 (docs/daemon-protocol.md): headers, limits, hostile input."""

from __future__ import annotations

import pytest

from qrngd import protocol as P


def test_round_trip_and_layout():
    raw = P.seed_request(48)
    assert raw.hex() == "5152" "01" "02" "04000000" "30000000"  # "QR", v1, SEED, length 4, n=48
    version, op, length = P.decode_header(raw[:8])
    assert (version, op, length) == (1, P.OP.SEED, 4) and P.seed_length(raw[8:]) == 48
    resp = P.encode_response(P.STATUS.UNHEALTHY, b"why")
    assert P.decode_header(resp[:8]) == (1, P.STATUS.UNHEALTHY, 3)


@pytest.mark.parametrize("header,match", [
    (b"QR\x01\x02\x04\x00", "6 bytes"), (b"XX\x01\x02\x04\x00\x00\x00", "magic"),
    (b"QR\x01\x02\x00\x00\x02\x00", "exceeds"),
])
def test_hostile_headers(header, match):
    with pytest.raises(P.ProtocolError, match=match):
        P.decode_header(header)


@pytest.mark.parametrize("payload,match", [
    (b"", "0 bytes"), (b"\x00\x00\x00\x00", "SEED of 0"), ((4097).to_bytes(4, "little"), "SEED of 4097"),
    (b"\xff" * 8, "8 bytes"),
])
def test_seed_lengths_are_bounded(payload, match):
    with pytest.raises(P.ProtocolError, match=match):
        P.seed_length(payload)


def test_the_c_modules_protocol_header_comes_from_this_module():
    """Issue 21 (one source for the wire protocol's constants): the C module's ops, statuses, limits, magic and
    default socket are generated from qrngd/protocol.py, and the C sources define none of them by hand."""
    import re
    from pathlib import Path

    from qrng_pkcs11.build import protocol_header
    header = protocol_header()
    defined = dict(re.findall(r"#define (QRNGD_\w+) (.+)", header))
    for name in ("HELLO", "SEED", "STATUS", "FALLBACK", "HISTORY"):
        assert defined[f"QRNGD_{name}"] == str(getattr(P.OP, name))
    for name in ("OK", "UNHEALTHY", "BAD_REQUEST", "TOO_LARGE"):
        assert defined[f"QRNGD_{name}"] == str(getattr(P.STATUS, name))
    assert defined["QRNGD_STATUS_VERSION"] == str(P.STATUS.VERSION)
    assert defined["QRNGD_MAX_PAYLOAD"] == f"{P.MAX_PAYLOAD}u" and defined["QRNGD_MAX_SEED"] == f"{P.MAX_SEED}u"
    assert defined["QRNGD_DEFAULT_SOCKET"] == f'"{P.DEFAULT_SOCKET}"'
    assert defined["QRNGD_PROTOCOL_VERSION"] == str(P.VERSION)
    csrc = Path(__file__).resolve().parents[3] / "csrc" / "qrngd_client"
    for f in csrc.glob("*.[ch]"):
        hand = set(re.findall(r"#define (QRNGD_\w+)|\b(QRNGD_\w+) = \d", f.read_text()))
        assert not {n for pair in hand for n in pair if n in defined}, f"{f.name} defines protocol constants by hand"
