"""SP 800-90A CTR_DRBG on the compiled kernel against NIST CAVP vectors (tests/vectors/drbg); system layer."""

from __future__ import annotations

import pytest

from qrng.drbg import CtrDrbg


def ctr_records(vectors):
    from tests.unit.qrng.test_drbg import ctr_records as records
    return records(vectors)


@pytest.mark.parametrize("native", [True, False], ids=["openssl-evp", "cryptography"])
def test_ctr_drbg_cavp_vectors(vectors, native):
    recs = ctr_records(vectors)
    assert len(recs) == 240
    failures = []
    for i, r in enumerate(recs):
        g = CtrDrbg(r["EntropyInput"], r["PersonalizationString"], native=native)
        assert g.backend.startswith("openssl" if native else "cryptography")
        g.reseed(r["EntropyInputReseed"], r["AdditionalInputReseed"])
        g.generate(64, r["AdditionalInput1"])
        if g.generate(64, r["AdditionalInput2"]) != r["ReturnedBits"]:
            failures.append(i)
    assert failures == []


def test_backends_agree_on_long_streams_with_additional_input():
    a, b = CtrDrbg(bytes(range(48)), native=True), CtrDrbg(bytes(range(48)), native=False)
    for n, add in [(0, b""), (1, b"x"), (15, b""), (16, b"y" * 48), (17, b""), (65536, b"z"), (40000, b"")]:
        assert a.generate(n, add) == b.generate(n, add)
