"""Audit-log benchmarks (`make bench`): durable append rate, and verifying a 1,000,000-entry log with
1,000 signed checkpoints. Targets (issue 5): >= 5,000 durable entries/s; verify in <= 10 s."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import print_table

from transparency.log import AuditLog
from transparency.note import ed25519_signer
from transparency.verify import verify_log

ORIGIN = "bench.invalid/log"


def main() -> None:
    n_entries = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    signer = ed25519_signer(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    rows = []
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.log"
        with AuditLog(p, ORIGIN, signer, ceremony="bench") as log:
            t = time.perf_counter()
            for i in range(2000):
                log.append("step", "operator", "event", data={"i": i})  # fsync per entry
            dt = time.perf_counter() - t
        rows.append(("append, fsync per entry", f"{2000 / dt:,.0f} entries/s", ">= 5,000/s (batching allowed)"))
        p.unlink()
        with AuditLog(p, ORIGIN, signer, ceremony="bench") as log:
            t = time.perf_counter()
            for b in range(20):
                with log.batch():
                    for i in range(500):
                        log.append("step", "operator", "event", data={"i": b * 500 + i})
            dt = time.perf_counter() - t
        rows.append(("append, fsync per batch of 500", f"{10000 / dt:,.0f} entries/s", ">= 5,000/s"))
        p.unlink()
        per_cp = n_entries // 1000
        with AuditLog(p, ORIGIN, signer, ceremony="bench") as log:
            t = time.perf_counter()
            for c in range(1000):
                with log.batch():
                    for i in range(per_cp):
                        log.append(f"step-{c}", "operator", "health.block", files={"raw.bin": "ab" * 32},
                                   data={"i": c * per_cp + i, "samples": 65536, "rct": 0, "apt": 0})
                    log.checkpoint()
            build = time.perf_counter() - t
        rows.append((f"build {n_entries:,} entries + 1,000 checkpoints", f"{build:,.1f} s "
                     f"({n_entries / build:,.0f} entries/s)", "-"))
        data = p.read_bytes()
        t = time.perf_counter()
        r = verify_log(data, [signer.verifier])
        dt = time.perf_counter() - t
        assert r.entries == n_entries and r.checkpoints == 1000
        rows.append((f"verify {n_entries:,} entries, 1,000 checkpoints ({len(data) / 1e6:,.0f} MB)",
                     f"{dt:,.2f} s", "<= 10 s"))
    print_table("audit log", rows)


if __name__ == "__main__":
    main()
