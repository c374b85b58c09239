"""The wheel (issue 23, section 2): `python -m build --wheel --no-isolation` makes a wheel with the compiled kernels
(and the LGPL gf2x build beside them) and both PKCS#11 modules inside; installed with pip into a fresh virtual
environment in a temporary folder, with no checkout on any path it uses, it gives a working `qrng`: bytes,
estimate, the PKCS#11 module through `qrng module-path`, and a ceremony planned, run on SoftHSM2 and verified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .ceremony.conftest import make_workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(d / "dist")],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = (d / "dist").glob("qrng_ceremony-*-cp311-cp311-linux_x86_64.whl")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(d / "venv")], check=True, timeout=300)
    r = subprocess.run([str(d / "venv" / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return d / "venv"


def clean_env(**extra: str) -> dict[str, str]:
    """No checkout on any path: no PYTHONPATH, the project's venv off PATH, no configuration of the checkout."""
    path = ":".join(p for p in os.environ["PATH"].split(":") if not p.startswith(str(ROOT)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QRNG", "PYTHON", "VIRTUAL_ENV", "SOFTHSM"))}
    return env | {"PATH": path} | extra


def test_the_installed_wheel_works_without_a_checkout(venv: Path, tmp_path: Path) -> None:
    qrng = str(venv / "bin" / "qrng")
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\n")
    env = clean_env(QRNG_CONFIG=str(cfg))

    def run(*cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, **kw)

    where = run(str(venv / "bin" / "python"), "-c", "import qrng, qrng_pkcs11, qrng._native as n; "
                                                    "print(qrng.__file__, qrng_pkcs11.__file__, n.__file__)")
    assert where.returncode == 0 and all(p.startswith(str(venv)) for p in where.stdout.split()), where
    b = run(qrng, "bytes", "32", "--hex")
    assert b.returncode == 0 and len(b.stdout.strip()) == 64, b.stderr
    samples = tmp_path / "samples.bin"
    samples.write_bytes(os.urandom(20000))
    e = run(qrng, "estimate", str(samples), "--bits-per-symbol", "8", "--json")
    assert e.returncode == 0 and 0 < json.loads(e.stdout)["h_assessed"] <= 8, e.stderr
    for daemon_mode in (False, True):
        m = run(qrng, "module-path", *(["--qrngd"] if daemon_mode else []))
        assert m.returncode == 0 and m.stdout.strip().startswith(str(venv / "lib")), m
    # regression: a command that reads the checkout's files says so instead of a raw "No such file" (exit 2)
    ref = run(qrng, "ceremony", "reference")
    assert ref.returncode == 2 and "read from a checkout's examples" in ref.stderr and "Traceback" not in ref.stderr
    module = run(qrng, "module-path").stdout.strip()
    log = tmp_path / "calls.log"
    p = subprocess.run(["pkcs11-tool", "--module", module, "--generate-random", "16"], capture_output=True,
                       cwd=tmp_path, env=env | {"QRNG_PKCS11_LOG": str(log)}, timeout=120)
    assert p.returncode == 0 and len(p.stdout) == 16, p.stderr
    assert "C_GenerateRandom -> CKR_OK 16 bytes" in log.read_text()


def test_a_ceremony_with_the_installed_wheel(venv: Path, tmp_path: Path) -> None:
    """The workspace (scripts, policy, SoftHSM2 token, witness keys) is made by the test; the ceremony is planned,
    run and verified by the installed `qrng` alone."""
    ws = make_workspace(tmp_path)
    env = clean_env(SOFTHSM2_CONF=ws.env["SOFTHSM2_CONF"])
    qrng = str(venv / "bin" / "qrng")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([qrng, *args], capture_output=True, text=True, cwd=ws.dir, env=env, timeout=600)

    for script, profile in (("audit-key.yaml", "rehearsal-bootstrap"), ("root-ca.yaml", "rehearsal")):
        plan = run("ceremony", "plan", str(ws.script(script)), "--profile", profile)
        assert plan.returncode == 0, plan.stderr
        done = run("ceremony", "run", str(ws.script(script)), "--profile", profile)
        assert done.returncode == 0, done.stderr[-3000:]
    out = ws.dir / "out" / "root-ca-2026"
    v = run("ceremony", "verify", str(out), *ws.auditor_args(out))
    assert v.returncode == 0 and "2 provenance statements" in v.stdout, v.stderr
    a = run("audit", "verify", str(out / "audit.log"), "--key", str(out / "log.pub"), *ws.witness_args())
    assert a.returncode == 0, a.stderr
