"""The C robustness harness (tests/pkcs11_provider/harness.c), compiled with gcc against the built module.

Each scenario checks CK_RV codes from the PKCS#11 v2.40 specification; see harness.c for the cases."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCENARIOS = ["before_init", "init_args", "bad_arguments", "invalid_handles", "generate", "dlclose_cycles",
             "threads", "app_mutexes", "fork", "host_stdio"]


@pytest.fixture(scope="module")
def harness(module, tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("harness") / "harness"
    subprocess.run(["gcc", "-O1", "-g", "-Wall", "-Werror", "-D_GNU_SOURCE", f"-I{module.parent}",
                    str(HERE / "harness.c"), "-o", str(exe), "-ldl", "-lpthread"], check=True)
    return exe


def run(harness: Path, module: Path, scenario: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(harness), str(module), scenario], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(harness, module, healthy, scenario):
    r = run(harness, module, scenario)
    fails = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 0 and not fails, r.stdout + r.stderr
    assert f"{scenario}: 0 failure(s)" in r.stdout


def test_fork_repeatedly(harness, module, healthy):
    """Pitfall 6 of the embedding notes hung 4 times in 5: fork many times, never hang, never repeat."""
    for _ in range(10):
        r = run(harness, module, "fork")
        assert r.returncode == 0, r.stdout


def test_failing_source(harness, module, faulty):
    r = run(harness, module, "failing_source")
    assert r.returncode == 0, r.stdout + r.stderr
