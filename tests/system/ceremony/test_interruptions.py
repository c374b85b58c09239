"""Interruptions through the real command on SoftHSM2 (issue 19, section 4): `qrng ceremony run --json | head -1`
and SIGTERM. Neither exits 0, neither writes a failed step into the signed log, the run resumes with the same
command, `plan` says where it will resume, and the resumed ceremony verifies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from .conftest import Workspace


def _run_cmd(ws: Workspace, script: str, profile: str) -> list[str]:
    return [sys.executable, "-m", "qrng_cli", "ceremony", "run", str(ws.script(script)), "--profile", profile, "--json"]


def _bootstrap(ws: Workspace) -> None:
    """The audit-key ceremony that puts the log key into the token."""
    r = ws.qrng("ceremony", "run", str(ws.script("audit-key.yaml")), "--profile", "rehearsal-bootstrap")
    assert r.returncode == 0, r.stderr


def _events(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if '"kind":"entry"' in x]


def test_closed_output_then_resume(ws: Workspace):
    """Regression: `| head -1` made the run exit 0 and log step.failed "Broken pipe"."""
    _bootstrap(ws)
    cmd = " ".join(f"'{a}'" for a in _run_cmd(ws, "root-ca.yaml", "rehearsal"))
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd} | head -1"], capture_output=True, text=True,
                       cwd=ws.dir, env=ws.env, timeout=300)
    assert r.returncode == 141, r.stderr  # pipefail: the ceremony's own exit code
    assert "can be resumed by running the same command: qrng ceremony run" in r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
    out = ws.dir / "out" / "root-ca-2026"
    assert not any(e["event"] == "step.failed" for e in _events(out / "audit.log"))
    plan = ws.qrng("ceremony", "plan", str(ws.script("root-ca.yaml")), "--profile", "rehearsal")
    assert plan.returncode == 0 and "will resume at step" in plan.stdout, plan.stderr
    again = ws.qrng("ceremony", "run", str(ws.script("root-ca.yaml")), "--profile", "rehearsal", "--json")
    assert again.returncode == 0, again.stderr
    v = ws.qrng("ceremony", "verify", str(out), *ws.auditor_args(out))
    assert v.returncode == 0, v.stdout + v.stderr


def test_sigterm_then_resume(ws: Workspace):
    _bootstrap(ws)
    p = subprocess.Popen(_run_cmd(ws, "root-ca.yaml", "rehearsal"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=ws.dir, env=ws.env)
    assert p.stdout is not None
    for line in p.stdout:  # SIGTERM once a few steps are done
        if "[root-key] done" in line:
            p.send_signal(signal.SIGTERM)
            break
    rest, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "interrupted (SIGTERM); the ceremony can be resumed by running the same command" in err
    out = ws.dir / "out" / "root-ca-2026"
    assert not any(e["event"] == "step.failed" for e in _events(out / "audit.log"))
    again = ws.qrng("ceremony", "run", str(ws.script("root-ca.yaml")), "--profile", "rehearsal", "--json")
    assert again.returncode == 0, again.stderr  # the folder's lock was released by the interrupted run
    assert ws.keys().count("root-ca-2026") == 1  # never a second root key
