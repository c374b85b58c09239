"""The token serving the real entropy pipeline (system layer: needs the compiled kernels)."""

from __future__ import annotations

from qrng.config import EntropyConfig
from qrng.pipeline import Pipeline
from qrng_pkcs11 import ckdefs as ck
from tests.unit.qrng_pkcs11.test_token import make  # noqa: E402


def test_random_and_failure_states():
    t, _ = make(lambda: Pipeline(EntropyConfig()))
    h = t.open_session(0, ck.CKF_SERIAL_SESSION)
    a, b = bytearray(32), bytearray(32)
    t.generate_random_into(h, memoryview(a))
    t.seed_random(h, b"seed")
    t.generate_random_into(h, memoryview(b))
    assert a != b and any(a)
    assert not t.token_info(0).flags & ck.CKF_ERROR_STATE


