"""The in-process backend serving the real entropy pipeline (system layer: needs the compiled kernels)."""

from __future__ import annotations

from qrng.config import EntropyConfig
from qrng.pipeline import Pipeline
from tests.unit.qrng_pkcs11.test_backend import make


def test_random_and_failure_states():
    b = make(lambda: Pipeline(EntropyConfig()))
    x, y = bytearray(32), bytearray(32)
    b.generate_into(memoryview(x))
    b.seed(b"seed")
    b.generate_into(memoryview(y))
    assert x != y and any(x)
    assert not b.describe(True).error_state
