"""The C module when qrngd hangs (issue 20, medium): the daemon is stopped with SIGSTOP, so the kernel still
accepts connections on its socket but nothing answers. Every call is bounded: C_GenerateRandom fails closed
within the module's deadline (2 s, connecting included), later calls and C_GetTokenInfo do not wait on the hung
daemon again for 5 s, and after SIGCONT the module recovers by itself. Regression: connect() had no deadline and
every C_GetTokenInfo waited the full timeout (twice, with the reconnection) under the module's global lock."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

from .test_module_daemon_mode import client_env, qrngd_module  # noqa: F401 - the module fixture
from .test_qrngd import start, stop

CONSUMER = textwrap.dedent("""
    import json, sys, time
    import PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    slot = lib.getSlotList()[0]; s = lib.openSession(slot)
    out = {"first": len(s.generateRandom(64))}
    print(json.dumps(out), flush=True)
    sys.stdin.readline()                          # the test stops the daemon (SIGSTOP)
    time.sleep(0.3)                               # longer than reseed_ms: the next request asks the daemon
    t = time.monotonic()
    try:
        s.generateRandom(64); out["while_hung"] = "served"
    except PyKCS11.PyKCS11Error as e:
        out["while_hung"] = str(e)
    out["generate_s"] = time.monotonic() - t
    info = []
    for _ in range(20):
        t = time.monotonic(); f = lib.getTokenInfo(slot).flags; info.append(time.monotonic() - t)
    out["token_info_max_s"] = max(info)
    out["error_state"] = bool(f & 0x01000000)
    print(json.dumps(out), flush=True)
    sys.stdin.readline()                          # the test resumes it (SIGCONT)
    t = time.monotonic()
    while time.monotonic() - t < 15:
        try:
            out["after"] = len(s.generateRandom(64)); break
        except PyKCS11.PyKCS11Error:
            time.sleep(0.1)
    out["recovered_s"] = time.monotonic() - t
    print(json.dumps(out), flush=True)
""")


def test_a_hung_daemon_never_blocks_a_call_beyond_the_deadline(qrngd_module, tmp_path):  # noqa: F811
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\nextractor: {type: sha256}\n")
    sock = tmp_path / "qrngd.sock"
    d = start(cfg, sock)
    p = subprocess.Popen([sys.executable, "-c", CONSUMER, str(qrngd_module)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(sock))
    try:
        assert p.stdout is not None and p.stdin is not None
        assert json.loads(p.stdout.readline())["first"] == 64
        d.send_signal(signal.SIGSTOP)
        p.stdin.write("\n")
        p.stdin.flush()
        hung = json.loads(p.stdout.readline())
        assert "CKR_DEVICE_ERROR" in hung["while_hung"], hung       # fail closed, no bytes
        assert hung["generate_s"] < 2.5, hung                        # within the module's deadline
        assert hung["token_info_max_s"] < 0.1 and hung["error_state"], hung  # never waits on the hung daemon again
        d.send_signal(signal.SIGCONT)
        p.stdin.write("\n")
        p.stdin.flush()
        after = json.loads(p.stdout.readline())
        assert after.get("after") == 64 and after["recovered_s"] < 8, after
    finally:
        d.send_signal(signal.SIGCONT)
        p.kill()
        p.wait()
        stop(d)
