"""C2SP tlog-tiles benchmarks (issue 14), one run, one table (`make bench`):

* publishing the tiles of a 1,000,000-entry audit log (target: at most 20 s), against verifying the same log from
  its JSON lines (the existing full verification: the baseline of reading it at all);
* an incremental update after one more checkpoint of 1,000 entries (target: O(new entries), so about 1/1000 of the
  full publish, not a re-publish);
* one entry's inclusion from the tiles over loopback HTTP with a plain static server (`python -m http.server`):
  fetches and wall time (targets: at most 20 fetches, under 50 ms), median of 20 entries.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.netwait: loopback helpers, not shipped
from _table import print_table

from tests.netwait import free_port, wait_for_port
from transparency.log import AuditLog
from transparency.note import Verifier, generate_ed25519, load_ed25519_signer
from transparency.tilesio import TileSource, prove_from_tiles, publish
from transparency.verify import verify_log

N = 1_000_000



def main() -> None:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        priv, pub = generate_ed25519("bench.example/tiles")
        signer = load_ed25519_signer(priv)
        log = tmp / "audit.log"
        t0 = time.perf_counter()
        with AuditLog(log, signer.name, signer) as lg, lg.batch():
            for i in range(N):
                lg.append("collect_entropy", "operator", "entropy.committed", data={"i": i})
            lg.checkpoint()
        made = time.perf_counter() - t0
        print(f"(made a {N:,}-entry log of {log.stat().st_size / 1e6:.0f} MB in {made:.1f} s)", file=sys.stderr)
        t0 = time.perf_counter()
        verify_log(log.read_bytes(), [Verifier.parse(pub)])
        rows.append((f"verify the {N:,}-entry log from its JSON lines (baseline)", f"{time.perf_counter() - t0:.1f} s",
                     "-"))
        www = tmp / "www"
        r = publish(log, www / "log")
        rows.append((f"publish tiles of {N:,} entries", f"{r.seconds:.1f} s ({r.tiles_written:,} hash tiles, "
                     f"{r.bundles_written:,} bundles)", "<= 20 s"))
        with AuditLog(log, signer.name, signer) as lg, lg.batch():
            for i in range(1000):
                lg.append("collect_entropy", "operator", "entropy.committed", data={"i": N + i})
            lg.checkpoint()
        r2 = publish(log, www / "log")
        rows.append(("incremental publish: one more checkpoint of 1,000 entries",
                     f"{r2.seconds * 1e3:.0f} ms ({r2.tiles_written} tiles, {r2.bundles_written} bundles)",
                     "O(new entries)"))
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                                   "--directory", str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, 10, alive=lambda: server.poll() is None)
            key = Verifier.parse(pub)
            fetches, walls = [], []
            for i in range(20):
                index = (i * 48_271 + 7) % (N + 1000)
                src = TileSource(f"http://127.0.0.1:{port}/log")
                t0 = time.perf_counter()
                prove_from_tiles(src, index, [key])
                walls.append(time.perf_counter() - t0)
                fetches.append(src.fetches)
            rows.append(("inclusion of one entry from tiles over loopback HTTP: fetches (max of 20)",
                         f"{max(fetches)}", "<= 20"))
            rows.append(("inclusion of one entry from tiles over loopback HTTP: wall time (median of 20)",
                         f"{statistics.median(walls) * 1e3:.1f} ms (max {max(walls) * 1e3:.1f})", "< 50 ms"))
        finally:
            server.terminate()
            server.wait()
    print_table("C2SP tiles (issue 14)", rows)


if __name__ == "__main__":
    main()
