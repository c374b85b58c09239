"""A witnessed QRNG randomness beacon whose pulses are NIST Randomness Beacon 2.0 pulses (NISTIR 8213, "A Reference
for Randomness Beacons", draft of May 2019), so a NIST 2.0 client verifies them as they are. Pure: the loop that
makes them (QRNG, HSM, audit log, witnesses, tiles) is qrng_cli/beacon.py.

A pulse, in the 2.0 JSON field order:

* ``uri`` (``<prefix>/chain/<chainIndex>/pulse/<pulseIndex>``), ``version`` ("Version 2.0"), ``cipherSuite`` 0
  (SHA-512 hashing, RSA PKCS#1 v1.5 signatures with SHA-512), ``period`` (milliseconds), ``certificateId`` (here:
  SHA-512 of the DER of the beacon's X.509 certificate, 64 bytes in hex);
* ``chainIndex``, ``pulseIndex`` (from 1), ``timeStamp`` (UTC, ``YYYY-MM-DDTHH:MM:SS.sssZ``, on the period grid);
* ``localRandomValue``: 512 bits of extracted, health-tested QRNG output (hex);
* ``external`` {``sourceId``, ``statusCode``, ``value``}: no external source here: zeros and status 0;
* ``listValues``: the output values of the ``previous`` pulse and of the first pulse of the chain in the UTC
  ``hour``, ``day``, ``month`` and ``year`` of the previous pulse (all zeros where there is none);
* ``precommitmentValue``: SHA-512 of the next pulse's local random value;
* ``statusCode``: bit flags: 1 the first pulse of a chain, 2 a time gap before this pulse (pulses were not
  emitted: a failed health state never emits one), 4 the previous pulse's precommitment is not honoured;
* ``signatureValue``: RSA PKCS#1 v1.5 with SHA-512 over the signature input (hex);
* ``outputValue``: SHA-512(signature input || signature bytes) (hex).

The signature input is the fields from ``uri`` to ``statusCode`` serialised one after another: a string as its
4-byte big-endian length then its UTF-8 bytes; a hex field as the 4-byte length of its bytes then the bytes;
``cipherSuite``, ``period`` and every status code as 4-byte big-endian integers; ``chainIndex`` and ``pulseIndex``
as 8-byte big-endian integers; ``external`` as sourceId, statusCode, value; ``listValues`` in the order previous,
hour, day, month, year.

Every pulse is also an entry of a C2SP tiles log whose checkpoints witnesses cosign, so a relying party can prove a
pulse was published before it was used and that no other pulse with its index was ever signed.

Beacon values are public. They must never be used as secret keys or seeds of secrets."""

from __future__ import annotations

import datetime
import hashlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["CIPHER_SUITE", "STATUS_CHAIN_START", "STATUS_GAP", "STATUS_PRECOMMIT_BROKEN", "VERSION", "BeaconError",
           "BeaconSigner", "Pulse", "certificate_id", "next_pulse", "resume_secret", "self_signed_beacon_key",
           "verify_pulses"]

VERSION = "Version 2.0"
CIPHER_SUITE = 0
STATUS_CHAIN_START, STATUS_GAP, STATUS_PRECOMMIT_BROKEN = 1, 2, 4
KNOWN_STATUS = STATUS_CHAIN_START | STATUS_GAP | STATUS_PRECOMMIT_BROKEN
ZERO = "00" * 64
LINKS = ("previous", "hour", "day", "month", "year")
_STAMP = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")
_HEX512 = re.compile(r"\A[0-9a-fA-F]{128}\Z")
_HEX = re.compile(r"\A(?:[0-9a-fA-F]{2})+\Z")
VERSIONS = (VERSION, "2.0")  # NIST's own pulses say "Version 2.0" (2018-2020) or "2.0" (2026)
U32, U64 = 1 << 32, 1 << 64


class BeaconError(Exception):
    """A pulse or a run of pulses does not verify; names the pulse index and the rule."""


def self_signed_beacon_key(subject: str, bits: int = 3072, days: int = 398) -> tuple[bytes, bytes, bytes]:
    """(private key PEM, certificate PEM, certificate DER) of a new RSA beacon key with a self-signed certificate:
    for rehearsals. In production the key is made in an HSM and its certificate issued by a ceremony's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    key = rsa.generate_private_key(65537, bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    import secrets
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(secrets.randbits(127) | 1).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .sign(key, hashes.SHA512()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


def certificate_id(certificate_der: bytes) -> str:
    """The ``certificateId`` of a beacon certificate: SHA-512 of its DER encoding, in hex."""
    return hashlib.sha512(certificate_der).hexdigest()


@dataclass(frozen=True)
class BeaconSigner:
    """The beacon key: its X.509 certificate (DER) and a function signing the signature input with RSA PKCS#1 v1.5
    and SHA-512 (a file key, or a key held in an HSM through PKCS#11)."""

    certificate_der: bytes
    sign: Callable[[bytes], bytes]

    @property
    def certificate_id(self) -> str:
        return certificate_id(self.certificate_der)


@dataclass(frozen=True)
class Pulse:
    uri: str
    version: str
    cipher_suite: int
    period: int                  # milliseconds
    certificate_id: str          # hex
    chain_index: int
    pulse_index: int
    time_stamp: str              # YYYY-MM-DDTHH:MM:SS.sssZ
    local_random_value: str      # hex, 512 bits
    external: tuple[str, int, str]               # sourceId (hex), statusCode, value (hex)
    list_values: tuple[tuple[str, str, str], ...]  # (uri, type, value) for previous, hour, day, month, year
    precommitment_value: str     # hex
    status_code: int
    signature_value: str = ""    # hex
    output_value: str = ""       # hex

    def link(self, kind: str) -> str:
        return next(v for _, t, v in self.list_values if t == kind)

    @property
    def previous(self) -> str:
        return self.link("previous")

    def signature_input(self) -> bytes:
        """The 2.0 signature input (see the module doc); ValueError for a field that cannot be serialised."""
        def text(s: str) -> bytes:
            b = s.encode("utf-8")
            return struct.pack(">I", len(b)) + b

        def hexed(s: str) -> bytes:
            b = bytes.fromhex(s)
            return struct.pack(">I", len(b)) + b
        for n in (self.cipher_suite, self.period, self.external[1], self.status_code):
            if not 0 <= n < U32:
                raise ValueError(f"{n} does not fit 32 bits")
        for n in (self.chain_index, self.pulse_index):
            if not 0 <= n < U64:
                raise ValueError(f"{n} does not fit 64 bits")
        by_type = {t: v for _, t, v in self.list_values}
        return b"".join([
            text(self.uri), text(self.version), struct.pack(">II", self.cipher_suite, self.period),
            hexed(self.certificate_id), struct.pack(">QQ", self.chain_index, self.pulse_index), text(self.time_stamp),
            hexed(self.local_random_value), hexed(self.external[0]), struct.pack(">I", self.external[1]),
            hexed(self.external[2]), *(hexed(by_type[t]) for t in LINKS), hexed(self.precommitment_value),
            struct.pack(">I", self.status_code)])

    def computed_output(self) -> str:
        """SHA-512(signature input || signature bytes), in upper-case hex as NIST writes it."""
        return hashlib.sha512(self.signature_input() + bytes.fromhex(self.signature_value)).hexdigest().upper()

    def to_json(self) -> dict[str, Any]:
        """The pulse as NIST's 2.0 API serves it (inside ``{"pulse": ...}``), field for field."""
        return {"uri": self.uri, "version": self.version, "cipherSuite": self.cipher_suite, "period": self.period,
                "certificateId": self.certificate_id, "chainIndex": self.chain_index, "pulseIndex": self.pulse_index,
                "timeStamp": self.time_stamp, "localRandomValue": self.local_random_value,
                "external": {"sourceId": self.external[0], "statusCode": self.external[1],
                             "value": self.external[2]},
                "listValues": [{"uri": u, "type": t, "value": v} for u, t, v in self.list_values],
                "precommitmentValue": self.precommitment_value, "statusCode": self.status_code,
                "signatureValue": self.signature_value, "outputValue": self.output_value}

    @classmethod
    def from_json(cls, d: Any) -> Pulse:
        """A 2.0 pulse from its JSON object (or ``{"pulse": {...}}``); BeaconError naming what is malformed."""
        if isinstance(d, dict) and set(d) == {"pulse"}:
            d = d["pulse"]
        if not isinstance(d, dict):
            raise BeaconError("not a pulse: a JSON object is expected")
        try:
            ext = d["external"]
            lv = d["listValues"]
            if not isinstance(ext, dict) or not isinstance(lv, list) or not all(isinstance(x, dict) for x in lv):
                raise TypeError("external must be an object and listValues a list of objects")
            links = tuple((_str(x.get("uri", "")), _str(x["type"]), _str(x["value"])) for x in lv)
            if tuple(t for _, t, _ in links) != LINKS:
                raise ValueError(f"listValues must hold {', '.join(LINKS)} in that order")
            return cls(_str(d["uri"]), _str(d["version"]), _int(d["cipherSuite"]), _int(d["period"]),
                       _str(d["certificateId"]), _int(d["chainIndex"]), _int(d["pulseIndex"]), _str(d["timeStamp"]),
                       _str(d["localRandomValue"]), (_str(ext["sourceId"]), _int(ext["statusCode"]),
                                                     _str(ext["value"])), links, _str(d["precommitmentValue"]),
                       _int(d["statusCode"]), _str(d["signatureValue"]), _str(d["outputValue"]))
        except KeyError as exc:
            raise BeaconError(f"not a pulse: no field {exc}") from None
        except (TypeError, ValueError) as exc:
            raise BeaconError(f"not a pulse: {exc}") from None


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{v!r} is not a string")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{v!r} is not an integer")
    return v


def _stamp(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _when(p: Pulse) -> datetime.datetime:
    if not _STAMP.match(p.time_stamp):
        raise ValueError(f"time stamp {p.time_stamp[:40]!r} is not YYYY-MM-DDTHH:MM:SS.sssZ")
    return datetime.datetime.strptime(p.time_stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)


def _ms(t: datetime.datetime) -> int:
    return int(t.timestamp() * 1000 + 0.5)


def pulse_uri(prefix: str, chain: int, index: int) -> str:
    return f"{prefix.rstrip('/')}/chain/{chain}/pulse/{index}"


def _links(history: list[Pulse]) -> tuple[tuple[str, str, str], ...]:
    """(uri, type, value) of previous, hour, day, month, year: the previous pulse, and the first pulse of the chain in
    the UTC hour (day, month, year) of the previous pulse; all zeros (and no uri) where there is none."""
    if not history:
        return tuple(("", t, ZERO) for t in LINKS)
    last = history[-1]
    when = _when(last)
    out = [(last.uri, "previous", last.output_value)]
    for kind, fmt in zip(LINKS[1:], ("%Y%m%d%H", "%Y%m%d", "%Y%m", "%Y"), strict=True):
        first = next((p for p in history if _when(p).strftime(fmt) == when.strftime(fmt)), None)
        out.append((first.uri, kind, first.output_value) if first else ("", kind, ZERO))
    return tuple(out)


def _values(links: tuple[tuple[str, str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The signed part of listValues (type and value; the uris are not signed), hex case folded."""
    return tuple((t, v.upper()) for _, t, v in links)


def next_pulse(history: list[Pulse], when: datetime.datetime, period_ms: int, local: bytes, next_local: bytes,
               signer: BeaconSigner, uri_prefix: str, chain_index: int = 1, gap: bool = False,
               precommit_broken: bool = False) -> Pulse:
    """The pulse after ``history`` (this chain's pulses so far, in order) at ``when`` (on the period grid)."""
    if len(local) != 64 or len(next_local) != 64:
        raise ValueError("local random values are 512 bits")
    if _ms(when) % period_ms:
        raise ValueError(f"{_stamp(when)} is not on the {period_ms} ms period grid")
    prev = history[-1] if history else None
    index = prev.pulse_index + 1 if prev else 1
    status = (STATUS_CHAIN_START if prev is None else 0) | (STATUS_GAP if gap and prev else 0) | \
        (STATUS_PRECOMMIT_BROKEN if precommit_broken and prev else 0)
    p = Pulse(pulse_uri(uri_prefix, chain_index, index), VERSION, CIPHER_SUITE, period_ms, signer.certificate_id,
              chain_index, index, _stamp(when), local.hex().upper(), (ZERO, 0, ZERO), _links(history),
              hashlib.sha512(next_local).hexdigest().upper(), status)
    p = replace(p, signature_value=signer.sign(p.signature_input()).hex().upper())
    return replace(p, output_value=p.computed_output())


def resume_secret(history: list[Pulse], kept: bytes | None, pending: bytes | None) -> tuple[bytes | None, bool]:
    """At start: the local random value the chain's last pulse precommitted to, if the state still holds it, and
    whether the precommitment is broken. ``kept`` is the state's secret, ``pending`` the one written just before the
    last pulse was logged (a crash between logging the pulse and renaming it leaves it there). A value is used only
    if SHA-512 of it is the last pulse's precommitment: a value already published (the secret that was not yet
    replaced) or any other is never used again; then the next pulse says the precommitment is broken (status 4)."""
    if not history:
        return None, False
    want = history[-1].precommitment_value.lower()
    for value in (pending, kept):
        if value is not None and len(value) == 64 and hashlib.sha512(value).hexdigest() == want:
            return value, False
    return None, True


def verify_pulses(pulses: list[Pulse], certificate_der: bytes, whole_chain: bool = True) -> None:
    """Every NIST 2.0 rule over consecutive pulses of one chain (``whole_chain``: from its first pulse, so link
    values are recomputed): the certificate's id and its key's signature, the output value, the encodings, the
    period grid, chaining, precommitments, link values, and the status code (bit 1 exactly at the chain's start,
    2 exactly after a gap, 4 exactly when the precommitment is not honoured, no unknown bit). Raises BeaconError,
    also for a pulse whose fields are malformed."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    try:
        key = x509.load_der_x509_certificate(certificate_der).public_key()
    except ValueError:
        raise BeaconError("the beacon certificate is not an X.509 certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise BeaconError("cipher suite 0 signs with RSA: the beacon certificate's key is not an RSA key")
    cert_id = certificate_id(certificate_der)
    for i, p in enumerate(pulses):
        try:
            _verify_one(pulses, i, key, cert_id, whole_chain)
        except (ValueError, TypeError, KeyError, StopIteration) as exc:
            raise BeaconError(f"pulse {getattr(p, 'pulse_index', i)}: a malformed field ({exc})") from None


def _verify_one(pulses: list[Pulse], i: int, key: Any, cert_id: str, whole_chain: bool) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    p = pulses[i]
    at = f"pulse {p.pulse_index}"
    if p.version not in VERSIONS or p.cipher_suite != CIPHER_SUITE:
        raise BeaconError(f"{at}: version {p.version!r}, cipher suite {p.cipher_suite}: not a 2.0 pulse of cipher "
                          "suite 0")
    if p.certificate_id.lower() != cert_id:
        raise BeaconError(f"{at}: certificateId {p.certificate_id[:16]}... is not the beacon certificate's "
                          f"({cert_id[:16]}...)")
    for name, value in (("localRandomValue", p.local_random_value), ("precommitmentValue", p.precommitment_value),
                        ("outputValue", p.output_value), ("external.sourceId", p.external[0]),
                        ("external.value", p.external[2]), *((t, v) for _, t, v in p.list_values)):
        if not _HEX512.match(value):
            raise BeaconError(f"{at}: {name} is not 512 bits in hex")
    if not _HEX.match(p.signature_value):
        raise BeaconError(f"{at}: signatureValue is not hex")
    try:
        key.verify(bytes.fromhex(p.signature_value), p.signature_input(), padding.PKCS1v15(), hashes.SHA512())
    except InvalidSignature:
        raise BeaconError(f"{at}: the signature does not verify with the beacon certificate's key") from None
    if p.computed_output() != p.output_value.upper():
        raise BeaconError(f"{at}: the output value is not SHA-512 of the signature input and the signature")
    if not p.uri.endswith(f"/chain/{p.chain_index}/pulse/{p.pulse_index}"):
        raise BeaconError(f"{at}: its uri does not name chain {p.chain_index}, pulse {p.pulse_index}")
    if p.period <= 0 or _ms(_when(p)) % p.period:
        raise BeaconError(f"{at}: its time stamp {p.time_stamp} is not on the {p.period} ms period grid")
    if p.status_code & ~KNOWN_STATUS:
        raise BeaconError(f"{at}: status code {p.status_code} has bits the 2.0 format does not define")
    first = i == 0 and whole_chain
    if bool(p.status_code & STATUS_CHAIN_START) != (p.pulse_index == 1):
        raise BeaconError(f"{at}: status bit 1 (start of a chain) must be set on pulse 1 and only there")
    if p.pulse_index == 1 and (int(p.previous, 16) != 0 or p.status_code & (STATUS_GAP | STATUS_PRECOMMIT_BROKEN)):
        raise BeaconError(f"{at}: the first pulse of a chain links to no previous pulse and has no gap or "
                          "precommitment to report")
    if first:
        if p.pulse_index != 1:
            raise BeaconError(f"{at}: the chain does not start at pulse 1")
        if _values(p.list_values) != _values(_links([])):
            raise BeaconError(f"{at}: the first pulse's link values must be zeros")
        return
    if i == 0:
        return
    q = pulses[i - 1]
    if p.chain_index != q.chain_index or p.pulse_index != q.pulse_index + 1:
        raise BeaconError(f"{at}: does not follow pulse {q.pulse_index} of chain {q.chain_index}")
    if p.period != q.period:
        raise BeaconError(f"{at}: its period differs from pulse {q.pulse_index}'s within one chain")
    if p.previous.upper() != q.output_value.upper():
        raise BeaconError(f"{at}: its previous value is not pulse {q.pulse_index}'s output value")
    elapsed = _ms(_when(p)) - _ms(_when(q))
    if elapsed <= 0:
        raise BeaconError(f"{at}: its time stamp is not after pulse {q.pulse_index}'s")
    if bool(p.status_code & STATUS_GAP) != (elapsed > p.period):
        raise BeaconError(f"{at}: status bit 2 (a gap) must be set exactly when the time since pulse {q.pulse_index} "
                          f"exceeds the period ({elapsed} ms after it, period {p.period} ms)")
    honoured = hashlib.sha512(bytes.fromhex(p.local_random_value)).hexdigest() == q.precommitment_value.lower()
    if bool(p.status_code & STATUS_PRECOMMIT_BROKEN) == honoured:
        raise BeaconError(f"{at}: " + ("its local random value is not the one pulse "
                                       f"{q.pulse_index} precommitted to" if not honoured else
                                       "status bit 4 says the precommitment is broken, but it is honoured"))
    if whole_chain and _values(p.list_values) != _values(_links(pulses[:i])):
        raise BeaconError(f"{at}: its hour/day/month/year link values are wrong")
