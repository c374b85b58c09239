"""Beacon pulses in the NIST Randomness Beacon 2.0 format (NISTIR 8213): NIST's own published pulse gives its
output value through our serialisation; a chain made here verifies with an independent 2.0 serialiser written in
this file from the format's text; every 2.0 rule is checked, and each breach is named. Pure: no QRNG, no files."""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from transparency.beacon import (
    ZERO,
    BeaconError,
    BeaconSigner,
    Pulse,
    next_pulse,
    self_signed_beacon_key,
    verify_pulses,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "beacon"
T0 = datetime.datetime(2026, 11, 27, 9, 59, 57, tzinfo=datetime.UTC)
PREFIX = "https://beacon.test.invalid/beacon/2.0"


@pytest.fixture(scope="module")
def beacon_key():
    key_pem, _, cert_der = self_signed_beacon_key("unit-test beacon", 3072)
    key = serialization.load_pem_private_key(key_pem, None)
    return BeaconSigner(cert_der, lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA512())), cert_der


def chain(signer: BeaconSigner, n: int, gap_at: int | None = None, seed: bytes = b"x") -> list[Pulse]:
    values = [hashlib.sha512(seed + bytes([i])).digest() for i in range(n + 1)]
    out: list[Pulse] = []
    t = T0.replace(second=58)
    for i in range(n):
        t += datetime.timedelta(seconds=2 if i == gap_at else 1)
        out.append(next_pulse(out, t, 1000, values[i], values[i + 1], signer, PREFIX, gap=i == gap_at))
    return out


def resign(p: Pulse, signer: BeaconSigner) -> Pulse:
    p = replace(p, signature_value=signer.sign(p.signature_input()).hex().upper())
    return replace(p, output_value=p.computed_output())


def independent_signature_input(d: dict) -> bytes:
    """The 2.0 signature input, written here from the format's text (not from transparency/beacon.py)."""
    def s(v: str) -> bytes:
        return len(v.encode()).to_bytes(4, "big") + v.encode()

    def h(v: str) -> bytes:
        return len(bytes.fromhex(v)).to_bytes(4, "big") + bytes.fromhex(v)
    links = {x["type"]: x["value"] for x in d["listValues"]}
    return (s(d["uri"]) + s(d["version"]) + d["cipherSuite"].to_bytes(4, "big") + d["period"].to_bytes(4, "big")
            + h(d["certificateId"]) + d["chainIndex"].to_bytes(8, "big") + d["pulseIndex"].to_bytes(8, "big")
            + s(d["timeStamp"]) + h(d["localRandomValue"]) + h(d["external"]["sourceId"])
            + d["external"]["statusCode"].to_bytes(4, "big") + h(d["external"]["value"])
            + b"".join(h(links[k]) for k in ("previous", "hour", "day", "month", "year"))
            + h(d["precommitmentValue"]) + d["statusCode"].to_bytes(4, "big"))


def test_nists_own_pulse_gives_its_output_value():
    """NIST's published pulse 54610 of chain 1: our serialisation gives NIST's outputValue exactly."""
    doc = json.loads((VECTORS / "nist-2.0-chain1-pulse54610.json").read_text())
    p = Pulse.from_json(doc)
    assert p.computed_output() == doc["pulse"]["outputValue"]
    assert p.signature_input() == independent_signature_input(doc["pulse"])
    assert p.to_json() == doc["pulse"]  # field for field, in NIST's field order
    assert list(p.to_json()) == list(doc["pulse"])


def test_a_chain_verifies_here_and_with_an_independent_verifier(beacon_key):
    signer, cert = beacon_key
    pulses = chain(signer, 6, gap_at=4)
    verify_pulses(pulses, cert)
    assert pulses[0].status_code == 1 and pulses[0].previous == ZERO and pulses[4].status_code == 2
    pub = x509.load_der_x509_certificate(cert).public_key()
    for p in pulses:
        d = json.loads(json.dumps({"pulse": p.to_json()}))["pulse"]  # as a NIST client receives it
        msg = independent_signature_input(d)
        pub.verify(bytes.fromhex(d["signatureValue"]), msg, padding.PKCS1v15(), hashes.SHA512())
        assert hashlib.sha512(msg + bytes.fromhex(d["signatureValue"])).hexdigest().upper() == d["outputValue"]
        assert d["certificateId"] == hashlib.sha512(cert).hexdigest() and d["version"] == "Version 2.0"
        assert d["uri"] == f"{PREFIX}/chain/1/pulse/{d['pulseIndex']}"
        assert d["timeStamp"].endswith(".000Z") and d["cipherSuite"] == 0 and d["period"] == 1000
    first_of_hour = next(p for p in pulses if p.time_stamp.startswith("2026-11-27T10"))
    later = pulses[pulses.index(first_of_hour) + 2]
    assert later.link("hour") == first_of_hour.output_value and later.link("day") == pulses[0].output_value


@pytest.mark.parametrize("change,message", [
    (lambda ps: ps.__setitem__(2, replace(ps[2], local_random_value="11" * 64)), "signature does not verify"),
    (lambda ps: ps.__setitem__(2, replace(ps[2], output_value="00" * 64)), "output value is not SHA-512"),
    (lambda ps: ps.pop(2), "does not follow pulse 2"),
    (lambda ps: ps.__setitem__(0, replace(ps[0], status_code=0)), "signature does not verify"),
    (lambda ps: ps.__setitem__(1, replace(ps[1], certificate_id="ab" * 64)), "not the beacon certificate"),
])
def test_tampering_is_named(beacon_key, change, message):
    signer, cert = beacon_key
    pulses = chain(signer, 5)
    change(pulses)
    with pytest.raises(BeaconError, match=message):
        verify_pulses(pulses, cert)


def _two(signer):
    v = [hashlib.sha512(bytes([i])).digest() for i in range(8)]
    t = T0.replace(second=58)
    good = [next_pulse([], t, 1000, v[0], v[1], signer, PREFIX)]
    good.append(next_pulse(good, t + datetime.timedelta(seconds=1), 1000, v[1], v[2], signer, PREFIX))
    return good, v, t


@pytest.mark.parametrize("status, message", [
    (8, "bits the 2.0 format does not define"),
    (1, "status bit 1 \\(start of a chain\\) must be set on pulse 1 and only there"),
    (2, "status bit 2 \\(a gap\\) must be set exactly when"),
    (4, "status bit 4 says the precommitment is broken, but it is honoured"),
])
def test_status_bits_mean_exactly_what_they_say(beacon_key, status, message):
    """Signed by the beacon key and still wrong: the key cannot sign its way out of a 2.0 rule."""
    signer, cert = beacon_key
    good, v, t = _two(signer)
    p = next_pulse(good, t + datetime.timedelta(seconds=2), 1000, v[2], v[3], signer, PREFIX)
    with pytest.raises(BeaconError, match=message):
        verify_pulses([*good, resign(replace(p, status_code=status), signer)], cert)


def test_checks_that_a_valid_signature_cannot_hide(beacon_key):
    signer, cert = beacon_key
    good, v, t = _two(signer)
    verify_pulses(good, cert)
    swapped = next_pulse(good, t + datetime.timedelta(seconds=2), 1000, v[5], v[3], signer, PREFIX)  # not v[2]
    with pytest.raises(BeaconError, match="not the one pulse 2 precommitted to"):
        verify_pulses([*good, swapped], cert)
    said = next_pulse(good, t + datetime.timedelta(seconds=2), 1000, v[5], v[3], signer, PREFIX, precommit_broken=True)
    verify_pulses([*good, said], cert)  # a broken precommitment that says so is accepted (and shown: status 4)
    late = next_pulse(good, t + datetime.timedelta(seconds=9), 1000, v[2], v[3], signer, PREFIX)
    with pytest.raises(BeaconError, match="status bit 2"):
        verify_pulses([*good, late], cert)
    p = next_pulse(good, t + datetime.timedelta(seconds=2), 1000, v[2], v[3], signer, PREFIX)
    links = tuple((u, k, "AB" * 64 if k == "hour" else val) for u, k, val in p.list_values)
    with pytest.raises(BeaconError, match="link values are wrong"):
        verify_pulses([*good, resign(replace(p, list_values=links), signer)], cert)
    off_grid = resign(replace(p, time_stamp="2026-11-27T10:00:00.500Z"), signer)
    with pytest.raises(BeaconError, match="not on the 1000 ms period grid"):
        verify_pulses([*good, off_grid], cert)


def test_another_certificate_is_refused(beacon_key):
    signer, cert = beacon_key
    pulses = chain(signer, 2)
    _, _, other = self_signed_beacon_key("another beacon", 3072)
    with pytest.raises(BeaconError, match="not the beacon certificate's"):
        verify_pulses(pulses, other)


@pytest.mark.parametrize("field,value", [("local_random_value", "zz" * 64), ("time_stamp", "yesterday"),
                                         ("time_stamp", "2026-11-27T10:00:01Z")])
def test_a_malformed_field_is_a_beacon_error_even_when_signed(beacon_key, field, value):
    """Signed by the beacon key and still malformed (not hex, not a 2.0 time stamp): a BeaconError (exit 1), not
    a traceback or a usage error."""
    signer, cert = beacon_key
    good, _, _ = _two(signer)
    bad = resign(replace(good[1], **{field: value}), signer) if field != "local_random_value" else \
        replace(good[1], **{field: value})
    with pytest.raises(BeaconError, match="pulse 2"):
        verify_pulses([good[0], bad], cert)


@pytest.mark.parametrize("doc", [[], {"pulse": 3}, {"uri": "x"}, {"pulse": {"uri": 1}}])
def test_not_a_pulse(doc):
    with pytest.raises(BeaconError, match="not a pulse"):
        Pulse.from_json(doc)


def test_the_precommitted_secret_is_bound_to_the_chain(beacon_key):
    """Issue 20: at start the state's secret was used whatever it was: after a crash between logging a pulse and
    renaming its successor's secret into place, the value just published was published again as the next local
    random value. Only a value whose SHA-512 is the last pulse's precommitment is used; else the next pulse says
    the precommitment is broken."""
    from transparency.beacon import resume_secret
    signer, _ = beacon_key
    values = [hashlib.sha512(b"s" + bytes([i])).digest() for i in range(3)]
    t = T0.replace(second=58)
    one = next_pulse([], t, 1000, values[0], values[1], signer, PREFIX)
    assert resume_secret([], values[0], None) == (None, False)
    assert resume_secret([one], values[1], None) == (values[1], False)       # the normal restart
    assert resume_secret([one], values[0], values[1]) == (values[1], False)  # crash before the rename: the pending one
    assert resume_secret([one], values[0], None) == (None, True)             # never the published value again
    assert resume_secret([one], None, None) == (None, True)


SKEW_AT = datetime.datetime(2026, 12, 6, 12, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(("offsets", "expected"), [
    ({}, None),                                          # no witness: nothing to compare with
    ({"w1": 1, "w2": 3}, None),                          # cosigned a moment after the pulse: in step
    ({"w1": -5, "w2": 12}, None),                        # inside the tolerance and the witness timeout
    ({"w1": -300, "w2": -299}, "ahead of"),              # every witness says the pulse is dated 5 minutes ahead
    ({"w1": 300, "w2": 301}, "behind"),                  # every witness cosigned 5 minutes after the time stamp
    ({"w1": -300, "w2": 2}, None),                       # one witness's clock is off: not the beacon's skew
])
def test_clock_skew_is_what_every_witness_clock_agrees_on(offsets, expected):
    from transparency.beacon_service import clock_skew
    got = clock_skew(SKEW_AT, {n: int(SKEW_AT.timestamp()) + o for n, o in offsets.items()}, timeout_s=10.0)
    if expected is None:
        assert got is None
    else:
        assert got is not None and f"is {expected} every witness's" in got
        assert all(f"{n} {o:+d} s" in got for n, o in offsets.items()), got
