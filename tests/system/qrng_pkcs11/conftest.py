"""Fixtures for the PKCS#11 module: the built .so, configurations, and a call log proving provenance."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "build" / "libqrng-pkcs11.so"


@pytest.fixture(scope="session")
def module() -> Path:
    from qrng_pkcs11.build import build
    return build()


@pytest.fixture(scope="module")
def qrngd(tmp_path_factory):
    """A qrngd on the simulator (SHA-256 extraction), for the daemon-mode module; its socket's path."""
    from ..daemon.test_qrngd import start, stop
    d = tmp_path_factory.mktemp("qrngd")
    cfg = d / "sim.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\nextractor: {type: sha256}\n")
    p = start(cfg, d / "q.sock")
    yield d / "q.sock"
    stop(p)


@pytest.fixture()
def healthy(tmp_path, monkeypatch):
    """A healthy simulator configuration and a call log; returns the log path."""
    cfg = tmp_path / "qrng.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\n")
    log = tmp_path / "calls.log"
    monkeypatch.setenv("QRNG_CONFIG", str(cfg))
    monkeypatch.setenv("QRNG_PKCS11_LOG", str(log))
    return log


@pytest.fixture()
def faulty(tmp_path, monkeypatch):
    """A simulator stuck at one value from its first sample."""
    cfg = tmp_path / "fault.yaml"
    cfg.write_text("version: 1\nsource:\n  type: simulator\n  faults: ['stuck_at@0']\n")
    monkeypatch.setenv("QRNG_CONFIG", str(cfg))
    monkeypatch.delenv("QRNG_PKCS11_LOG", raising=False)
    return cfg


def served_by_module(log: Path, pid: int | None = None) -> bool:
    """True if the call log shows DRBG output served by the module (refill or direct generate)."""
    if not log.exists():
        return False
    for line in log.read_text().splitlines():
        if ("refill -> CKR_OK" in line or "C_GenerateRandom -> CKR_OK" in line) and \
                (pid is None or f"pid={pid} " in line):
            return True
    return False


def env() -> dict[str, str]:
    return dict(os.environ)
