"""``qrng estimate``: SP 800-90B min-entropy assessment of a raw-sample file, like NIST's ea_non_iid / ea_iid.

Exit codes: 0 assessed (for --iid: and the data passed the IID tests); 1 --iid and the data is not IID;
2 usage or I/O error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from qrng.errors import UsageError

from .common import int_at_least

__all__ = ["register", "read_samples"]


def read_samples(path: str, bits: int, packed: bool) -> Any:
    import numpy as np
    raw = np.fromfile(path, dtype=np.uint8)
    if packed:
        if bits != 1:
            raise UsageError("--packed files hold 1-bit samples: use --bits-per-symbol 1")
        return np.unpackbits(raw)
    if raw.size and int(raw.max()) >= 1 << bits:
        bad = int(np.argmax(raw >= 1 << bits))
        raise UsageError(f"{path}: byte {bad} holds {int(raw[bad])}, wider than {bits} bit(s)")
    return raw


def _table(rows: list[tuple[str, str, str]]) -> str:
    w = max(len(r[0]) for r in rows)
    lines = [f"{'estimator':<{w}}  {'literal':>12}  {'bit string':>12}", "-" * (w + 28)]
    lines += [f"{a:<{w}}  {b:>12}  {c:>12}" for a, b, c in rows]
    return "\n".join(lines)


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class _Ticker:
    """Progress on stderr at least every 5 s, also inside long C calls (they release the GIL); on a terminal
    each line carries an ETA from the time model."""

    EVERY = 4.5  # seconds between lines at most (plus one wake-up period)

    def __init__(self, quiet: bool, expected: float) -> None:
        import threading
        self.quiet, self.expected, self.t0 = quiet, expected, time.perf_counter()
        self.phase = "starting"
        self.tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._last = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        if not quiet:
            self._thread.start()

    def _line(self) -> None:
        el = time.perf_counter() - self.t0
        eta = f" (ETA ~{max(1, int(self.expected - el))} s)" if self.tty and self.expected > el else ""
        print(f"[{el:6.1f} s] {self.phase}{eta}", file=sys.stderr, flush=True)
        self._last = el

    def progress(self, msg: str) -> None:
        self.phase = msg
        if not self.quiet:
            self._line()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            if time.perf_counter() - self.t0 - self._last >= self.EVERY:  # a line at least every 5 s
                self._line()

    def stop(self) -> None:
        self._stop.set()


def cmd_estimate(args: argparse.Namespace) -> int:
    import os
    import stat

    from qrng.estimate.nonid import assess_non_iid
    from qrng.estimate.resources import memory_needed, seconds_expected
    st = os.stat(args.file)
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{args.file}: not a regular file; copy the samples into a file first")
    n = st.st_size * (8 if args.packed else 1)
    need, avail = memory_needed(n, args.bits_per_symbol), _available_memory()
    if avail is not None and need > avail and not args.iid:
        raise MemoryError(f"{args.file}: {n:,} samples of {args.bits_per_symbol} bit(s) need about "
                          f"{need / 2**30:.1f} GiB for the assessment, and {avail / 2**30:.1f} GiB is available; "
                          "assess a shorter file, or on a machine with more memory")
    s = read_samples(args.file, args.bits_per_symbol, args.packed)
    if s.size < 1000:
        raise UsageError(f"{args.file}: {s.size} samples; SP 800-90B assessments need at least 1,000,000 "
                         "(at least 1,000 to run at all)")
    if s.size < 1_000_000 and not args.quiet:
        print(f"qrng estimate: warning: {s.size:,} samples; SP 800-90B (3.1.1) asks for at least 1,000,000, so "
              "this estimate is indicative only", file=sys.stderr)
    t0 = time.perf_counter()
    ticker = _Ticker(args.quiet, seconds_expected(int(s.size), args.bits_per_symbol))
    progress = ticker.progress
    try:
        return _assess(args, s, t0, progress, assess_non_iid)
    finally:
        ticker.stop()


def _assess(args: argparse.Namespace, s: Any, t0: float, progress: Any, assess_non_iid: Any) -> int:
    if args.iid:
        from qrng.estimate.iid import assess_iid
        r = assess_iid(s, args.bits_per_symbol, args.permutations, progress=progress)
        if args.json:
            print(json.dumps({"file": args.file, "samples": int(s.size), **r.to_dict()}, indent=2))
        else:
            print(f"chi-square tests:         {'passed' if r.chi_square_passed else 'FAILED'}")
            print(f"LRS test:                 {'passed' if r.lrs_passed else 'FAILED'}")
            pv = {True: "passed", False: "FAILED", None: "undecided"}[r.permutation_passed]
            print(f"permutation tests:        {pv} ({r.permutation['permutations']} permutations)")
            print(f"IID:                      {'yes' if r.iid else 'no: use the non-IID track'}")
            print(f"min-entropy (MCV):        {r.h_assessed:.6f} bits per {args.bits_per_symbol}-bit sample")
        return 0 if r.iid else 1
    a = assess_non_iid(s, args.bits_per_symbol, progress)
    if args.json:
        print(json.dumps({"file": args.file, "seconds": round(time.perf_counter() - t0, 2), **a.to_dict()},
                         indent=2, default=float))
        return 0
    names = [e.name for e in a.literal] or [e.name for e in a.bitstring]
    lit = {e.name: e.h for e in a.literal}
    bits = {e.name: e.h for e in a.bitstring}
    order = [n for n in ["Most Common Value", "Collision", "Markov", "Compression", "t-Tuple", "LRS",
                         "MultiMCW Prediction", "Lag Prediction", "MultiMMC Prediction", "LZ78Y Prediction"]
             if n in lit or n in bits or n in names]
    if args.bits_per_symbol == 1:
        lit = {e.name: e.h for e in a.literal}
        rows = [(n, f"{lit[n]:.6f}", "") for n in order]
    else:
        rows = [(n, f"{lit[n]:.6f}" if n in lit else "", f"{bits[n]:.6f}" if n in bits else "") for n in order]
    print(f"{args.file}: {s.size:,} samples, {args.bits_per_symbol} bit(s) each (SP 800-90B non-IID track)")
    print(_table(rows))
    print(f"\nH_original: {a.h_original:.6f}")
    if a.h_bitstring is not None:
        print(f"H_bitstring: {a.h_bitstring:.6f}")
        print(f"min(H_original, {args.bits_per_symbol} x H_bitstring): {a.h_assessed:.6f}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("estimate", help="SP 800-90B min-entropy assessment of a raw-sample file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="samples, one per byte (the NIST tool's format), or packed bits with --packed")
    p.add_argument("--bits-per-symbol", "-b", type=int, required=True, choices=range(1, 9), metavar="K",
                   help="bits per sample, 1 to 8 (the sample's low K bits are used)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--non-iid", action="store_true", help="the non-IID track, section 6.3 (default)")
    g.add_argument("--iid", action="store_true", help="the IID tests of section 5, then the MCV estimate")
    p.add_argument("--packed", action="store_true", help="the file holds packed bits, most significant first")
    p.add_argument("--permutations", type=int_at_least(1), default=10000,
                   help="permutation rounds at most (5.1: 10,000)")
    p.add_argument("--json", action="store_true", help="print the assessment as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_estimate)
