"""The entropy-floor SLO is measured by default (issue 22): a source whose configuration says nothing about
``assessment`` is assessed by qrngd (SP 800-90B, non-IID track) in a background thread; the estimate reaches STATUS
and the metric; a claim the estimate does not support fails the source closed, named in the daemon's log, while
serving went on up to the verdict; ``every_samples: 0`` leaves the estimate missing (NaN: the alert's input)."""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qrngd.client import DaemonClient, DaemonUnavailable
from tests.netwait import free_port

from .test_metrics import scrape
from .test_qrngd import stop


def _start(tmp_path: Path, source_yaml: str) -> tuple[subprocess.Popen[str], Path, int]:
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(source_yaml)
    sock, port = tmp_path / "qrngd.sock", free_port()
    p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket", str(sock),
                          "--metrics", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    DaemonClient(str(sock)).wait(30, alive=lambda: p.poll() is None)
    return p, sock, port


def _draw_until(sock: Path, done, limit_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    c = DaemonClient(str(sock), "assessment-test")
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if done():
            return
        with contextlib.suppress(DaemonUnavailable):  # once failed, the source refuses: the condition decides
            c.seed(4096)
    raise AssertionError("condition not reached in time")


def _estimate(port: int) -> float:
    return scrape(port)["qrng_entropy_estimate_bits_per_sample"][0][1]


def test_a_source_without_assessment_settings_is_assessed_by_default(tmp_path):
    # window_samples only, to keep the test short: every_samples is not set, so qrngd's default applies
    p, sock, port = _start(tmp_path, "version: 1\nsource: {seed: 11}\nassessment: {window_samples: 100000}\n")
    try:
        assert math.isnan(_estimate(port))
        _draw_until(sock, lambda: not math.isnan(_estimate(port)))
        status = DaemonClient(str(sock)).status()
        source = status["sources"][0]
        assert source["state"] == "healthy"
        assert source["estimate"] == _estimate(port) >= source["claimed_min_entropy"]
    finally:
        stop(p)


def test_an_unsupported_claim_fails_the_source_closed_from_the_background_assessment(tmp_path):
    p, sock, port = _start(tmp_path, "version: 1\nsource: {seed: 12, claimed_min_entropy: 7.5}\n"
                                     "assessment: {window_samples: 100000, max_shortfall: 0.5}\n"
                                     "health: {alpha_log2: -40}\n")
    try:
        _draw_until(sock, lambda: scrape(port)["qrng_source_up"][0][1] == 0.0)
        estimate = _estimate(port)
        assert estimate < 7.0
        # reopened once a second, the source must assess a fresh full window before it serves: it stays down
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            with pytest.raises(DaemonUnavailable, match="unhealthy"):
                DaemonClient(str(sock), "after").seed(32)
            time.sleep(0.25)
        assert "SP 800-90B assessment" in DaemonClient(str(sock)).status()["sources"][0]["error"]
    finally:
        p.send_signal(15)
        _, err = p.communicate(timeout=20)
    assert "source.failed" in err and "SP 800-90B assessment of the last 100000 samples" in err


def test_switched_off_the_estimate_stays_missing(tmp_path):
    p, sock, port = _start(tmp_path, "version: 1\nsource: {seed: 13}\n"
                                     "assessment: {every_samples: 0, window_samples: 100000}\n")
    try:
        c = DaemonClient(str(sock), "off")
        for _ in range(60):  # well past one window of samples
            c.seed(4096)
        assert scrape(port)["qrng_raw_samples_total"][0][1] > 150_000
        assert math.isnan(_estimate(port))  # the input of QrngEntropyEstimateMissing
    finally:
        stop(p)
