"""The witnessed QRNG beacon running: `qrng beacon run` on the USB EMULATOR, one pulse a second, three witness
processes cosigning each pulse's checkpoint, the log published as tiles and served by a plain static server; a
health failure in the middle emits no pulse (the next says there was a gap); the pulses then verify offline from
the tiles with the witness quorum, and a tampered pulse does not. The issue asks for minutes; 20 one-second pulses
exercise the same code within `make test`'s budget."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qrng.sources.usbemu import write_control
from qrng.sources.usbemu_init import init_emulator
from transparency.beacon import Pulse
from transparency.note import generate_ed25519

from .test_tiles_http import served  # noqa: F401 - the static server fixture
from .test_witnesses import Witness, qrng

PULSES = 20


def test_beacon_runs_is_witnessed_and_verifies_from_tiles(tmp_path, served):  # noqa: F811
    www, url = served
    log_priv, log_vkey = generate_ed25519("beacon.example/log")
    (tmp_path / "log.key").write_text(log_priv + "\n")
    (tmp_path / "log.pub").write_text(log_vkey + "\n")
    k = qrng("beacon", "keygen", "--out", str(tmp_path / "beacon.key"), "--certificate", str(tmp_path / "beacon.pem"))
    assert k.returncode == 0 and (tmp_path / "beacon.key").stat().st_mode & 0o077 == 0, k.stderr
    cert = str(tmp_path / "beacon.pem")
    ws = [Witness(tmp_path, f"w{i}", log_vkey).start() for i in (1, 2, 3)]
    try:
        policy = tmp_path / "policy.txt"
        policy.write_text(f"log {log_vkey}\n" + "".join(f"witness {w.name} {w.vkey} {w.url}\n" for w in ws)
                          + "group g 2 w1 w2 w3\nquorum g\n")
        made = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")
        cfg = tmp_path / "usb.yaml"
        cfg.write_text(f"version: 1\nsource: {{type: usb, emulator: {made['folder']}}}\nextractor: {{type: sha256}}\n")
        p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "beacon", "run", "--config", str(cfg), "--key",
                              str(tmp_path / "beacon.key"), "--certificate", cert, "--log",
                              str(tmp_path / "beacon.log"), "--log-key",
                              str(tmp_path / "log.key"), "--policy", str(policy), "--tiles", str(www / "beacon"),
                              "--state", str(tmp_path / "state"), "--period", "1", "--pulses", str(PULSES)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        while len(lines) < 5:
            lines.append(p.stdout.readline())
        write_control(made["folder"], physics_fault="stuck_at")   # the device sticks: health tests fail
        time.sleep(2.5)
        write_control(made["folder"], physics_fault="none")
        out, err = p.communicate(timeout=120)
        lines += out.splitlines()
        assert p.returncode == 0, err
        assert "no pulse at" in err  # a failed health state emits no pulse
        assert all("witnessed by" in ln and "NOT met" not in ln for ln in lines if ln.strip()), lines
        assert (tmp_path / "state" / "next-local-random-value").stat().st_mode & 0o077 == 0
    finally:
        for w in ws:
            w.stop(kill=True)
    r = qrng("beacon", "verify", f"{url}/beacon", "--certificate", cert, "--log-key", log_vkey, "--policy", str(policy),
             "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["pulses"] == PULSES and res["first"] == 1 and res["last"] == PULSES and res["gaps"], res
    assert len(res["cosigners"]) >= 2
    r = qrng("beacon", "verify", f"{url}/beacon", "--certificate", cert, "--log-key", log_vkey, "--first", "7",
             "--last", "9", "--json", "--policy", str(policy))
    assert r.returncode == 0 and json.loads(r.stdout)["pulses"] == 3
    r = qrng("beacon", "verify", f"{url}/beacon", "--certificate", cert, "--log-key", log_vkey, "--json")
    assert r.returncode == 4 and json.loads(r.stdout)["witness_quorum"].startswith("not checked")  # no --policy
    # NIST's format: `qrng beacon pulse` prints what a 2.0 client fetches from /pulse/last
    r = qrng("beacon", "pulse", str(tmp_path / "beacon.log"), "--index", "5")
    assert r.returncode == 0, r.stderr
    served = json.loads(r.stdout)
    assert set(served) == {"pulse"} and Pulse.from_json(served).pulse_index == 5
    assert served["pulse"]["version"] == "Version 2.0" and served["pulse"]["cipherSuite"] == 0
    # a pulse changed in the served tiles: the tiles no longer verify against the witnessed checkpoint
    bundle = www / "beacon" / "tile" / "entries" / f"000.p/{res['log_size']}"
    data = bundle.read_bytes()
    at = data.index(b'"localRandomValue":"') + len(b'"localRandomValue":"')
    flipped = data[:at] + (b"1" if data[at:at + 1] != b"1" else b"2") + data[at + 1:]  # same length, same framing
    bundle.write_bytes(flipped)
    r = qrng("beacon", "verify", f"{url}/beacon", "--certificate", cert, "--log-key", log_vkey)
    assert r.returncode == 1 and "TAMPERED" in r.stderr, r.stdout + r.stderr
    bundle.write_bytes(data[:-5])  # a malformed bundle is a failed verification too, not a usage error
    r = qrng("beacon", "verify", f"{url}/beacon", "--certificate", cert, "--log-key", log_vkey)
    assert r.returncode == 1, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("faketime") is None, reason="Debian's faketime is installed by make provision")
def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def test_a_skewed_beacon_clock_is_named_by_its_witnesses_and_a_clock_stepped_back_emits_nothing(tmp_path):
    """Game day, clock skew (issue 22): the beacon runs under libfaketime (its clock 5 minutes ahead; a real clock
    offset, the witnesses are separate processes on the true clock). Their cosignature times name the skew on every
    pulse. Then the clock is set 5 minutes behind the last pulse: no pulse is dated before its predecessor, and the
    beacon says why once instead of going silent."""
    log_priv, log_vkey = generate_ed25519("beacon.example/log")
    (tmp_path / "log.key").write_text(log_priv + "\n")
    assert qrng("beacon", "keygen", "--out", str(tmp_path / "beacon.key"), "--certificate",
                str(tmp_path / "beacon.pem")).returncode == 0
    ws = [Witness(tmp_path, f"w{i}", log_vkey).start() for i in (1, 2)]
    try:
        policy = tmp_path / "policy.txt"
        policy.write_text(f"log {log_vkey}\n" + "".join(f"witness {w.name} {w.vkey} {w.url}\n" for w in ws)
                          + "group g 2 w1 w2\nquorum g\n")
        cfg = tmp_path / "sim.yaml"
        cfg.write_text("version: 1\nsource: {type: simulator}\nextractor: {type: sha256}\n")

        def beacon(offset: str, pulses: int, timeout: float) -> subprocess.CompletedProcess[str]:
            cmd = ["faketime", "-f", offset, sys.executable, "-m", "qrng_cli", "beacon", "run", "--config", str(cfg),
                   "--key", str(tmp_path / "beacon.key"), "--certificate", str(tmp_path / "beacon.pem"), "--log",
                   str(tmp_path / "beacon.log"), "--log-key", str(tmp_path / "log.key"), "--policy", str(policy),
                   "--state", str(tmp_path / "state"), "--period", "1", "--pulses", str(pulses)]
            # only the wall clock is shifted (Python's timed waits use the monotonic clock, which stays true)
            env = {**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
            # faketime forks the beacon and waits for it: the run that can emit nothing is stopped from outside by
            # killing its whole process group (killing faketime alone left the beacon running for ever)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                    start_new_session=True)
            try:
                out, err = proc.communicate(timeout=timeout)
                return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                return subprocess.CompletedProcess(cmd, -9, out, err)

        ahead = beacon("+300s", 3, 120)
        assert ahead.returncode == 0, ahead.stderr
        skews = [ln for ln in ahead.stderr.splitlines() if "the beacon's clock is ahead of every witness's" in ln]
        assert len(skews) == 3, ahead.stderr
        assert re.search(r"w1 -3\d\d s", skews[0]) and "w2 -3" in skews[0], skews[0]
        size = (tmp_path / "beacon.log").stat().st_size
        back = beacon("-300s", 1, 6)  # 10 minutes behind the last pulse's time stamp: nothing to emit
        assert back.stdout.count("pulse ") == 0, back.stdout
        assert back.stderr.count("not after the last pulse's time stamp") == 1, back.stderr  # said once
        assert (tmp_path / "beacon.log").stat().st_size == size
        time.sleep(0.2)  # SIGKILL is delivered, the beacon is gone: nothing of this test outlives it
        left = [p for p in Path("/proc").glob("[0-9]*") if str(tmp_path / "state") in _cmdline(p)]
        assert not left, f"beacon processes left running: {[p.name for p in left]}"
    finally:
        for w in ws:
            w.stop(kill=True)
