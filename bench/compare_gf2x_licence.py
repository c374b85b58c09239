"""Toeplitz rate of each gf2x build side by side: prints one row per extension given on the command line.

Usage: python bench/compare_gf2x_licence.py LABEL=PATH/_native...so [...]
(used to compare the GPL and LGPL configurations of gf2x; `make bench` runs bench_core.py for the default).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

from qrng.extract import lhl_output_bits


def rate(path: str) -> float:
    spec = importlib.util.spec_from_file_location("qrng._native", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    n = 1 << 20
    m = lhl_output_bits(n, 0.9)
    seed, data = os.urandom((n + m) // 8 + 1), os.urandom(n // 8)
    ffi, lib = mod.ffi, mod.lib
    plan = ffi.gc(lib.qrng_toeplitz_plan(seed, n + m - 1, n), lib.qrng_toeplitz_plan_free)
    out = ffi.new("unsigned char[]", (m + 7) // 8)
    best = float("inf")
    for _ in range(20):
        t = time.perf_counter()
        lib.qrng_toeplitz_apply(plan, data, out)
        best = min(best, time.perf_counter() - t)
    return n / best / 1e6


if __name__ == "__main__":
    print("| gf2x build | Toeplitz n=2^20, H=0.9 |\n|---|---|")
    for arg in sys.argv[1:]:
        label, path = arg.split("=", 1)
        print(f"| {label} | {rate(path):,.0f} Mbit/s |")
