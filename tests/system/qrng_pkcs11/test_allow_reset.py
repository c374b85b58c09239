"""`health.allow_reset` means the same in both PKCS#11 modules (issue 19, section 5): one table, driven through
the in-process module (build/libqrng-pkcs11.so: the pipeline runs inside the consumer) and the daemon-mode module
(build/libqrng-pkcs11-qrngd.so: the pipeline runs in qrngd). A simulator that gets stuck after its start-up tests
fails the health tests; then

* allow_reset true: the source is opened again, with its start-up tests, a second after the failure, and the
  consumer is served again without restarting anything;
* allow_reset false: nothing is served until what runs the pipeline restarts (the in-process module: C_Finalize
  and C_Initialize; daemon mode: qrngd), and then it is.

Regression: the daemon recovered by itself with allow_reset false, and the in-process module never recovered with
true until the caller re-initialised."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..daemon.test_module_daemon_mode import client_env
from ..daemon.test_qrngd import start, stop

# allow_reset -> (served a while after the failure without any restart, served after the pipeline's process restarts)
TABLE = [(True, (True, True)), (False, (False, True))]

CONSUMER = textwrap.dedent("""
    import json, sys, time
    import PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    def draw():
        s = lib.openSession(lib.getSlotList()[0])
        try:
            return len(s.generateRandom(4096))
        except PyKCS11.PyKCS11Error as e:
            return str(e)
        finally:
            s.closeSession()
    out = {"failed": None, "served_before": 0}
    t = time.monotonic()
    while time.monotonic() - t < 90:
        r = draw()
        if isinstance(r, str):
            out["failed"] = r
            break
        out["served_before"] += r
    time.sleep(2.5)                          # longer than the reset interval (1 s)
    out["later"] = draw()
    print(json.dumps(out), flush=True)
    if sys.stdin.readline().strip() == "reinit":   # the in-process module's pipeline restarts with it
        lib.lib.C_Finalize(); lib.lib.C_Initialize()
    t = time.monotonic()
    out["after_restart"] = draw()
    while isinstance(out["after_restart"], str) and time.monotonic() - t < 15:
        time.sleep(0.1)
        out["after_restart"] = draw()
    print(json.dumps(out), flush=True)
""")


def _config(tmp_path: Path, allow: bool) -> Path:
    cfg = tmp_path / "stuck-later.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator, faults: ['stuck_at@400000']}\n"
                   f"health: {{allow_reset: {'true' if allow else 'false'}}}\nextractor: {{type: sha256}}\n"
                   "drbg: {reseed_interval: 1}\n")
    return cfg


def _consume(module: Path, env: dict[str, str], restart) -> tuple[dict, dict]:
    p = subprocess.Popen([sys.executable, "-c", CONSUMER, str(module)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout is not None and p.stdin is not None
        first = json.loads(p.stdout.readline() or "{}")
        p.stdin.write(restart() + "\n")
        p.stdin.flush()
        second = json.loads(p.stdout.readline() or "{}")
        p.wait(timeout=30)
        return first, second
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def _check(first: dict, second: dict, expected: tuple[bool, bool]) -> None:
    assert first.get("failed") and "CKR_DEVICE_ERROR" in first["failed"], first
    assert first["served_before"] > 0, first
    assert isinstance(first["later"], int) == expected[0], first
    assert isinstance(second["after_restart"], int) == expected[1], second


@pytest.mark.parametrize("allow, expected", TABLE)
def test_in_process_module(module, tmp_path, allow, expected):
    import os
    env = {k: v for k, v in os.environ.items() if k != "QRNG_PKCS11_LOG"}
    env["QRNG_CONFIG"] = str(_config(tmp_path, allow))
    first, second = _consume(module, env, lambda: "reinit")
    _check(first, second, expected)


@pytest.fixture(scope="module")
def qrngd_module() -> Path:
    from qrng_pkcs11.build import build_client
    return build_client()


@pytest.mark.parametrize("allow, expected", TABLE)
def test_daemon_mode_module(qrngd_module, tmp_path, allow, expected):
    sock = tmp_path / "qrngd.sock"
    conf = tmp_path / "client.conf"
    conf.write_text("prediction_resistance = yes\n")  # every request asks the daemon: the failure is seen at once
    cfg = _config(tmp_path, allow)
    daemons = [start(cfg, sock)]

    def restart() -> str:
        stop(daemons[-1])
        daemons.append(start(cfg, sock))
        return "daemon restarted"
    try:
        first, second = _consume(qrngd_module, client_env(sock, conf), restart)
        _check(first, second, expected)
    finally:
        for d in daemons:
            if d.poll() is None:
                stop(d)
