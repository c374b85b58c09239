"""Errors as a host process meets them through the built module (issue 10 items 6 and 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from qrng_pkcs11 import ckdefs as ck

# A host that calls the exported C functions directly (ctypes): C_Initialize, C_OpenSession, C_GenerateRandom.
HOST = textwrap.dedent("""
    import ctypes, json, sys
    lib = ctypes.CDLL(sys.argv[1])
    n = int(sys.argv[2])
    CK_ULONG = ctypes.c_ulong
    out = {"init": lib.C_Initialize(None)}
    h = CK_ULONG()
    out["open"] = lib.C_OpenSession(CK_ULONG(0), CK_ULONG(4), None, None, ctypes.byref(h))
    if len(sys.argv) > 3:
        h = CK_ULONG(int(sys.argv[3]))  # a session handle that was never opened
    buf = (ctypes.c_ubyte * n)(*([0xAA] * n))
    out["rv"] = lib.C_GenerateRandom(h, buf, CK_ULONG(n))
    data = bytes(buf)
    out["zero"] = data.count(0)
    out["untouched"] = data.count(0xAA)
    print(json.dumps(out))
""")


def _host(module: Path, n: int, cfg: Path, extra_env: dict[str, str] | None = None, *extra: str):
    env = {**os.environ, "QRNG_CONFIG": str(cfg), **(extra_env or {})}
    env.pop("QRNG_PKCS11_LOG", None)
    return subprocess.run([sys.executable, "-c", HOST, str(module), str(n), *extra], capture_output=True, text=True,
                          env=env, timeout=300)


def _samples_for(cfg_text: str, nbytes: int) -> int:
    """Raw samples the pipeline draws (start-up included) to serve ``nbytes`` with this configuration."""
    from qrng.config import config_from_text
    from qrng.pipeline import Pipeline
    p = Pipeline(config_from_text(cfg_text))
    try:
        p.startup()
        p.generate(nbytes)
        return int(p.report().to_dict()["accounting"]["raw_samples"])
    finally:
        p.close()


def test_failure_mid_request_leaves_no_partial_output(module, tmp_path):
    """Regression (item 6): a source failing in the middle of an 8 MiB request returned CKR_DEVICE_ERROR with
    about half the caller's buffer holding output. Now the buffer is wiped to zero on any such error."""
    # SHA-256 conditioning of small blocks and a reseed per 64 KiB request: the request keeps drawing samples
    base = ("version: 1\nsource: {type: simulator, seed: 7}\nhealth: {block_samples: 1024}\n"
            "extractor: {type: sha256}\ndrbg: {reseed_interval: 1}\n")
    half = _samples_for(base, 4 << 20)  # samples drawn by the time half of the request is served
    cfg = tmp_path / "fault.yaml"
    cfg.write_text(base.replace("seed: 7}", f"seed: 7, faults: ['stuck_at@{half}']}}"))
    r = _host(module, 8 << 20, cfg)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["init"] == ck.CKR_OK and out["open"] == ck.CKR_OK
    assert out["rv"] == ck.CKR_DEVICE_ERROR
    assert out["zero"] == 8 << 20 and out["untouched"] == 0


def test_refused_request_leaves_the_buffer_untouched(module, tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\n")
    out = json.loads(_host(module, 1 << 16, cfg, None, "4242").stdout)
    assert out["rv"] == ck.CKR_SESSION_HANDLE_INVALID and out["untouched"] == 1 << 16


def test_healthy_request_fills_the_buffer(module, tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\n")
    out = json.loads(_host(module, 1 << 20, cfg).stdout)
    assert out["rv"] == ck.CKR_OK and out["untouched"] < (1 << 20) // 128 and out["zero"] < (1 << 20) // 128


def test_missing_dependency_is_a_general_error_said_once(module, tmp_path):
    """Regression (item 13): a missing Python dependency inside the module answered CKR_DEVICE_ERROR with nothing
    on stderr. A broken numpy is put first on the embedded interpreter's path."""
    broken = tmp_path / "broken"
    (broken / "numpy").mkdir(parents=True)
    (broken / "numpy" / "__init__.py").write_text("raise ImportError('numpy is broken on purpose (test)')\n")
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\n")
    r = subprocess.run(["pkcs11-tool", "--module", str(module), "--generate-random", "16"], capture_output=True,
                       text=True, env={**os.environ, "QRNG_CONFIG": str(cfg), "PYTHONPATH": str(broken)}, timeout=120)
    assert r.returncode != 0
    assert "CKR_DEVICE_ERROR" not in r.stderr + r.stdout
    assert "numpy is broken on purpose" in r.stderr
    assert r.stderr.count("installation problem") <= 1
