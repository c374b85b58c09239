"""A bounded hostile-client soak (issue 20, "done means"): while another user pipelines SEEDs without reading,
holds every connection it may, drips incomplete frames and sends malformed ones, a well-behaved client is served
throughout within its latency target. QRNG_SOAK_SECONDS sets the length (default 6 s in `make test`; longer on
demand). Traffic only to the daemon's Unix socket; every loop is bounded in count and time."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

import pytest

from qrngd import protocol as P
from qrngd.client import DaemonClient

from .test_qrngd import start, stop

SECONDS = float(os.environ.get("QRNG_SOAK_SECONDS", "6"))
NOBODY = 65534


def _attack(path: str, seconds: float) -> int:
    """The hostile user's loop (in a forked child that became nobody: no file is read after the fork); returns how
    many connections it made."""
    end = time.monotonic() + seconds
    held: list[socket.socket] = []
    made = 0

    def conn() -> socket.socket:
        nonlocal made
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(path)
        made += 1
        return s
    while time.monotonic() < end:
        try:
            hog = conn()
            hog.sendall(P.seed_request(4096) * 500)  # pipelined, never read
            held.append(hog)
            drip = conn()
            drip.sendall(P.seed_request(16)[:3])  # an incomplete frame
            held.append(drip)
            bad = conn()
            bad.sendall(b"XX" + bytes(6))  # a malformed header
            held.append(bad)
            while len(held) < 200:  # every slot it can get
                held.append(conn())
        except OSError:
            pass
        time.sleep(0.05)
        if len(held) > 150:
            for s in held[:50]:
                s.close()
            del held[:50]
    return made


def _fork_attacker(path: str, seconds: float) -> int:
    pid = os.fork()
    if pid == 0:  # the child: another user from here on
        code = 1
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = 0 if _attack(path, seconds) > 32 else 3  # it did reach the socket, and beyond its share
        finally:
            os._exit(code)
    return pid


@pytest.mark.skipif(os.geteuid() != 0, reason="the attacker becomes another user (nobody): needs root")
def test_a_polite_client_is_served_throughout_a_hostile_soak():
    d_path = Path(tempfile.mkdtemp(prefix="qrng-soak-"))
    d_path.chmod(0o755)  # the hostile user reaches the socket, as on a shared host
    cfg = d_path / "sim.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\nextractor: {type: sha256}\n")
    sock = d_path / "qrngd.sock"
    d = start(cfg, sock, "--group", "nogroup", "--max-conns-per-user", "32")
    pids = [_fork_attacker(str(sock), SECONDS) for _ in range(2)]
    try:
        time.sleep(0.5)
        polite = DaemonClient(str(sock), "polite")
        lat: list[float] = []
        end = time.monotonic() + SECONDS - 0.5
        while time.monotonic() < end:
            t = time.perf_counter()
            assert len(polite.seed(32)) == 32
            lat.append(time.perf_counter() - t)
            time.sleep(0.005)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        pids = []
        lat.sort()
        p95 = lat[int(len(lat) * 0.95)]
        assert len(lat) > 100 and p95 < 0.05 and lat[-1] < 1.0, (len(lat), statistics.median(lat), p95, lat[-1])
        assert d.poll() is None and polite.status()["state"] == "healthy"  # still serving, never crashed
        polite.close()
    finally:
        for pid in pids:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        stop(d)
        shutil.rmtree(d_path, ignore_errors=True)
