"""The qrngd wire protocol, version 1 (docs/daemon-protocol.md): fixed 8-byte headers, little-endian, one request
and one response at a time on a stream socket. Pure: encoders, decoders and limits; no I/O.

Request:  magic "QR" | u8 version | u8 op | u32 payload length | payload
Response: magic "QR" | u8 version | u8 status | u32 payload length | payload
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_SOCKET", "HEADER", "MAGIC", "MAX_PAYLOAD", "MAX_SEED", "OP", "STATUS", "VERSION", "ProtocolError",
           "Request", "Response", "decode_header", "encode_request", "encode_response", "fallback_seeds",
           "seed_length", "seed_request"]

MAGIC = b"QR"
VERSION = 1
HEADER = struct.Struct("<2sBBI")
MAX_SEED = 4096          # bytes of seed material in one SEED request
MAX_PAYLOAD = 1 << 16    # no request or response is longer
DEFAULT_SOCKET = "/run/qrngd/qrngd.sock"  # where qrngd listens and clients look by default


class OP:
    HELLO = 1    # payload: UTF-8 client name (at most 64 bytes); answer: JSON daemon identity
    SEED = 2     # payload: u32 n (1..4096); answer: n bytes of health-tested, extracted seed material
    STATUS = 3   # payload: empty; answer: JSON state (sources, health, credited entropy, clients)
    FALLBACK = 4  # payload: u32 seeds the client took from its named fallback since it last could reach the daemon
    HISTORY = 5  # payload: empty; answer: JSON recent history (rates, estimates, failures) for `qrng status --plot`


class STATUS:
    OK = 0
    UNHEALTHY = 1      # fail closed: no source is healthy; the payload says why (UTF-8)
    BAD_REQUEST = 2    # malformed header, unknown op, bad payload
    TOO_LARGE = 3      # SEED n out of range, or payload over MAX_PAYLOAD
    VERSION = 4        # the client's version is not served (payload: u8 highest version served)


class ProtocolError(ValueError):
    """A header or payload does not follow the protocol (names what)."""


@dataclass(frozen=True)
class Request:
    op: int
    payload: bytes


@dataclass(frozen=True)
class Response:
    status: int
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


def decode_header(raw: bytes) -> tuple[int, int, int]:
    """(version, op or status, payload length) of an 8-byte header."""
    if len(raw) != HEADER.size:
        raise ProtocolError(f"header: {len(raw)} bytes, {HEADER.size} expected")
    magic, version, code, length = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ProtocolError(f"header: magic {magic!r}, expected {MAGIC!r}")
    if length > MAX_PAYLOAD:
        raise ProtocolError(f"header: payload of {length} bytes exceeds {MAX_PAYLOAD}")
    return version, code, length


def encode_request(op: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("request payload too large")
    return HEADER.pack(MAGIC, VERSION, op, len(payload)) + payload


def encode_response(status: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("response payload too large")
    return HEADER.pack(MAGIC, VERSION, status, len(payload)) + payload


def seed_request(n: int) -> bytes:
    return encode_request(OP.SEED, struct.pack("<I", n))


def fallback_seeds(payload: bytes) -> int:
    """The count of a FALLBACK report; ProtocolError if the payload is not a u32 of at least 1."""
    if len(payload) != 4:
        raise ProtocolError(f"FALLBACK payload: {len(payload)} bytes, 4 expected")
    n: int = struct.unpack("<I", payload)[0]
    if n < 1:
        raise ProtocolError("FALLBACK of 0 seeds")
    return n


def seed_length(payload: bytes) -> int:
    """The n of a SEED request; ProtocolError if the payload is not a u32 in 1..MAX_SEED."""
    if len(payload) != 4:
        raise ProtocolError(f"SEED payload: {len(payload)} bytes, 4 expected")
    n: int = struct.unpack("<I", payload)[0]
    if not 1 <= n <= MAX_SEED:
        raise ProtocolError(f"SEED of {n} bytes: 1..{MAX_SEED}")
    return n
