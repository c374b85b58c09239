"""Beacon pulses (NIST Randomness Beacon 2.0 shape): a chain made here verifies; every field a relying party
depends on is checked, and each tampering or omission is named. Pure: no QRNG, no files."""

from __future__ import annotations

import base64
import datetime
import hashlib
from dataclasses import replace

import pytest

from qrng.audit.note import generate_ed25519, load_ed25519_signer
from qrng.beacon import ZERO, BeaconError, Pulse, next_pulse, verify_pulses

T0 = datetime.datetime(2026, 11, 27, 9, 59, 57, tzinfo=datetime.UTC)


def chain(n: int, gap_at: int | None = None, seed: bytes = b"x"):
    priv, _ = generate_ed25519("beacon.example/test")
    signer = load_ed25519_signer(priv)
    values = [hashlib.sha512(seed + bytes([i])).digest() for i in range(n + 1)]
    out: list[Pulse] = []
    t = T0
    for i in range(n):
        t += datetime.timedelta(seconds=2 if i == gap_at else 1)
        out.append(next_pulse(out, t, 1000, values[i], values[i + 1], signer, gap=i == gap_at))
    return out, signer.verifier


def resign(p: Pulse, priv_signer) -> Pulse:
    p = replace(p, signature_value=base64.b64encode(priv_signer.sign(p.signed_bytes())).decode())
    return replace(p, output_value=p.computed_output())


def test_a_chain_verifies_and_links_across_the_hour():
    pulses, key = chain(6, gap_at=4)
    verify_pulses(pulses, key)
    assert pulses[0].status_code == 1 and pulses[0].previous == ZERO
    assert pulses[4].status_code == 2  # the gap is said
    first_of_hour = next(p for p in pulses if p.time_stamp.startswith("2026-11-27T10"))
    later = pulses[pulses.index(first_of_hour) + 2]
    assert later.hour == first_of_hour.output_value and later.day == pulses[0].output_value
    assert all(len(bytes.fromhex(p.local_random_value)) == 64 for p in pulses)


@pytest.mark.parametrize("change,message", [
    (lambda ps: ps.__setitem__(2, replace(ps[2], local_random_value="11" * 64)), "signature does not verify"),
    (lambda ps: ps.__setitem__(2, replace(ps[2], output_value="00" * 64)), "output value is not SHA-512"),
    (lambda ps: ps.pop(2), "does not follow pulse 2"),
    (lambda ps: ps.__setitem__(0, replace(ps[0], status_code=0)), "signature does not verify"),
])
def test_tampering_is_named(change, message):
    pulses, key = chain(5)
    change(pulses)
    with pytest.raises(BeaconError, match=message):
        verify_pulses(pulses, key)


def test_checks_that_a_valid_signature_cannot_hide():
    """The beacon key itself cannot sign its way out: a broken precommitment, an unflagged gap, wrong link values."""
    priv, _ = generate_ed25519("beacon.example/test")
    signer = load_ed25519_signer(priv)
    key = signer.verifier
    v = [hashlib.sha512(bytes([i])).digest() for i in range(8)]
    good = [next_pulse([], T0, 1000, v[0], v[1], signer)]
    good.append(next_pulse(good, T0 + datetime.timedelta(seconds=1), 1000, v[1], v[2], signer))
    verify_pulses(good, key)
    swapped = next_pulse(good, T0 + datetime.timedelta(seconds=2), 1000, v[5], v[3], signer)  # not v[2]
    with pytest.raises(BeaconError, match="not the one pulse 2 precommitted to"):
        verify_pulses([*good, swapped], key)
    said = next_pulse(good, T0 + datetime.timedelta(seconds=2), 1000, v[5], v[3], signer, precommit_broken=True)
    verify_pulses([*good, said], key)  # a broken precommitment that says so is accepted (and shown: status 4)
    late = next_pulse(good, T0 + datetime.timedelta(seconds=9), 1000, v[2], v[3], signer)
    with pytest.raises(BeaconError, match="after a gap but its status code does not say so"):
        verify_pulses([*good, late], key)
    p = next_pulse(good, T0 + datetime.timedelta(seconds=2), 1000, v[2], v[3], signer)
    wrong = resign(replace(p, hour="ab" * 64), signer)
    with pytest.raises(BeaconError, match="link values are wrong"):
        verify_pulses([*good, wrong], key)


def test_another_key_is_refused():
    pulses, _ = chain(2)
    _, other = chain(1, seed=b"y")
    with pytest.raises(BeaconError, match="not by the beacon key"):
        verify_pulses(pulses, other)


@pytest.mark.parametrize("field,value", [("local_random_value", "zz" * 64), ("time_stamp", "yesterday")])
def test_a_malformed_field_is_a_beacon_error_even_when_signed(field, value):
    """Signed by the beacon key and still malformed (not hex, not a time stamp): a BeaconError (exit 1), not a
    traceback or a usage error."""
    priv, _ = generate_ed25519("beacon.example/test")
    signer = load_ed25519_signer(priv)
    v = [hashlib.sha512(bytes([i])).digest() for i in range(3)]
    first = next_pulse([], T0, 1000, v[0], v[1], signer)
    second = next_pulse([first], T0 + datetime.timedelta(seconds=1), 1000, v[1], v[2], signer)
    bad = resign(replace(second, **{field: value}), signer)
    with pytest.raises(BeaconError, match="pulse 2: a malformed field"):
        verify_pulses([first, bad], signer.verifier)
