"""SP 800-90A DRBGs against NIST CAVP known-answer vectors (tests/vectors/drbg)."""

from __future__ import annotations

import re

import pytest

from qrng.drbg import CtrDrbg, HmacDrbg, ReseedRequired


def ctr_records(vectors):
    text = (vectors / "drbg" / "ctr_drbg_aes256_nodf.txt").read_text()
    recs = []
    for block in text.split("\n\n"):
        d = dict(re.findall(r"^(\w+) =[ ]?(.*)$", block, re.M))
        if "ReturnedBits" in d:
            recs.append({k: bytes.fromhex(v.strip()) for k, v in d.items()})
    return recs


def hmac_records(vectors):
    text = (vectors / "drbg" / "hmac_drbg_sha256_pr.txt").read_text()
    recs = []
    for block in re.split(r"\nCOUNT = ", text)[1:]:
        d, adds, prs = {}, [], []
        for line in block.splitlines():
            if line.startswith(("\t", "[", "*")) or "=" not in line:
                continue
            k, v = (s.strip() for s in line.split("=", 1))
            if k == "AdditionalInput":
                adds.append(v)
            elif k == "EntropyInputPR":
                prs.append(v)
            else:
                d[k] = v
        recs.append((d, [bytes.fromhex(a) for a in adds], [bytes.fromhex(p) for p in prs]))
    return recs


def test_hmac_drbg_cavp_vectors_with_prediction_resistance(vectors):
    recs = hmac_records(vectors)
    assert len(recs) == 240
    failures = []
    for i, (d, adds, prs) in enumerate(recs):
        g = HmacDrbg(bytes.fromhex(d["EntropyInput"]), bytes.fromhex(d["Nonce"]),
                     bytes.fromhex(d["PersonalizationString"]))
        g.generate(len(d["ReturnedBits"]) // 2, adds[0], prs[0], prediction_resistance=True)
        out = g.generate(len(d["ReturnedBits"]) // 2, adds[1], prs[1], prediction_resistance=True)
        if out.hex() != d["ReturnedBits"]:
            failures.append(i)
    assert failures == []


@pytest.mark.parametrize("make", [lambda: CtrDrbg(bytes(48), reseed_interval=2),
                                  lambda: HmacDrbg(bytes(32), reseed_interval=2)], ids=["ctr", "hmac"])
def test_reseed_interval_and_prediction_resistance_demand_entropy(make):
    g = make()
    g.generate(16)
    g.generate(16)
    with pytest.raises(ReseedRequired):
        g.generate(16)
    g.generate(16, entropy_input=b"\x01" * g.seed_entropy_bytes)
    assert g.status().reseeds == 1
    with pytest.raises(ReseedRequired):
        g.generate(16, prediction_resistance=True)


def test_large_requests_are_split_at_2_19_bits():
    g = CtrDrbg(bytes(48))
    out = g.generate((1 << 16) * 3 + 5)
    assert len(out) == (1 << 16) * 3 + 5 and g.status().reseed_counter == 5


def test_ctr_rejects_long_inputs():
    with pytest.raises(ValueError, match="384 bits"):
        CtrDrbg(bytes(48), personalization=bytes(49))
    with pytest.raises(ValueError, match="exactly 384"):
        CtrDrbg(bytes(32))


