"""The compiled kernels: both build configurations compile with -Wall -Wextra -Werror and give the same bits; the
gf2x we build and link is the LGPL configuration."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from qrng import _native_build, native

ROOT = Path(__file__).resolve().parents[3]


def _load(path: Path):
    """Load another build of qrng._native without replacing the one the package uses."""
    default = native.load()
    spec = importlib.util.spec_from_file_location("qrng._native", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules["qrng._native"] = default
    return mod


def _toeplitz(mod, seed: bytes, data: bytes, n: int, m: int) -> bytes:
    out = mod.ffi.new("unsigned char[]", (m + 7) // 8)
    assert mod.lib.qrng_toeplitz(seed, n + m - 1, data, n, out, m) == 0
    return bytes(mod.ffi.buffer(out))


def test_fallback_configuration_builds_with_werror_and_agrees(tmp_path):
    built = _native_build.build(force=True, name="system", dest_dir=tmp_path)
    default = native.load()
    fallback = _load(built)
    assert fallback is not default
    assert fallback.lib.qrng_toeplitz_uses_fft() == 0
    for n, m in ((64, 64), (1000, 333), (1 << 14, 9000)):
        seed, data = os.urandom((n + m) // 8 + 1), os.urandom(n // 8 + 1)
        assert _toeplitz(fallback, seed, data, n, m) == _toeplitz(default, seed, data, n, m)
        plan = default.ffi.gc(default.lib.qrng_toeplitz_plan(seed, n + m - 1, n), default.lib.qrng_toeplitz_plan_free)
        out = default.ffi.new("unsigned char[]", (m + 7) // 8)
        assert default.lib.qrng_toeplitz_apply(plan, data, out) == 0
        assert bytes(default.ffi.buffer(out)) == _toeplitz(fallback, seed, data, n, m)


def test_cdef_is_the_headers():
    text = _native_build.cdef_from_headers()
    for h in _native_build.HEADERS:
        for line in (_native_build.CSRC / h).read_text().splitlines():
            if line.startswith(("int ", "long ", "void ", "qrng_tplan ")):
                assert line in text


def test_linked_gf2x_is_the_lgpl_configuration():
    lib = ROOT / "build" / "gf2x" / "lib" / "libgf2x.so"
    if not lib.exists():
        pytest.skip("no PCLMULQDQ gf2x build on this machine (the system libgf2x is used)")
    status = ctypes.c_char_p.in_dll(ctypes.CDLL(str(lib)), "gf2x_toom_gpl_status").value
    assert status == b"LGPL-licensed GF2X"
    assert native.load().lib.qrng_toeplitz_uses_fft() == 1
