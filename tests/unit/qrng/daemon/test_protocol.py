"""The qrngd wire protocol v1 (docs/daemon-protocol.md): headers, limits, hostile input."""

from __future__ import annotations

import pytest

from qrng.daemon import protocol as P


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
