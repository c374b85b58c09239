"""Debian's ent, rngtest (FIPS 140-2) and dieharder judge several MiB of pipeline output, and the same
checks reject the raw output of a biased or a stuck simulator."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from qrng.sources.simulator import Fault, SimulatorConfig, SimulatorSource

pytestmark = pytest.mark.slow

MIB = 1 << 20


def _need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; `make test` installs it through scripts/setup.sh")


def judge(path):
    for t in ("ent", "rngtest", "dieharder"):
        _need(t)
    ent = subprocess.run(["ent", "-t", str(path)], capture_output=True, text=True, check=True).stdout
    fields = ent.strip().splitlines()[1].split(",")
    entropy, chisq, mean, serial = float(fields[2]), float(fields[3]), float(fields[4]), float(fields[6])
    with open(path, "rb") as f:
        rt = subprocess.run(["rngtest"], stdin=f, capture_output=True, text=True).stderr
    ok = int(re.search(r"successes: (\d+)", rt)[1])
    bad = int(re.search(r"failures: (\d+)", rt)[1])
    dh = subprocess.run(["dieharder", "-d", "0", "-g", "201", "-f", str(path)], capture_output=True,
                        text=True, check=True).stdout
    verdict = re.search(r"diehard_birthdays\|.*\|\s*(PASSED|WEAK|FAILED)", dh)[1]
    return {"entropy": entropy, "chisq": chisq, "mean": mean, "serial": serial,
            "fips_fail_rate": bad / max(ok + bad, 1), "dieharder": verdict}


@pytest.fixture(scope="module")
def pipeline_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("judge") / "pipeline.bin"
    subprocess.run([sys.executable, "-m", "qrng_cli", "bytes", str(4 * MIB), "--out", str(out)], check=True)
    return out


def test_pipeline_output_passes(pipeline_output):
    r = judge(pipeline_output)
    assert r["entropy"] > 7.9999
    assert 180 < r["chisq"] < 340  # chi-square statistic, 255 degrees of freedom: p within ~1e-4..0.9999
    assert abs(r["mean"] - 127.5) < 0.2 and abs(r["serial"]) < 0.003
    assert r["fips_fail_rate"] < 0.01  # a few per thousand blocks is normal for good data
    assert r["dieharder"] in ("PASSED", "WEAK")


def test_extractor_output_passes(tmp_path):
    out = tmp_path / "extracted.bin"
    subprocess.run([sys.executable, "-m", "qrng_cli", "bytes", str(MIB), "--extracted", "--out", str(out)],
                   check=True)
    r = judge(out)
    assert r["entropy"] > 7.999 and r["fips_fail_rate"] < 0.01


@pytest.mark.parametrize("fault", [Fault("bias_drift", 0, {"rate": 1e-4}), Fault("stuck_at", 0, {"value": 77})],
                         ids=["biased", "stuck"])
def test_raw_faulty_simulator_is_rejected(tmp_path, fault):
    raw = SimulatorSource(SimulatorConfig(faults=(fault,), gain=60.0)).read(2 * MIB)
    path = tmp_path / "raw.bin"
    path.write_bytes(np.asarray(raw).tobytes())
    r = judge(path)
    assert r["entropy"] < 7.9
    assert r["fips_fail_rate"] > 0.5
    assert r["dieharder"] == "FAILED"
