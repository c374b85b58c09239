"""SP 800-90B non-IID assessment: `qrng estimate` against NIST's ea_non_iid, side by side in one run.

With NIST_EA_NON_IID=/path/to/ea_non_iid (NIST's SP800-90B_EntropyAssessment, built beside the project; never part
of it) both commands run on each reference data set (tests/vectors/90b), whole commands with their start-up, best
of 3, with peak memory. Without it, NIST's recorded times (tests/vectors/90b/README.md) are shown instead.
Then the memory and progress targets of issue 10: 10^7 8-bit samples, peak RSS per sample and the longest
silence between progress lines.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"
QRNG = [sys.executable, "-m", "qrng_cli", "estimate"]
NIST = os.environ.get("NIST_EA_NON_IID")
RECORDED = {"a_uniform8": (8, 17.6, 7.270886), "c_bias06_1": (1, 0.6, 0.524153), "e_gauss8_s6": (8, 15.8, 2.989603),
            "f_nibble4": (4, 13.6, 2.698978)}


def timed(cmd: list[str], reps: int = 3) -> tuple[float, float, str]:
    """Best wall time, peak RSS in MB of the child, and its stdout."""
    best, peak, out = float("inf"), 0.0, ""
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - t)
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
        out = r.stdout
    return best, peak / 1024, out


def side_by_side() -> None:
    head = "NIST ea_non_iid (s, same run)" if NIST else "NIST ea_non_iid (s, recorded)"
    print(f"| data set | bits | qrng estimate (s) | {head} | ours / NIST | H_I ours |")
    print("|---|---|---|---|---|---|")
    for name, (bits, recorded, _) in RECORDED.items():
        path = str(VECTORS / "90b" / f"{name}.bin")
        ours, _, text = timed([*QRNG, path, "-b", str(bits), "-q"])
        h = text.strip().splitlines()[-1].split()[-1]
        theirs = timed([NIST, "-i", "-a", "-q", path, str(bits)])[0] if NIST else recorded
        print(f"| {name} | {bits} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} | {h} |")


def memory_and_progress() -> None:
    n = 10_000_000
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "u8.bin"
        np.random.default_rng(3).integers(0, 256, n, dtype=np.uint8).tofile(f)
        t = time.perf_counter()
        proc = subprocess.Popen([*QRNG, str(f), "-b", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stamps = []
        assert proc.stderr is not None
        for _line in proc.stderr:
            stamps.append(time.perf_counter() - t)
        proc.wait()
        elapsed = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        gaps = np.diff([0.0, *stamps, elapsed])
        print("\n| 10^7 8-bit samples | measured | target |\n|---|---|---|")
        print(f"| peak RSS | {peak / 2**20:,.0f} MiB = {peak / n:.0f} bytes/sample | <= 40 bytes/sample |")
        print(f"| longest silence between progress lines | {gaps.max():.1f} s | <= 5 s |")
        print(f"| wall time | {elapsed:.0f} s | report |")


if __name__ == "__main__":
    side_by_side()
    if os.environ.get("QRNG_BENCH_QUICK") is None:
        memory_and_progress()
