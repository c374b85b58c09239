"""Sources: the simulator's model and faults, file replay, character devices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qrng.errors import ConfigError, SourceError, SourceRemoved
from qrng.sources.device import DeviceSource
from qrng.sources.file import FileSource
from qrng.sources.simulator import Fault, SimulatorConfig, SimulatorSource, model_min_entropy


def test_simulator_claims_less_than_its_model():
    s = SimulatorSource()
    assert s.info.claimed_min_entropy <= s.model_min_entropy - 2.5
    assert s.info.claimed_min_entropy * 2 == int(s.info.claimed_min_entropy * 2)


def test_simulator_is_labelled_and_never_quantum():
    s = SimulatorSource()
    assert s.info.simulator and not s.info.quantum
    assert "SIMULATOR" in s.info.label and "quantum" not in s.info.label.lower()


def test_simulator_seeded_is_reproducible_and_unseeded_is_not():
    a = SimulatorSource(SimulatorConfig(seed=5)).read(1000)
    b = SimulatorSource(SimulatorConfig(seed=5)).read(1000)
    c = SimulatorSource().read(1000)
    d = SimulatorSource().read(1000)
    assert (a == b).all() and not (c == d).all()


def test_simulator_matches_its_model():
    cfg = SimulatorConfig(seed=1, gain=10.0)
    x = SimulatorSource(cfg).read(400000)
    assert abs(x.mean() - 127.5) < 0.2 and abs(x.std() - 10.0) < 0.2
    h = model_min_entropy(8, 10.0, 127.5)
    p_emp = np.bincount(x, minlength=256).max() / x.size
    assert abs(-math.log2(p_emp) - h) < 0.05
    assert abs(h - math.log2(10.0 * math.sqrt(2 * math.pi))) < 0.01


@pytest.mark.parametrize("fault,check", [
    (Fault("stuck_at", 100, {"value": 9}), lambda x: (x[100:] == 9).all() and not (x[:100] == 9).all()),
    (Fault("low_entropy", 100), lambda x: x[100:].std() < 3 and x[:100].std() > 20),
    (Fault("saturation", 100), lambda x: np.isin(x[100:], [0, 255]).mean() > 0.8),
    (Fault("bias_drift", 0, {"rate": 0.05}), lambda x: x[-500:].mean() > x[:500].mean() + 20),
    (Fault("repeating_pattern", 100, {"period": 5}), lambda x: (x[100:995] == x[105:1000]).all()),
])
def test_fault_effects(fault, check):
    x = SimulatorSource(SimulatorConfig(seed=2, faults=(fault,))).read(1000)
    assert check(x)


def test_repeating_pattern_across_reads():
    s = SimulatorSource(SimulatorConfig(seed=2, faults=(Fault("repeating_pattern", 98, {"period": 4}),)))
    x = np.concatenate([s.read(100), s.read(100)])
    assert (x[98:196] == x[102:200]).all()


def test_supply_failure_raises_and_tamper_flags():
    s = SimulatorSource(SimulatorConfig(faults=(Fault("supply_failure", 50), Fault("tamper", 10))))
    s.read(20)
    assert s.tampered
    with pytest.raises(SourceError, match="F7"):
        s.read(40)


def test_unknown_fault_is_named():
    with pytest.raises(ConfigError, match="unknown fault 'melt'"):
        Fault("melt")


def test_file_source_replays_and_stops(tmp_path):
    p = tmp_path / "s.bin"
    p.write_bytes(bytes([1, 2, 3, 0, 1]))
    f = FileSource(p, 2, 1.0)
    assert f.read(3).tolist() == [1, 2, 3]
    with pytest.raises(SourceError, match="end of sample file"):
        f.read(3)


def test_file_source_rejects_wide_samples(tmp_path):
    p = tmp_path / "s.bin"
    p.write_bytes(bytes([1, 2, 9]))
    src = FileSource(p, 3, 1.0)  # checked block by block as it is read (bounded memory), not at open
    with pytest.raises(SourceError, match="byte 2 holds 9"):
        src.read(3)


def test_file_source_packed_bits(tmp_path):
    p = tmp_path / "s.bin"
    p.write_bytes(bytes([0b10100000]))
    assert FileSource(p, 1, 0.5, packed=True).read(4).tolist() == [1, 0, 1, 0]


def test_device_source_reads_char_device_and_reports_missing():
    d = DeviceSource("/dev/urandom", 7.0)
    assert d.read(1000).size == 1000 and not d.info.quantum and "non-quantum" in d.info.label
    d.close()
    with pytest.raises(SourceRemoved):
        DeviceSource("/dev/does-not-exist-qrng")


def test_usb_source_absent_device_is_removed_error():
    from qrng.sources.usb import UsbSource
    with pytest.raises(SourceRemoved):
        UsbSource(0x1234, 0xABCD, claimed_min_entropy=4.0)


# --- issue 10 item 9: bounded reads, non-regular files refused unless configured as streams, timeouts ----------
def test_file_source_refuses_a_device_or_fifo_unless_stream(tmp_path):
    import os
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in (("/dev/zero", "a device"), (fifo, "a FIFO"), (tmp_path, "a folder")):
        with pytest.raises(ConfigError, match=f"is {kind}; a file source replays regular files only"):
            FileSource(path, 8, 1.0)


def test_dev_zero_as_a_stream_reads_in_bounded_blocks():
    """Regression: a file source on /dev/zero read the whole "file" into memory (MemoryError)."""
    src = FileSource("/dev/zero", 8, 1.0, stream=True)
    try:
        assert src.read(1 << 20).tobytes() == bytes(1 << 20)
    finally:
        src.close()


def test_fifo_without_a_writer_times_out_instead_of_hanging(tmp_path):
    """Regression: a FIFO hung the CLI and C_OpenSession forever."""
    import os
    import time
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t = time.monotonic()
    src = FileSource(fifo, 8, 1.0, stream=True, read_timeout=0.3)  # opening does not block either
    with pytest.raises(SourceError, match="no data for 0.3 s"):
        src.read(16)
    src.close()
    assert time.monotonic() - t < 5


def test_fifo_with_a_writer_is_read_as_a_stream(tmp_path):
    import os
    import threading
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    src = FileSource(fifo, 8, 1.0, stream=True, read_timeout=5)

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(bytes(range(200)))
    w = threading.Thread(target=write)
    w.start()
    assert src.read(200).tobytes() == bytes(range(200))
    w.join()
    src.close()


def test_large_file_is_hashed_and_read_without_loading_it(tmp_path):
    import hashlib
    import resource
    p = tmp_path / "big.bin"
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(p, "wb") as f:
        for _ in range(64):
            f.write(block)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    src = FileSource(p, 8, 1.0)
    got = sum(int(src.read(1 << 20)[-1]) for _ in range(64))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert got == 255 * 64 and grown_kib < 32 * 1024  # a 64 MiB file, far less than 64 MiB more memory
    digest = hashlib.sha256(block * 64).hexdigest()
    assert src.info.identity.endswith(digest[:16])
    with pytest.raises(SourceError, match="end of sample file"):
        src.read(1)
