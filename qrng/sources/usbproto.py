"""The qrng-ceremony USB QRNG protocol, version 1 (docs/usb-protocol.md): byte layouts, pure encoders and
decoders, and the messages a device signs. No I/O: the driver (usb.py) and the emulator (usbemu.py) both use it,
and the document's test vectors are made from it (scripts/usb_vectors.py).

All multi-byte integers are little-endian, as in USB descriptors. A decoder raises :class:`ProtocolError` naming
the field that is wrong; it never returns a partly parsed value.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["ATTEST_CONTEXT", "CHAIN_BLOCK", "DOMAIN", "FLAG_ATTESTATION", "FLAG_EMULATOR", "FLAG_SIGNED_READ",
           "INTERFACE_CLASS", "INTERFACE_PROTOCOL", "INTERFACE_SUBCLASS", "MAX_SIGNED_READ", "NONCE_LEN",
           "READ_CONTEXT", "REQ", "RT_IN", "RT_OUT", "SIG_ECDSA_P256_SHA256", "STATUS_LEN", "VERSION",
           "Attestation", "DeviceInfo", "ProtocolError", "SignedRead", "Status", "attestation_message",
           "decode_chain", "encode_chain", "read_message"]

VERSION = 1                # the protocol version this module speaks
INTERFACE_CLASS = 0xFF     # vendor-specific, as ChaosKey and Alea: raw mode works with existing drivers
INTERFACE_SUBCLASS = 0x51  # 'Q': this protocol's control requests are understood
INTERFACE_PROTOCOL = 0x01
RT_IN = 0xC1               # bmRequestType: device-to-host | vendor | interface
RT_OUT = 0x41              # host-to-device | vendor | interface
NONCE_LEN = 32
STATUS_LEN = 32
CHAIN_BLOCK = 1024         # GET_CERTS returns the chain in blocks of this size; a short block is the last
MAX_SIGNED_READ = 2048     # samples in one SIGNED_READ (the response fits a 4096-byte control transfer)
SIG_ECDSA_P256_SHA256 = 1
FLAG_EMULATOR = 0x01       # a software model (the emulator): never a physical, never a quantum device
FLAG_ATTESTATION = 0x02
FLAG_SIGNED_READ = 0x04
DOMAIN = b"qrng-ceremony.usb/v1\x00"
ATTEST_CONTEXT = DOMAIN + b"attestation\x00"
READ_CONTEXT = DOMAIN + b"signed-read\x00"


class REQ:
    """bRequest values (the vendor requests of the protocol)."""

    GET_VERSION = 0x01
    GET_INFO = 0x02
    GET_CERTS = 0x03
    SET_NONCE = 0x04
    GET_ATTESTATION = 0x05
    GET_STATUS = 0x06
    SIGNED_READ = 0x07
    RESET = 0x08


class ProtocolError(ValueError):
    """A response does not follow the protocol; the message names the request and field."""


def _need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise ProtocolError(f"{what}: {len(data)} bytes, at least {n} expected")


def _string(data: bytes, off: int, what: str) -> tuple[str, int]:
    _need(data, off + 1, what)
    n = data[off]
    _need(data, off + 1 + n, what)
    try:
        return data[off + 1:off + 1 + n].decode("utf-8"), off + 1 + n
    except UnicodeDecodeError:
        raise ProtocolError(f"{what}: not UTF-8") from None


def _put_string(value: str, what: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 64:
        raise ProtocolError(f"{what}: at most 64 bytes")
    return bytes([len(raw)]) + raw


@dataclass(frozen=True)
class DeviceInfo:
    """GET_INFO: what the device says it is. ``claimed_min_entropy`` is bits per sample (16.16 fixed point on
    the wire, so it survives a round trip exactly only to 1/65536 bit)."""

    bits_per_sample: int
    adc_bits: int
    flags: int
    claimed_min_entropy: float
    firmware_sha256: bytes
    firmware_version: tuple[int, int, int]
    vendor: str
    model: str
    serial: str

    @property
    def emulator(self) -> bool:
        return bool(self.flags & FLAG_EMULATOR)

    def encode(self) -> bytes:
        if not 1 <= self.bits_per_sample <= 8:
            raise ProtocolError("GET_INFO bits_per_sample: 1..8")
        if len(self.firmware_sha256) != 32:
            raise ProtocolError("GET_INFO firmware_sha256: 32 bytes")
        major, minor, patch = self.firmware_version
        return (struct.pack("<BBBBI", 1, self.bits_per_sample, self.adc_bits, self.flags,
                            round(self.claimed_min_entropy * 65536))
                + self.firmware_sha256 + struct.pack("<BBH", major, minor, patch)
                + _put_string(self.vendor, "vendor") + _put_string(self.model, "model")
                + _put_string(self.serial, "serial"))

    @classmethod
    def decode(cls, data: bytes) -> DeviceInfo:
        _need(data, 44, "GET_INFO")
        version, bits, adc, flags, h = struct.unpack_from("<BBBBI", data)
        if version != 1:
            raise ProtocolError(f"GET_INFO struct version {version}; this host reads version 1")
        if not 1 <= bits <= 8:
            raise ProtocolError(f"GET_INFO bits_per_sample {bits}: must be 1..8")
        claimed = h / 65536
        if not 0 < claimed <= bits:
            raise ProtocolError(f"GET_INFO claimed min-entropy {claimed:g}: must be in (0, {bits}]")
        major, minor, patch = struct.unpack_from("<BBH", data, 40)
        vendor, off = _string(data, 44, "GET_INFO vendor")
        model, off = _string(data, off, "GET_INFO model")
        serial, off = _string(data, off, "GET_INFO serial")
        if off != len(data):
            raise ProtocolError(f"GET_INFO: {len(data) - off} bytes after the serial")
        return cls(bits, adc, flags, claimed, bytes(data[8:40]), (major, minor, patch), vendor, model, serial)


@dataclass(frozen=True)
class Status:
    """GET_STATUS (32 bytes): the device's own health-test state and counters."""

    STARTUP_DONE = 0x01
    HEALTHY = 0x02
    RCT_LATCHED = 0x04
    APT_LATCHED = 0x08

    flags: int
    rct_failures: int
    apt_failures: int
    samples: int
    temperature_mc: int  # milli-degrees Celsius; -2**31 when the device has no sensor
    uptime_s: int

    @property
    def healthy(self) -> bool:
        return bool(self.flags & self.STARTUP_DONE) and bool(self.flags & self.HEALTHY)

    def encode(self) -> bytes:
        return struct.pack("<IIIQiII", self.flags, self.rct_failures, self.apt_failures, self.samples,
                           self.temperature_mc, self.uptime_s, 0)

    @classmethod
    def decode(cls, data: bytes) -> Status:
        if len(data) != STATUS_LEN:
            raise ProtocolError(f"GET_STATUS: {len(data)} bytes, {STATUS_LEN} expected")
        flags, rct, apt, samples, temp, up, _ = struct.unpack("<IIIQiII", data)
        return cls(flags, rct, apt, samples, temp, up)


def _signature(data: bytes, off: int, what: str) -> tuple[bytes, int]:
    _need(data, off + 1, what)
    n = data[off]
    if not 8 <= n <= 72:
        raise ProtocolError(f"{what}: signature length {n} is not an ECDSA P-256 DER signature's")
    _need(data, off + 1 + n, what)
    if off + 1 + n != len(data):
        raise ProtocolError(f"{what}: {len(data) - off - 1 - n} bytes after the signature")
    return bytes(data[off + 1:off + 1 + n]), off + 1 + n


@dataclass(frozen=True)
class Attestation:
    """GET_ATTESTATION: the device's signed statement over the host's nonce, a counter that never repeats, the
    digests of its GET_INFO answer and certificate chain, and its status."""

    counter: int
    info_sha256: bytes
    chain_sha256: bytes
    status: Status
    signature: bytes
    algorithm: int = SIG_ECDSA_P256_SHA256

    def signed_part(self) -> bytes:
        return (struct.pack("<BBQ", 1, self.algorithm, self.counter) + self.info_sha256 + self.chain_sha256
                + self.status.encode())

    def encode(self) -> bytes:
        return self.signed_part() + bytes([len(self.signature)]) + self.signature

    @classmethod
    def decode(cls, data: bytes) -> Attestation:
        _need(data, 10 + 64 + STATUS_LEN + 1, "GET_ATTESTATION")
        version, alg, counter = struct.unpack_from("<BBQ", data)
        if version != 1:
            raise ProtocolError(f"GET_ATTESTATION struct version {version}; this host reads version 1")
        if alg != SIG_ECDSA_P256_SHA256:
            raise ProtocolError(f"GET_ATTESTATION signature algorithm {alg} is unknown")
        status = Status.decode(bytes(data[74:74 + STATUS_LEN]))
        sig, _ = _signature(data, 74 + STATUS_LEN, "GET_ATTESTATION")
        return cls(counter, bytes(data[10:42]), bytes(data[42:74]), status, sig, alg)


@dataclass(frozen=True)
class SignedRead:
    """SIGNED_READ: raw samples with the counter, signed over the host's nonce: proof of which bytes came from
    which device."""

    counter: int
    samples: bytes
    signature: bytes
    algorithm: int = SIG_ECDSA_P256_SHA256

    def signed_part(self) -> bytes:
        return struct.pack("<BBQH", 1, self.algorithm, self.counter, len(self.samples)) + self.samples

    def encode(self) -> bytes:
        return self.signed_part() + bytes([len(self.signature)]) + self.signature

    @classmethod
    def decode(cls, data: bytes) -> SignedRead:
        _need(data, 12, "SIGNED_READ")
        version, alg, counter, n = struct.unpack_from("<BBQH", data)
        if version != 1:
            raise ProtocolError(f"SIGNED_READ struct version {version}; this host reads version 1")
        if alg != SIG_ECDSA_P256_SHA256:
            raise ProtocolError(f"SIGNED_READ signature algorithm {alg} is unknown")
        _need(data, 12 + n + 1, "SIGNED_READ")
        sig, _ = _signature(data, 12 + n, "SIGNED_READ")
        return cls(counter, bytes(data[12:12 + n]), sig, alg)


def attestation_message(nonce: bytes, att: Attestation) -> bytes:
    """What the device signs for GET_ATTESTATION (ECDSA P-256 over SHA-256 of these bytes)."""
    return ATTEST_CONTEXT + nonce + att.signed_part()


def read_message(nonce: bytes, rd: SignedRead) -> bytes:
    """What the device signs for SIGNED_READ."""
    return READ_CONTEXT + nonce + rd.signed_part()


def encode_chain(ders: list[bytes]) -> bytes:
    """GET_CERTS' blob: a count, then each certificate (device first) as a 16-bit length and DER."""
    if not 1 <= len(ders) <= 8:
        raise ProtocolError("certificate chain: 1..8 certificates")
    return bytes([len(ders)]) + b"".join(struct.pack("<H", len(d)) + d for d in ders)


def decode_chain(blob: bytes) -> list[bytes]:
    _need(blob, 1, "GET_CERTS")
    count, off, out = blob[0], 1, []
    if not 1 <= count <= 8:
        raise ProtocolError(f"GET_CERTS: {count} certificates (1..8)")
    for i in range(count):
        _need(blob, off + 2, f"GET_CERTS certificate {i}")
        (n,) = struct.unpack_from("<H", blob, off)
        _need(blob, off + 2 + n, f"GET_CERTS certificate {i}")
        out.append(bytes(blob[off + 2:off + 2 + n]))
        off += 2 + n
    if off != len(blob):
        raise ProtocolError(f"GET_CERTS: {len(blob) - off} bytes after the last certificate")
    return out
