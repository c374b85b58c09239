"""The PKCS#11 module with the USB EMULATOR as its source (issue 12): a consumer draws while the device is
unplugged and plugged back. The module answers CKR_DEVICE_REMOVED, the slot shows no token, and it serves again
by itself once the device is back and has passed its start-up tests. PyKCS11 is the consumer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CONSUMER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import PyKCS11
    from qrng.sources.usbemu import write_control
    folder = Path(sys.argv[2])
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    slot = lib.getSlotList()[0]
    out = {"slot": lib.getSlotInfo(slot).slotDescription.strip(), "label": lib.getTokenInfo(slot).label.strip(),
           "model": lib.getTokenInfo(slot).model.strip()}
    s = lib.openSession(slot)
    out["before"] = len(s.generateRandom(65536))
    write_control(folder, plugged="no")
    t = time.perf_counter()
    while True:
        try:
            s.generateRandom(4096)
        except PyKCS11.PyKCS11Error as e:
            out["error"], out["removed_after_s"] = str(e), time.perf_counter() - t
            break
        if time.perf_counter() - t > 10:
            break
    out["present_while_unplugged"] = bool(lib.getSlotInfo(slot).flags & PyKCS11.CKF_TOKEN_PRESENT)
    try:
        lib.getTokenInfo(slot)
    except PyKCS11.PyKCS11Error as e:
        out["token_info_while_unplugged"] = str(e)
    write_control(folder, plugged="yes")
    t = time.perf_counter()
    while time.perf_counter() - t < 10:
        try:
            out["after"] = len(s.generateRandom(4096)); out["serving_after_s"] = time.perf_counter() - t; break
        except PyKCS11.PyKCS11Error:
            time.sleep(0.01)
    out["present_after"] = bool(lib.getSlotInfo(slot).flags & PyKCS11.CKF_TOKEN_PRESENT)
    print(json.dumps(out))
""")


@pytest.fixture()
def emulator(tmp_path):
    from qrng.sources.usbemu_init import init_emulator
    folder = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    cfg = tmp_path / "usb.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: usb, emulator: {folder}}}\n")
    return folder, cfg


def test_unplug_and_replug_under_the_module(module, emulator):
    import json
    folder, cfg = emulator
    env = {**os.environ, "QRNG_CONFIG": str(cfg)}
    env.pop("QRNG_PKCS11_LOG", None)
    r = subprocess.run([sys.executable, "-c", CONSUMER, str(module), str(folder)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "USB EMULATOR" in out["slot"] and out["label"] == "qrng EMU-0001", out  # labelled as the emulator
    assert out["model"] == "USB-EMULATOR" and out["before"] == 65536
    assert out["error"].startswith("CKR_DEVICE_REMOVED"), out
    assert out["removed_after_s"] < 2.0                 # under one read timeout (2 s)
    assert out["present_while_unplugged"] is False
    assert out["token_info_while_unplugged"].startswith("CKR_TOKEN_NOT_PRESENT")
    assert out["after"] == 4096 and out["present_after"] is True
    assert out["serving_after_s"] < 1.0                 # start-up tests plus under 1 s
