"""The OpenSSL configurations operators use (issue 23, section 3): contrib/openssl/qrng-rand-qrngd.cnf and
qrng-rand-inprocess.cnf exactly as shipped (PKCS11_PROVIDER_MODULE points pkcs11-provider at this checkout's
module, as their comments say), and what `qrng openssl-config` prints. Each makes `openssl rand` draw from our
module: with qrngd stopped the daemon-mode variant fails closed; the in-process one shows in the call log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import served_by_module

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "contrib" / "openssl"


def _rand(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "rand", "-hex", "16"], capture_output=True, text=True, env=env, timeout=60)


def test_the_shipped_qrngd_configuration(tmp_path):
    from qrng_pkcs11.build import build_client

    from ..daemon.test_qrngd import start, stop
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\nextractor: {type: sha256}\n")
    sock = tmp_path / "q.sock"
    env = {**os.environ, "OPENSSL_CONF": str(SHIPPED / "qrng-rand-qrngd.cnf"),
           "PKCS11_PROVIDER_MODULE": str(build_client()), "QRNGD_SOCKET": str(sock)}
    daemon = start(cfg, sock)
    try:
        r = _rand(env)
        assert r.returncode == 0 and len(r.stdout.strip()) == 32, r.stderr
    finally:
        stop(daemon)
    r = _rand(env)  # qrngd is gone: the module fails closed, so openssl has no random source
    assert r.returncode != 0, r.stdout


def test_the_shipped_in_process_configuration_and_the_printed_one(module, healthy, tmp_path):
    env = {**os.environ, "OPENSSL_CONF": str(SHIPPED / "qrng-rand-inprocess.cnf"),
           "PKCS11_PROVIDER_MODULE": str(module)}
    r = _rand(env)
    assert r.returncode == 0 and len(r.stdout.strip()) == 32 and served_by_module(healthy), r.stderr
    printed = subprocess.run([sys.executable, "-m", "qrng_cli", "openssl-config"], capture_output=True, text=True,
                             check=True).stdout
    conf = tmp_path / "printed.cnf"
    conf.write_text(printed)
    env = {k: v for k, v in os.environ.items() if k != "PKCS11_PROVIDER_MODULE"} | {"OPENSSL_CONF": str(conf)}
    r = _rand(env)
    assert r.returncode == 0 and len(r.stdout.strip()) == 32, r.stderr
