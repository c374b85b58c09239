"""qrngd benchmarks, one run, one table (`make bench`). Issue 13 targets measured so far:

* 16 concurrent clients in separate processes: aggregate seed delivery, p50/p99 latency of a 48-byte SEED on
  loopback, and the daemon's own time per request (its histogram) against the < 100 µs p50 target;
* C_GenerateRandom of 1 MiB through the PKCS#11 module in daemon mode against the in-process module (target:
  within 10 %), PyKCS11 as the consumer, both on the USB EMULATOR.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import print_table  # noqa: E402

from qrng.daemon.client import DaemonClient
from qrng.sources.usbemu import init_emulator

ROOT = Path(__file__).resolve().parents[1]
CLIENT = textwrap.dedent("""
    import json, sys, time
    from qrng.daemon.client import DaemonClient
    c = DaemonClient(sys.argv[1], sys.argv[2]); c.seed(48)
    lat = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < float(sys.argv[3]):
        t = time.perf_counter(); c.seed(48); lat.append(time.perf_counter() - t)
    print(json.dumps(lat))
""")
MODULE = textwrap.dedent("""
    import sys, time, PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1]); s = lib.openSession(lib.getSlotList()[0])
    s.generateRandom(1 << 20)
    best = min((lambda t: (s.generateRandom(1 << 20), time.perf_counter() - t)[1])(time.perf_counter())
               for _ in range(20))
    print((1 << 20) / best / 1e6)
""")


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = init_emulator(Path(tmp) / "EMU-0001", Path(tmp) / "att")["folder"]
        src = Path(tmp) / "usb.yaml"
        src.write_text(f"version: 1\nsource: {{type: usb, emulator: {folder}}}\n")
        sock = Path(tmp) / "qrngd.sock"
        client_cfg = Path(tmp) / "client.yaml"
        client_cfg.write_text(f"version: 1\ndaemon: {{socket: {sock}}}\n")
        d = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(src), "--socket", str(sock)],
                             stderr=subprocess.DEVNULL)
        try:
            DaemonClient(str(sock)).wait(30, alive=lambda: d.poll() is None)
            seconds = 3.0
            procs = [subprocess.Popen([sys.executable, "-c", CLIENT, str(sock), f"bench-{i}", str(seconds)],
                                      stdout=subprocess.PIPE, text=True) for i in range(16)]
            lat = [x for p in procs for x in json.loads(p.communicate()[0])]
            lat.sort()
            rows.append(("16 client processes: SEED 48 B requests served", f"{len(lat) / seconds:,.0f} /s", "-"))
            rows.append(("16 client processes: aggregate seed delivery", f"{len(lat) * 48 / seconds / 1e3:,.0f} kB/s",
                         "-"))
            rows.append(("16 client processes: latency p50 / p99 (client side)",
                         f"{statistics.median(lat) * 1e6:,.0f} / {lat[int(len(lat) * 0.99)] * 1e6:,.0f} µs", "-"))
            c = DaemonClient(str(sock), "bench-single")
            solo = []
            for _ in range(2000):
                t = time.perf_counter()
                c.seed(48)
                solo.append(time.perf_counter() - t)
            rows.append(("one client, idle daemon: SEED 48 B round trip p50",
                         f"{statistics.median(solo) * 1e6:,.0f} µs", "daemon overhead < 100 µs p50"))
            env = {**os.environ, "QRNG_CONFIG": str(client_cfg)}
            env.pop("QRNG_PKCS11_LOG", None)
            module = str(ROOT / "build" / "libqrng-pkcs11.so")
            r = subprocess.run([sys.executable, "-c", MODULE, module], capture_output=True, text=True, env=env)
            daemon_mode = float(r.stdout.strip()) if r.returncode == 0 else float("nan")
            env["QRNG_CONFIG"] = str(src)
            r = subprocess.run([sys.executable, "-c", MODULE, module], capture_output=True, text=True, env=env)
            in_process = float(r.stdout.strip()) if r.returncode == 0 else float("nan")
            rows.append(("C_GenerateRandom 1 MiB, module in daemon mode", f"{daemon_mode:,.0f} MB/s",
                         "within 10 % of in-process"))
            rows.append(("C_GenerateRandom 1 MiB, module in-process (same source)", f"{in_process:,.0f} MB/s",
                         "baseline"))
        finally:
            d.terminate()
            d.wait()
    print_table("qrngd (issue 13, first part)", rows)


if __name__ == "__main__":
    main()
