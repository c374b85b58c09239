"""The call log (QRNG_PKCS11_LOG) shows every C_GenerateRandom (issue 19, section 5): also the calls the module's
C half serves from its buffer without entering Python, and those refused before Python is entered.
Regression: only the calls that reached Python (and the buffer's refills) were logged. Since issue 21 the C token
core writes the log, one line per call, in both modules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

CONSUMER = textwrap.dedent("""
    import sys
    import PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    s = lib.openSession(lib.getSlotList()[0])
    for _ in range(25):
        s.generateRandom(32)          # small: served from the C half's buffer
    s.generateRandom(1 << 16)         # large: answered by the Python half
    s.closeSession()
    try:
        s.generateRandom(16)          # a closed session: refused
    except PyKCS11.PyKCS11Error:
        pass
""")


def test_every_generate_random_is_logged(module, tmp_path):
    log = tmp_path / "calls.log"
    cfg = tmp_path / "qrng.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\n")
    env = {**os.environ, "QRNG_CONFIG": str(cfg), "QRNG_PKCS11_LOG": str(log)}
    r = subprocess.run([sys.executable, "-c", CONSUMER, str(module)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in log.read_text().splitlines() if " C_GenerateRandom -> " in ln]
    served = [ln for ln in lines if "CKR_OK 32 bytes, served from the module's buffer" in ln]
    assert len(served) == 25, log.read_text()
    # the large one, from the pipeline in Python
    assert sum(1 for ln in lines if ln.endswith("C_GenerateRandom -> CKR_OK 65536 bytes, from the pipeline")) == 1
    assert any("CKR_SESSION_HANDLE_INVALID" in ln for ln in lines), lines
