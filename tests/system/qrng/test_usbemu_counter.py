"""The USB EMULATOR's signature counter never repeats when several processes open one emulator folder at once
(qrngd and `qrng usb attest`, say). Regression: the read-increment-write of ``counter`` held only a thread lock,
so two processes could each read N and sign two different answers with counter N + 1, which a verifier that
remembers the last counter (docs/usb-protocol.md) refuses as a replay."""

from __future__ import annotations

import subprocess
import sys

from qrng.sources.usbemu_init import init_emulator

PROCESSES, EACH = 4, 150
DRAW = r"""
import sys
from pathlib import Path
from qrng.sources import usbproto as P
from qrng.sources.usbemu import EmulatedDevice
device = EmulatedDevice(Path(sys.argv[1]))
counters = []
for _ in range(int(sys.argv[2])):
    device.vendor_out(P.REQ.SET_NONCE, 0, bytes(P.NONCE_LEN))
    counters.append(P.Attestation.decode(device.vendor_in(P.REQ.GET_ATTESTATION, 0, 4096)).counter)
print(" ".join(map(str, counters)))
"""


def test_processes_sharing_one_emulator_folder_never_sign_with_one_counter_twice(tmp_path):
    folder = init_emulator(tmp_path / "EMU-0001", tmp_path / "att", firmware_log=tmp_path / "fwlog")["folder"]
    procs = [subprocess.Popen([sys.executable, "-c", DRAW, str(folder), str(EACH)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(PROCESSES)]
    seen: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        counters = [int(c) for c in out.split()]
        assert counters == sorted(set(counters)) and len(counters) == EACH  # each process sees them rise
        seen += counters
    assert len(set(seen)) == PROCESSES * EACH, f"{PROCESSES * EACH - len(set(seen))} counters signed twice"
    assert int((folder / "counter").read_text()) == max(seen)
