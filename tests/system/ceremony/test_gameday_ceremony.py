"""Game day for a ceremony in progress (issue 22): real faults injected mid-run through the real command on SoftHSM2,
and what must hold after each: the operator is told what happened (file named, exit code, no traceback), nothing
already written is lost, the same command resumes, and the finished ceremony has exactly the keys its script names
and verifies.

The faults are real: a tmpfs filled to its last page and a read-only bind mount (EROFS) in a private mount namespace
(``fault_ns.py`` under ``unshare -m``), SoftHSM2's token storage full or gone, and SIGKILL at random moments. The
table is ceremony.gameday.CEREMONY_FAULTS, which docs/gameday.md renders; this test checks each row."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ceremony.gameday import CEREMONY_FAULTS, CeremonyFault
from tests.mountns import needs_mount_namespace

from .conftest import Workspace

HERE = Path(__file__).resolve().parent
SCRIPT_KEYS = ["audit-log-key", "issuing-ca-2026", "root-ca-2026"]  # audit-key.yaml's and root-ca.yaml's keys


FAULTS = CEREMONY_FAULTS


def _bootstrap(ws: Workspace) -> None:
    r = ws.qrng("ceremony", "run", str(ws.script("audit-key.yaml")), "--profile", "rehearsal-bootstrap")
    assert r.returncode == 0, r.stderr


def _run_cmd(ws: Workspace) -> list[str]:
    return [sys.executable, "-m", "qrng_cli", "ceremony", "run", str(ws.script("root-ca.yaml")), "--profile",
            "rehearsal", "--papers", ""]


def _entries(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "audit.log").read_text().splitlines() if '"kind":"entry"' in x]


def _finish_and_check(ws: Workspace, out: Path) -> None:
    """The same command resumes to the end: exactly the script's keys, every output, and the log verifies."""
    again = ws.qrng("ceremony", "run", str(ws.script("root-ca.yaml")), "--profile", "rehearsal", "--papers", "")
    assert again.returncode == 0, again.stderr
    assert ws.keys() == SCRIPT_KEYS
    for name in ("root-ca.pem", "issuing-ca.pem", "root-ca.crl", "root-ca-2026.pub.pem", "issuing-ca-2026.pub.pem"):
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob("*") if ".qrng-tmp-" in p.name], "a temporary was left behind"
    v = ws.qrng("ceremony", "verify", str(out), *ws.auditor_args(out))
    assert v.returncode == 0, v.stdout + v.stderr


@needs_mount_namespace
@pytest.mark.parametrize("case", FAULTS, ids=[f.name for f in FAULTS])
def test_a_fault_mid_ceremony_stops_it_cleanly_and_the_same_command_resumes(ws: Workspace, case: CeremonyFault):
    _bootstrap(ws)
    out = ws.dir / "out" / "root-ca-2026"
    out.mkdir(parents=True)
    folder = out if case.folder == "out" else ws.dir / "tokens"
    r = subprocess.run(["unshare", "-m", sys.executable, str(HERE / "fault_ns.py"), "--folder", str(folder),
                        "--fault", case.fault, "--at", "[root-cert] done", "--", *_run_cmd(ws)],
                       capture_output=True, text=True, cwd=ws.dir, env=ws.env, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["injected"], result["stderr"]
    assert result["rc"] == 1, result["stderr"]
    assert re.search(case.says, result["stderr"]), result["stderr"]
    assert "Traceback" not in result["stderr"]
    # regression: the staging write left its temporary (tempfile's tmpXXXX) behind on a full disk
    left = [p for p in out.rglob("*") if p.name.startswith("tmp") or ".qrng-tmp-" in p.name]
    assert not left, left
    # nothing already written is lost: the log holds every step up to the root certificate, whole
    log_before = _entries(out)
    done = {e["step"] for e in log_before if e["event"] == "step.completed"}
    assert {"attest", "entropy", "root-key", "root-cert"} <= done
    assert any(e["event"] == "step.failed" for e in log_before) == case.step_failed
    assert ws.keys().count("root-ca-2026") == 1
    _finish_and_check(ws, out)


def test_kill_9_at_random_moments_then_the_same_command_ends_with_exactly_the_scripts_keys(ws: Workspace):
    """SIGKILL (no handler runs) at random moments of repeated runs: each run is killed a random fraction of a
    second after a step it has to do starts (the first at or after one of five steps drawn at random, in script
    order, so each rerun still has work ahead), whatever the machine's speed. Each rerun resumes; the last one
    finishes. Seeded: the moments are printed, so a failure can be replayed."""
    _bootstrap(ws)
    out = ws.dir / "out" / "root-ca-2026"
    steps = [line.split("id:", 1)[1].split(",")[0].strip() for line in ws.script("root-ca.yaml").read_text()
             .splitlines() if "id:" in line]
    rng = random.Random(22)
    targets = sorted(rng.sample(range(len(steps) - 2), 5))  # never the last two: a run must remain to kill
    moments = []
    for i in targets:
        extra = rng.uniform(0.0, 0.08)
        p = subprocess.Popen(_run_cmd(ws), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             cwd=ws.dir, env=ws.env)
        assert p.stderr is not None
        last = ""
        for line in p.stderr:
            last = line.rstrip()
            step = last[1:last.find("]")] if last.startswith("[") else ""
            # the first step at or after the target that starts its work (an earlier kill may have gone past it)
            if step in steps and steps.index(step) >= i and last.endswith(" ..."):
                time.sleep(extra)
                break
        p.kill()
        rest = p.stderr.read()
        p.wait(timeout=60)
        moments.append((steps[i], round(extra, 2), p.returncode, last))
        assert "Traceback" not in rest, (moments, rest)
    print("kill moments:", moments)
    assert sum(1 for m in moments if m[2] == -9) >= 3, moments  # most runs were really killed mid-way
    _finish_and_check(ws, out)
    completed = [e["step"] for e in _entries(out) if e["event"] == "step.completed"]
    assert sorted(completed) == sorted(steps), (moments, completed)  # each step done once in the signed log
