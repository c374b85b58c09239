"""SP 800-90B non-IID assessment time on the reference data sets, beside NIST's C++ ea_non_iid v1.1.7
(times recorded in tests/vectors/90b/README.md on this kind of machine, two cores).
Target (issue 6): at least as fast on the same data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from qrng.estimate.nonid import assess_non_iid

VECTORS = Path(__file__).resolve().parents[1] / "tests" / "vectors"
NIST = {"a_uniform8": (8, 17.6, 7.270886), "c_bias06_1": (1, 0.6, 0.524153), "e_gauss8_s6": (8, 15.8, 2.989603),
        "f_nibble4": (4, 13.6, 2.698978)}


def main() -> None:
    print("| data set | bits | ours (s) | NIST ea_non_iid (s) | speed-up | H_I ours | H_I NIST |")
    print("|---|---|---|---|---|---|---|")
    for name, (bits, nist_s, nist_h) in NIST.items():
        s = np.fromfile(VECTORS / "90b" / f"{name}.bin", dtype=np.uint8)
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            a = assess_non_iid(s, bits)
            best = min(best, time.perf_counter() - t)
        print(f"| {name} | {bits} | {best:.2f} | {nist_s:.1f} | {nist_s / best:.1f}x | {a.h_assessed:.6f} "
              f"| {nist_h:.6f} |")


if __name__ == "__main__":
    main()
