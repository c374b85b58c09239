"""The PKCS#11 module in daemon mode (``daemon: {socket}``): consumers in separate processes (PyKCS11 and
pkcs11-tool) draw from one emulated-USB source through qrngd; killing the daemon makes them fail closed
(CKR_DEVICE_ERROR, the token in error state) and restarting it lets them recover without restarting them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from qrng.sources.usbemu import init_emulator

from .test_qrngd import start, stop

CONSUMER = textwrap.dedent("""
    import json, sys, time
    import PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    slot = lib.getSlotList()[0]; s = lib.openSession(slot)
    out = {"first": len(s.generateRandom(1 << 20)), "model": lib.getTokenInfo(slot).model.strip()}
    health = s.findObjects([(PyKCS11.CKA_LABEL, "qrng health report")])
    out["health"] = json.loads(bytes(s.getAttributeValue(health[0], [PyKCS11.CKA_VALUE])[0]))
    print(json.dumps(out), flush=True)
    sys.stdin.readline()                     # the test kills the daemon
    try:
        s.generateRandom(4096); out["while_down"] = "served"
    except PyKCS11.PyKCS11Error as e:
        out["while_down"] = str(e)
    out["error_state"] = bool(lib.getTokenInfo(slot).flags & 0x01000000)  # CKF_ERROR_STATE
    print(json.dumps(out), flush=True)
    sys.stdin.readline()                     # the test restarts it
    t = time.perf_counter()
    while time.perf_counter() - t < 10:
        try:
            out["after"] = len(s.generateRandom(4096)); break
        except PyKCS11.PyKCS11Error:
            time.sleep(0.05)
    print(json.dumps(out), flush=True)
""")


@pytest.fixture(scope="module")
def module():
    from pkcs11_provider.build import build
    return build()


@pytest.fixture()
def daemon_setup(tmp_path):
    folder = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    src = tmp_path / "usb.yaml"
    src.write_text(f"version: 1\nsource: {{type: usb, emulator: {folder}}}\n")
    sock = tmp_path / "qrngd.sock"
    client = tmp_path / "client.yaml"
    client.write_text(f"version: 1\ndaemon: {{socket: {sock}}}\n")
    return src, sock, client


def test_consumers_fail_closed_and_recover_with_the_daemon(module, daemon_setup):
    src, sock, client = daemon_setup
    d = start(src, sock)
    env = {**os.environ, "QRNG_CONFIG": str(client)}
    env.pop("QRNG_PKCS11_LOG", None)
    p = subprocess.Popen([sys.executable, "-c", CONSUMER, str(module)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = json.loads(p.stdout.readline())
        assert first["first"] == 1 << 20 and first["model"].startswith("QRNGD"), first
        # regression: the health object of a module in daemon mode (its service had no report())
        assert first["health"]["mode"] == "daemon" and first["health"]["daemon"]["state"] == "healthy", first
        tool = subprocess.run(["pkcs11-tool", "--module", str(module), "--generate-random", "64"],
                              capture_output=True, env=env, timeout=60)
        assert tool.returncode == 0 and len(tool.stdout) == 64, tool.stderr
        from qrng.daemon.client import DaemonClient
        st = DaemonClient(str(sock), "test").status()
        assert len(st["clients"]) >= 2  # two consumer processes drew from the one source
        d.kill()
        d.wait()
        p.stdin.write("\n")
        p.stdin.flush()
        down = json.loads(p.stdout.readline())
        assert down["while_down"].startswith("CKR_DEVICE_ERROR") and down["error_state"] is True, down
        tool = subprocess.run(["pkcs11-tool", "--module", str(module), "--generate-random", "64"],
                              capture_output=True, env=env, timeout=60)
        assert tool.returncode != 0 and len(tool.stdout) == 0  # fail closed: no bytes
        d = start(src, sock)
        p.stdin.write("\n")
        p.stdin.flush()
        after = json.loads(p.stdout.readline())
        assert after.get("after") == 4096, after  # recovered without restarting the consumer
    finally:
        p.kill()
        stop(d) if d.poll() is None else None
