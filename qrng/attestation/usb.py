"""Attestation over USB (docs/usb-protocol.md, "Attestation") and firmware transparency.

A verifier sends a fresh 32-byte nonce; the device answers with a statement over the nonce, a counter that
never repeats, the digests of its GET_INFO answer and certificate chain, and its status, signed with its device
key (ECDSA P-256). :func:`verify_usb_attestation` checks, in order: the chain to a manufacturer root, the
certified identity (qrngDeviceInfo: serial, firmware digest, emulator flag) against GET_INFO, the digests, the
signature over this nonce, and that the counter is above the last one this verifier saw (a replay).

Firmware: a digest is acceptable when the policy lists it, or when the vendor's offline proof
(c2sp.org/tlog-proof@v1, shipped beside the firmware) shows its manifest (:func:`firmware_manifest`) in a
firmware transparency log the policy names, signed by the log's key and cosigned by its witnesses. The proof is
checked with the audit log's own code (transparency.proof).
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..sources import usbproto as P
from .statement import DEVICE_INFO_OID, AttestationError
from .statement import DeviceInfo as CertDeviceInfo

__all__ = ["FirmwarePolicy", "UsbAttestation", "bind_to_source", "check_firmware", "firmware_manifest",
           "verify_usb_attestation"]


@dataclass(frozen=True)
class UsbAttestation:
    serial: str
    model: str
    emulator: bool
    counter: int
    firmware_sha256: str
    firmware_version: str
    manufacturer: str
    status: P.Status
    info: P.DeviceInfo


@dataclass(frozen=True)
class FirmwarePolicy:
    """Which firmware a policy accepts: listed digests, and/or inclusion in a transparency log."""

    allowed_sha256: frozenset[str] = frozenset()
    log_origin: str = ""
    log_key: str = ""                      # the log's verifier key (note format)
    witnesses: tuple[str, ...] = field(default_factory=tuple)  # cosignature verifier keys
    quorum: int = 0

    @property
    def active(self) -> bool:
        return bool(self.allowed_sha256 or self.log_key)


def firmware_manifest(info: P.DeviceInfo) -> bytes:
    """The entry a vendor logs for a firmware release; rebuilt by the verifier from what the device attests."""
    version = "{}.{}.{}".format(*info.firmware_version)
    return (f"qrng-ceremony.firmware/v1\nvendor {info.vendor}\nmodel {info.model}\nversion {version}\n"
            f"sha256 {info.firmware_sha256.hex()}\n").encode()


def check_firmware(info: P.DeviceInfo, policy: FirmwarePolicy, proof: str | None) -> dict[str, Any]:
    """Raise AttestationError unless the policy accepts the attested firmware; say how it was accepted."""
    digest = info.firmware_sha256.hex()
    if digest in policy.allowed_sha256:
        return {"firmware_accepted_by": "policy list"}
    if not policy.log_key:
        raise AttestationError(f"firmware {digest[:16]}... is not in the policy's list of accepted firmware")
    if proof is None:
        raise AttestationError(f"firmware {digest[:16]}... is not listed, and no transparency-log proof was given "
                               "(attestation.firmware_proof in the entropy configuration)")
    from transparency.errors import AuditError
    from transparency.note import Verifier
    from transparency.proof import parse_proof, verify_proof
    try:
        log = Verifier.parse(policy.log_key)
        witnesses = [Verifier.parse(w) for w in policy.witnesses]
        cp = verify_proof(proof, firmware_manifest(info), [log], witnesses, policy.quorum)
    except AuditError as exc:
        raise AttestationError(f"firmware {digest[:16]}...: transparency-log proof does not verify: {exc}") from None
    if policy.log_origin and cp.origin != policy.log_origin:
        raise AttestationError(f"firmware proof is from log {cp.origin!r}, not the policy's {policy.log_origin!r}")
    index = parse_proof(proof)[0]
    return {"firmware_accepted_by": "transparency log", "firmware_log": cp.origin, "firmware_log_index": index,
            "firmware_log_size": cp.size, "firmware_log_root": cp.root.hex()}


IDENTITY_FIELDS = ("serial", "vendor", "model", "bits_per_sample", "adc_bits", "claimed_min_entropy",
                   "firmware_sha256", "firmware_version", "emulator")


def bind_to_source(verified: UsbAttestation, in_use: P.DeviceInfo | None) -> None:
    """The identity a source serves under (its GET_INFO when it was opened: serial, sample width, claimed
    min-entropy, firmware) must be the one just attested. Verifying one GET_INFO answer and serving under another
    would check one copy and use a second (issue 20); raises AttestationError naming the fields that differ."""
    if in_use is None:
        return
    differ = [f for f in IDENTITY_FIELDS if getattr(in_use, f) != getattr(verified.info, f)]
    if differ:
        raise AttestationError(f"the device answered GET_INFO differently when it was opened than in its attestation "
                               f"({', '.join(differ)}): its output is not served under an identity that was not "
                               "attested")


def verify_usb_attestation(att: P.Attestation, info_raw: bytes, chain: list[bytes], nonce: bytes,
                           roots: list[Any], allow_emulator: bool, last_counter: int = 0) -> UsbAttestation:
    """Everything a verifier checks in a device's answer; raises AttestationError naming the check that failed."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    if not chain:
        raise AttestationError("the device sent no certificate")
    try:
        certs = [x509.load_der_x509_certificate(d) for d in chain]
    except ValueError:
        raise AttestationError("the device's certificate chain is not DER X.509") from None
    device, issuers = certs[0], certs[1:]
    anchor = None
    for cert in [device, *issuers]:
        for root in roots:
            if cert.issuer == root.subject:
                try:
                    cert.verify_directly_issued_by(root)
                    anchor = root
                except (ValueError, TypeError, InvalidSignature):
                    continue
        if anchor is not None:
            break
    if anchor is None:
        raise AttestationError("the device certificate does not chain to a manufacturer root of the policy")
    for child, parent in zip(certs, certs[1:], strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise AttestationError("the device's certificate chain is broken") from None
    now = datetime.datetime.now(datetime.UTC)
    if not device.not_valid_before_utc <= now <= device.not_valid_after_utc:
        raise AttestationError("the device certificate is outside its validity period")
    try:
        ext = device.extensions.get_extension_for_oid(DEVICE_INFO_OID).value
        assert isinstance(ext, x509.UnrecognizedExtension)
        certified = CertDeviceInfo.load(ext.value)
    except (x509.ExtensionNotFound, ValueError, AssertionError):
        raise AttestationError("the device certificate has no qrngDeviceInfo extension") from None
    try:
        info = P.DeviceInfo.decode(info_raw)
    except P.ProtocolError as exc:
        raise AttestationError(f"GET_INFO: {exc}") from None
    if hashlib.sha256(info_raw).digest() != att.info_sha256:
        raise AttestationError("the statement covers a different GET_INFO answer")
    if hashlib.sha256(P.encode_chain(chain)).digest() != att.chain_sha256:
        raise AttestationError("the statement covers a different certificate chain")
    if info.serial != certified["serial"].native:
        raise AttestationError(f"the device says serial {info.serial!r}; its certificate says "
                               f"{certified['serial'].native!r}")
    if info.firmware_sha256 != bytes(certified["firmwareDigest"].native):
        raise AttestationError(f"firmware {info.firmware_sha256.hex()[:16]}... differs from the certified "
                               f"{bytes(certified['firmwareDigest'].native).hex()[:16]}...: the device was modified")
    if info.emulator != bool(certified["simulator"].native):
        raise AttestationError("the device and its certificate disagree on whether it is an emulator")
    if info.emulator and not allow_emulator:
        raise AttestationError("the device is the USB EMULATOR and the policy forbids simulated sources")
    pub = device.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise AttestationError("the device key must be an EC P-256 key")
    try:
        pub.verify(att.signature, P.attestation_message(nonce, att), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AttestationError("the attestation signature does not verify for this nonce (stale or replayed "
                               "statement, or a different device key)") from None
    if att.counter <= last_counter:
        raise AttestationError(f"attestation counter {att.counter} is not above the last one seen ({last_counter}): "
                               "a replayed statement")
    return UsbAttestation(info.serial, f"{info.vendor} {info.model}", info.emulator, att.counter,
                          info.firmware_sha256.hex(), "{}.{}.{}".format(*info.firmware_version),
                          anchor.subject.rfc4514_string(), att.status, info)
