"""Game day, disk full during log appends (issue 22): qrngd's audit log on a tmpfs in the daemon's own mount
namespace, filled to its last page while the daemon runs (a real ENOSPC, not a fake). Serving goes on; the events of
the outage (a USB EMULATOR unplugged and plugged back) are held, the metric and its alert's input say so; once space
is freed the held events are appended in order with the times they happened, and the log verifies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from qrng.sources.usbemu import write_control
from qrng.sources.usbemu_init import init_emulator
from qrngd.client import DaemonClient
from tests.mountns import needs_mount_namespace
from tests.netwait import free_port

from .test_metrics import scrape


def _until(check, limit: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _in_ns(pid: int, *cmd: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["nsenter", "-t", str(pid), "-m", *cmd], capture_output=True, timeout=60)


@needs_mount_namespace
def test_a_full_disk_holds_the_daemons_events_and_writes_them_when_space_returns(tmp_path):
    folder = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    cfg = tmp_path / "usb.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: usb, emulator: {folder}}}\nextractor: {{type: sha256}}\n")
    key = tmp_path / "log.key"
    subprocess.run([sys.executable, "-m", "qrng_cli", "audit", "keygen", "qrngd.example/gameday", "--out", str(key)],
                   check=True, capture_output=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    sock, port = tmp_path / "q.sock", free_port()
    daemon = [sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket", str(sock), "--metrics",
              f"127.0.0.1:{port}", "--audit-log", str(logs / "audit.log"), "--audit-key",
              str(key)]
    script = f"mount -t tmpfs -o size=1m tmpfs {logs} && exec " + " ".join(f"'{a}'" for a in daemon)
    p = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        client = DaemonClient(str(sock), "gameday-audit")
        client.wait(30, alive=lambda: p.poll() is None)
        assert scrape(port)["qrng_audit_log_writable"][0][1] == 1.0
        _in_ns(p.pid, "sh", "-c", f"cat /dev/zero > {logs}/filler")  # ENOSPC: the tmpfs is full
        cycles = 0
        while scrape(port)["qrng_audit_log_writable"][0][1] == 1.0:  # the log's last page may hold a few more
            assert cycles < 20, "the log never refused an append"
            cycles += 1
            write_control(folder, plugged="no")
            _until(lambda: scrape(port)["qrng_source_up"][0][1] == 0.0)
            unplugged_at = time.time()
            write_control(folder, plugged="yes")
            _until(lambda: scrape(port)["qrng_source_up"][0][1] == 1.0)
        m = scrape(port)
        assert m["qrng_audit_log_held_events"][0][1] >= 1 and m["qrng_audit_log_write_errors_total"][0][1] >= 1
        assert len(client.seed(64)) == 64  # serving goes on while the log cannot record
        time.sleep(1.5)  # the held events keep their times: appended later, they say when they happened
        _in_ns(p.pid, "rm", f"{logs}/filler")
        _until(lambda: scrape(port)["qrng_audit_log_writable"][0][1] == 1.0)
        m = scrape(port)
        assert m["qrng_audit_log_held_events"][0][1] == 0 and m["qrng_audit_log_dropped_events_total"][0][1] == 0
        log = _in_ns(p.pid, "cat", f"{logs}/audit.log").stdout
        # full again when qrngd stops: the held events are named as it goes, not dropped without a word
        _in_ns(p.pid, "sh", "-c", f"cat /dev/zero > {logs}/filler")
        while scrape(port)["qrng_audit_log_writable"][0][1] == 1.0:
            write_control(folder, plugged="no")
            _until(lambda: scrape(port)["qrng_source_up"][0][1] == 0.0)
            write_control(folder, plugged="yes")
            _until(lambda: scrape(port)["qrng_source_up"][0][1] == 1.0)
    finally:
        p.terminate()
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
    assert "No space left on device" in err and "events are held in memory" in err, err[-2000:]
    assert "takes writes again" in err, err[-2000:]
    assert re.search(r"stopping with \d+ held event\(s\) not written", err), err[-2000:]
    copy = tmp_path / "audit.log"
    copy.write_bytes(log)
    r = subprocess.run([sys.executable, "-m", "qrng_cli", "audit", "verify", str(copy), "--key", f"{key}.pub"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    entries = [json.loads(x) for x in log.decode().splitlines() if '"kind":"entry"' in x]
    events = [e["event"] for e in entries]
    # every event of the outage, in the order it happened: nothing lost while the disk was full
    assert events == ["daemon.start", "source.ready"] + ["source.failed", "source.recovered"] * cycles, events
    failed = [e for e in entries if e["event"] == "source.failed"][-1]
    stamp = time.mktime(time.strptime(failed["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert stamp <= unplugged_at + 1, (failed["time"], unplugged_at)  # its own time, not the time it was written
    # the signals the runbook names are the ones this game day saw
    book = (Path(__file__).resolve().parents[3] / "docs" / "runbooks" / "QrngAuditLogNotRecording.md").read_text()
    for signal in ("`qrng_audit_log_writable`", "`qrng_audit_log_write_errors_total`", "`qrng_audit_log_held_events`",
                   "No space left on device", "events are", "takes writes again"):
        assert signal in book, signal
