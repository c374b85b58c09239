"""Game day, recovery (issue 22): after a detected fault of the USB EMULATOR under a running qrngd, what brings service
back, how long it takes, and that nothing from before recovery is served after it.

* What brings it back: the cause removed (the device plugged back, its physics no longer stuck); qrngd opens the
  source again by itself, at most once a second (`REOPEN_S`), with its SP 800-90B 4.3 start-up tests, and serves
  only when they pass. With `health.allow_reset: false` nothing brings it back but a restart (test_allow_reset.py).
* How long: from the cause's removal to the first SEED served, measured and bounded here (the reopening interval
  plus the start-up tests), and printed for docs/gameday.md and the closing note.
* Nothing from before: the pool of extracted output is dropped at the failure (counted as `dropped`), and after
  recovery the oldest byte in the pool is younger than the recovery itself (`pool_age_s`)."""

from __future__ import annotations

import time

import pytest

from qrng.sources.usbemu import write_control
from qrng.sources.usbemu_init import init_emulator
from qrngd.client import DaemonClient, DaemonUnavailable
from qrngd.pool import REOPEN_S

from .test_qrngd import start, stop

RECOVERY_BOUND_S = REOPEN_S + 2.0  # the reopening interval, the start-up tests and the first refill, with room


@pytest.mark.parametrize(("fault", "back"), [({"plugged": "no"}, {"plugged": "yes"}),
                                            ({"physics_fault": "stuck_at"}, {"physics_fault": "none"})],
                         ids=["unplugged", "stuck"])
def test_recovery_is_bounded_and_serves_nothing_from_before(tmp_path, fault, back):
    folder = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    cfg = tmp_path / "usb.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: usb, emulator: {folder}}}\nextractor: {{type: sha256}}\n")
    sock = tmp_path / "q.sock"
    daemon = start(cfg, sock)
    try:
        c = DaemonClient(str(sock), "recovery")
        before = {c.seed(48) for _ in range(20)}
        write_control(folder, **fault)
        deadline = time.monotonic() + 30
        while True:  # draw until refused: the fault detected
            assert time.monotonic() < deadline, "the fault was never detected"
            try:
                before.add(c.seed(4096))
            except DaemonUnavailable:
                break
        failed = c.status()["sources"][0]
        assert failed["state"] != "healthy" and failed["pooled_bytes"] == 0, failed  # the pool went with it
        time.sleep(0.3)
        write_control(folder, **back)
        restored = time.monotonic()
        while True:
            assert time.monotonic() - restored < 30, "service never came back"
            try:
                first = c.seed(48)
                break
            except DaemonUnavailable:
                time.sleep(0.01)
        took = time.monotonic() - restored
        st = c.status()["sources"][0]
        assert st["state"] == "healthy"
        age = st["pool_age_s"]
        assert age is None or age <= time.monotonic() - restored, (age, took)  # every pooled byte is from after
        assert first not in before
        print(f"\nrecovery after {next(iter(fault.items()))}: first seed {took * 1e3:.0f} ms after the cause was "
              f"removed (bound {RECOVERY_BOUND_S:.1f} s: reopening at most every {REOPEN_S:.0f} s, start-up tests)")
        assert took <= RECOVERY_BOUND_S, took
    finally:
        stop(daemon)
    log = sock.with_suffix(".log").read_text()
    assert "source.failed" in log and "source.recovered" in log, log[-1500:]
