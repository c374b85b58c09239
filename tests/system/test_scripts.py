"""Set-up scripts meet bad input with a clear message and no traceback (and never print a PIN)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.mark.parametrize("content, phrase", [(None, "No such file or directory"),
                                             ("QRNG_HSM_USER_PIN=8642\n", "no QRNG_HSM_SO_PIN= line")])
def test_init_token_names_a_bad_pin_file(tmp_path, content, phrase):
    pins = tmp_path / "pins.env"
    if content is not None:
        pins.write_text(content)
    conf = tmp_path / "softhsm2.conf"
    (tmp_path / "tokens").mkdir()
    conf.write_text(f"directories.tokendir = {tmp_path}/tokens\nobjectstore.backend = file\n")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "init_token.py"), SOFTHSM, "t", str(pins)],
                       capture_output=True, text=True, env={"SOFTHSM2_CONF": str(conf), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and f"init_token: {pins}: {phrase}" in r.stderr
    assert "Traceback" not in r.stderr and "8642" not in r.stderr
