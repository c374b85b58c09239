"""Device attestation: the entropy source proves what it is.

A statement (canonical JSON in a DSSE envelope) carries the device identity, model, serial, firmware
digest, health counters, configuration digest, the verifier's fresh nonce and the time, signed by a
per-device key whose X.509 certificate chains to a manufacturer root. The device certificate carries a
``qrngDeviceInfo`` extension (model, serial, certified firmware digest, simulator flag).

The simulator attests with a file key and a certificate from a TEST-ONLY manufacturer CA made at set-up
(``qrng attestation init-simulator``); both say "simulator" and "test only". Its F5 tamper fault changes
the firmware it reports, so verification fails.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..atomic import atomic_write
from ..dsse import EnvelopeError, open_envelope, seal
from ..errors import EntropyError, UsageError
from ..lockfile import hold

__all__ = ["ATTESTATION_TYPE", "AttestationError", "AttestationResult", "DEVICE_INFO_OID", "attest",
           "certified_device", "init_simulator", "issue_device_certificate", "verify_attestation"]

ATTESTATION_TYPE = "application/vnd.qrng-ceremony.device-attestation+json"
# A private OID under the UUID arc (ITU-T X.667): 2.25.<uuid as integer>.
DEVICE_INFO_OID = x509.ObjectIdentifier("2.25.233144393153429960158513779478618427211")
SIM_FIRMWARE = b"qrng-simulator firmware 1.0"
SIM_FIRMWARE_TAMPERED = b"qrng-simulator firmware 1.0 (modified)"


class AttestationError(EntropyError):
    """The attestation does not verify; the message names the check that failed."""


class DeviceInfo(core.Sequence):  # type: ignore[misc]
    _fields = [("model", core.UTF8String), ("serial", core.UTF8String), ("firmwareDigest", core.OctetString),
               ("simulator", core.Boolean)]


@dataclass(frozen=True)
class AttestationResult:
    statement: dict[str, Any]
    device_certificate: x509.Certificate
    manufacturer: x509.Certificate
    simulator: bool

    @property
    def serial(self) -> str:
        return str(self.statement["device"]["serial"])


def certified_device(certificate: Path) -> dict[str, Any]:
    """The model, serial and simulator flag certified in a device certificate's qrngDeviceInfo extension (the
    first certificate of a PEM file): what a run sheet tells witnesses to compare the attestation with."""
    try:
        device = x509.load_pem_x509_certificate(certificate.read_bytes())
        ext = device.extensions.get_extension_for_oid(DEVICE_INFO_OID).value
        assert isinstance(ext, x509.UnrecognizedExtension)
        info = DeviceInfo.load(ext.value)
        return {"model": info["model"].native, "serial": info["serial"].native,
                "simulator": bool(info["simulator"].native)}
    except (OSError, ValueError, AssertionError, x509.ExtensionNotFound) as exc:
        raise AttestationError(f"{certificate}: no certified device identity ({type(exc).__name__})") from None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn)])


def _pem(path: Path, data: bytes, mode: int = 0o644) -> None:
    atomic_write(path, data, overwrite=True)  # created 0600: a private key is never readable by others
    path.chmod(mode)


def _device_certificate(ca: x509.Certificate, ca_key: Any, serial: str, model: str, firmware_digest: bytes,
                        simulator: bool, cn: str) -> tuple[Any, x509.Certificate]:
    """A device key and its certificate with the qrngDeviceInfo extension (model, serial, firmware, simulator)."""
    now = _now()
    dev_key = ec.generate_private_key(ec.SECP256R1())
    info = DeviceInfo({"model": model, "serial": serial, "firmwareDigest": firmware_digest,
                       "simulator": simulator}).dump()
    dev = (x509.CertificateBuilder().subject_name(_name(f"{cn} - TEST ONLY", "qrng-ceremony"))
           .issuer_name(ca.subject).public_key(dev_key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
           .add_extension(x509.UnrecognizedExtension(DEVICE_INFO_OID, info), critical=False)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
           .sign(ca_key, hashes.SHA256()))
    return dev_key, dev


def _load_ca(directory: Path) -> tuple[x509.Certificate, Any]:
    """The TEST-ONLY manufacturer CA of ``directory``; a damaged one is named (UsageError), never replaced."""
    cert, key = directory / "test-manufacturer-ca.pem", directory / "test-manufacturer-ca.key"
    try:
        ca = x509.load_pem_x509_certificate(cert.read_bytes())
    except ValueError:
        raise UsageError(f"{cert}: not a PEM certificate; this folder's TEST-ONLY CA is damaged (remove the "
                         "folder to make a new one)") from None
    try:
        ca_key = serialization.load_pem_private_key(key.read_bytes(), None)
    except (ValueError, TypeError):
        raise UsageError(f"{key}: not an unencrypted PEM private key; this folder's TEST-ONLY CA is damaged "
                         "(remove the folder to make a new one)") from None
    return ca, ca_key


def issue_device_certificate(directory: Path, serial: str, model: str, firmware_digest: bytes,
                             simulator: bool) -> tuple[bytes, bytes]:
    """A TEST-ONLY device key (PEM) and chain (device, then CA; PEM) from the TEST-ONLY manufacturer CA that
    init_simulator made in ``directory``: for the USB EMULATOR."""
    ca, ca_key = _load_ca(directory)
    key, dev = _device_certificate(ca, ca_key, serial, model, firmware_digest, simulator, f"QRNG USB emulator {serial}")
    enc = serialization.Encoding.PEM
    return (key.private_bytes(enc, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            dev.public_bytes(enc) + ca.public_bytes(enc))


def init_simulator(directory: str | Path, serial: str = "SIM-0001") -> dict[str, Path]:
    """Create (once) the TEST-ONLY manufacturer CA and the simulator's device key and certificate."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"root": d / "test-manufacturer-ca.pem", "root_key": d / "test-manufacturer-ca.key",
             "certificate": d / f"device-{serial}.pem", "key": d / f"device-{serial}.key"}
    if all(p.exists() for p in paths.values()):
        return paths
    with hold(d / ".ca-init.lock", f"the TEST-ONLY manufacturer CA folder {d}"):  # two at once would mix keys
        if not all(p.exists() for p in paths.values()):  # else made by a run that held the lock first
            _make_simulator_ca(paths, serial)
    return paths


def _simulator_ca(ca_key: Any) -> x509.Certificate:
    now = _now()
    ca_name = _name("QRNG Simulator Manufacturer CA - TEST ONLY", "qrng-ceremony test manufacturer (not a vendor)")
    return (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _make_simulator_ca(paths: dict[str, Path], serial: str) -> None:
    """The CA once; a device of another serial is issued by the CA already there (a new CA would orphan every
    device certificate the folder's CA issued before: the USB EMULATOR's among them)."""
    enc = serialization.Encoding.PEM
    key_fmt = (serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if paths["root"].exists() and paths["root_key"].exists():
        ca, ca_key = _load_ca(paths["root"].parent)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _simulator_ca(ca_key)
        _pem(paths["root"], ca.public_bytes(enc))
        _pem(paths["root_key"], ca_key.private_bytes(enc, *key_fmt), 0o600)
    dev_key, dev = _device_certificate(ca, ca_key, serial, "QRNG-SIM homodyne model (SIMULATOR)",
                                       hashlib.sha256(SIM_FIRMWARE).digest(), True, f"QRNG simulator {serial}")
    _pem(paths["certificate"], dev.public_bytes(enc) + ca.public_bytes(enc))
    _pem(paths["key"], dev_key.private_bytes(enc, *key_fmt), 0o600)


def attest(source: Any, nonce: bytes, health: dict[str, Any], config_digest: str,
           key_path: Path, cert_path: Path) -> dict[str, Any]:
    """Device side: the simulator's statement, signed with its device key (a real device signs internally)."""
    info = source.info
    if not info.simulator:
        raise AttestationError(f"{info.label} cannot attest: only devices with an attestation key can")
    firmware = SIM_FIRMWARE_TAMPERED if getattr(source, "tampered", False) else SIM_FIRMWARE
    statement = {"_type": "qrng-device-attestation/v1",
                 "device": {"identity": info.identity, "model": info.model, "serial": info.serial,
                            "simulator": info.simulator, "quantum": info.quantum},
                 "firmware_sha256": hashlib.sha256(firmware).hexdigest(), "health": health,
                 "config_sha256": config_digest, "nonce": nonce.hex(),
                 "time": _now().strftime("%Y-%m-%dT%H:%M:%SZ")}
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    env = seal(ATTESTATION_TYPE, payload, lambda m: key.sign(m, ec.ECDSA(hashes.SHA256())), info.serial)
    env["certificates"] = [c.public_bytes(serialization.Encoding.PEM).decode()
                           for c in x509.load_pem_x509_certificates(cert_path.read_bytes())]
    return env


def verify_attestation(env: dict[str, Any], nonce: bytes, roots: list[x509.Certificate],
                       allow_simulator: bool, max_age_s: int = 600) -> AttestationResult:
    """Verifier side (pure): chain to a trusted manufacturer root, signature, nonce, firmware, freshness."""
    try:
        chain = [x509.load_pem_x509_certificate(c.encode()) for c in env["certificates"]]
    except (KeyError, TypeError, ValueError):
        raise AttestationError("attestation carries no readable certificate chain") from None
    if not chain:
        raise AttestationError("attestation carries no device certificate")
    device = chain[0]
    named = [r for r in roots if r.subject == device.issuer]
    issuer = None
    for r in named:
        try:
            device.verify_directly_issued_by(r)
        except (ValueError, TypeError, InvalidSignature):
            continue
        issuer = r
        break
    if issuer is None:
        why = ("a trusted root has that name but did not sign it (impostor?)" if named
               else "no trusted root has that name")
        raise AttestationError(f"device certificate issuer '{device.issuer.rfc4514_string()}' is not a trusted "
                               f"manufacturer root of the policy: {why}")
    now = _now()
    if not device.not_valid_before_utc <= now <= device.not_valid_after_utc:
        raise AttestationError("device certificate is outside its validity period")
    pub = device.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise AttestationError("device key must be an EC key")

    def check(message: bytes, sig: bytes) -> bool:
        try:
            pub.verify(sig, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    try:
        statement = json.loads(open_envelope(env, ATTESTATION_TYPE, check))
    except EnvelopeError as exc:
        raise AttestationError(f"attestation signature: {exc}") from None
    if statement.get("nonce") != nonce.hex():
        raise AttestationError("attestation nonce does not match the verifier's challenge (replayed statement?)")
    try:
        ext = device.extensions.get_extension_for_oid(DEVICE_INFO_OID).value
        assert isinstance(ext, x509.UnrecognizedExtension)
        info = DeviceInfo.load(ext.value)
    except (x509.ExtensionNotFound, ValueError):
        raise AttestationError("device certificate has no qrngDeviceInfo extension") from None
    certified = bytes(info["firmwareDigest"].native).hex()
    if statement.get("firmware_sha256") != certified:
        raise AttestationError(f"firmware digest {str(statement.get('firmware_sha256'))[:16]}... differs from the "
                               f"certified {certified[:16]}...: the device was modified (tamper, F5)")
    dev = statement.get("device", {})
    if dev.get("serial") != info["serial"].native:
        raise AttestationError("statement serial differs from the certified serial")
    simulator = bool(info["simulator"].native)
    if simulator != bool(dev.get("simulator")):
        raise AttestationError("statement and certificate disagree on whether this is a simulator")
    if simulator and not allow_simulator:
        raise AttestationError("the device is a simulator and the policy forbids simulators")
    try:
        t = datetime.datetime.strptime(statement["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except (KeyError, ValueError):
        raise AttestationError("attestation time is missing or malformed") from None
    if abs((now - t).total_seconds()) > max_age_s:
        raise AttestationError(f"attestation time {statement['time']} is not fresh")
    return AttestationResult(statement, device, issuer, simulator)
