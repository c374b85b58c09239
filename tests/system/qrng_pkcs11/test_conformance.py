"""One PKCS#11 conformance suite for both built modules (issue 21): the C harness (harness.c, compiled with gcc,
loading the module with dlopen as consumers do) checks every CK_RV code and the state rules of PKCS#11 v2.40
(5.4 general purpose, 5.5 slots, tokens and login, 5.6 sessions, 5.7 objects, 5.15 random numbers) against

* the in-process module, ``build/libqrng-pkcs11.so``, on a simulator configuration, and
* the daemon-mode module, ``build/libqrng-pkcs11-qrngd.so`` (C only), against a running qrngd.

The same scenarios with the same expectations: where the two modules differed, the module was fixed. The
constants in harness.c are typed from the specification, not taken from our generated headers."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCENARIOS = ["before_init", "init_args", "bad_arguments", "invalid_handles", "generate", "dlclose_cycles",
             "threads", "app_mutexes", "fork", "host_stdio", "info_semantics", "login_semantics",
             "object_semantics"]
KINDS = ["in-process", "qrngd"]


@pytest.fixture(scope="module")
def harness(module, tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("harness") / "harness"
    subprocess.run(["gcc", "-O1", "-g", "-Wall", "-Werror", "-D_GNU_SOURCE", f"-I{module.parent}",
                    str(HERE / "harness.c"), "-o", str(exe), "-ldl", "-lpthread"], check=True)
    return exe


@pytest.fixture(params=KINDS)
def target(request, module, tmp_path) -> tuple[Path, dict[str, str]]:
    """(the module, its environment) for each kind."""
    env = {k: v for k, v in os.environ.items() if k not in ("QRNG_PKCS11_LOG", "QRNGD_SOCKET", "QRNG_CONFIG")}
    if request.param == "in-process":
        cfg = tmp_path / "qrng.yaml"
        cfg.write_text("version: 1\nsource: {type: simulator}\n")
        return module, env | {"QRNG_CONFIG": str(cfg)}
    from qrng_pkcs11.build import build_client
    return build_client(), env | {"QRNGD_SOCKET": str(request.getfixturevalue("qrngd"))}


def run(harness: Path, module: Path, scenario: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(harness), str(module), scenario], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(harness, target, scenario):
    module, env = target
    r = run(harness, module, scenario, env)
    fails = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 0 and not fails, r.stdout + r.stderr
    assert f"{scenario}: 0 failure(s)" in r.stdout


def test_fork_repeatedly(harness, target):
    """Pitfall 6 of the embedding notes hung 4 times in 5: fork many times, never hang, never repeat."""
    module, env = target
    for _ in range(10):
        r = run(harness, module, "fork", env)
        assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_failing_source(harness, module, tmp_path, kind):
    """Fail closed, the same way: CKR_DEVICE_ERROR, output buffers left all zero, CKF_ERROR_STATE. In-process: a
    simulator stuck at one value (the repetition count test fires); daemon mode: no qrngd on its socket (and no
    fallback configured)."""
    env = {k: v for k, v in os.environ.items() if k not in ("QRNG_PKCS11_LOG", "QRNGD_SOCKET", "QRNG_CONFIG")}
    if kind == "in-process":
        cfg = tmp_path / "fault.yaml"
        cfg.write_text("version: 1\nsource:\n  type: simulator\n  faults: ['stuck_at@0']\n")
        env["QRNG_CONFIG"] = str(cfg)
    else:
        from qrng_pkcs11.build import build_client
        module = build_client()
        env["QRNGD_SOCKET"] = str(tmp_path / "no-qrngd.sock")
    r = run(harness, module, "failing_source", env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_configuration_is_read_once_per_initialize(harness, module, tmp_path):
    """Issue 21: the in-process module read its YAML up to five times (validation, slot description, certificates,
    the pipeline at first use, the fast path's switch), so an edit in between gave a token that described one
    configuration and served another. Now C_Initialize reads it once and the next C_Initialize reads it again."""
    cfg = tmp_path / "qrng.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\n")
    env = {k: v for k, v in os.environ.items() if k != "QRNG_PKCS11_LOG"} | {"QRNG_CONFIG": str(cfg)}
    r = run(harness, module, "config_once", env)
    assert r.returncode == 0 and "config_once: 0 failure(s)" in r.stdout, r.stdout + r.stderr


def test_soak_and_fork_storm_never_repeat_output(harness, target, tmp_path):
    """Issue 22 (soak and fork storms): three threads drawing while the process forks 8 children, each child forking
    a grandchild and re-initialising the module in itself; every byte drawn anywhere is kept and no 16-byte block
    appears twice across all of them (a child serving its parent's DRBG or buffer state would repeat). The
    parent's RSS grows by less than 16 MiB over the run."""
    module, env = target
    out = tmp_path / "storm"
    out.mkdir()
    r = run(harness, module, "storm", env | {"STORM_DIR": str(out)})
    assert r.returncode == 0 and "storm: 0 failure(s)" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    files = sorted(out.iterdir())
    kinds = {p.name.split("-")[0] for p in files}
    assert {"parent", "thread", "child", "grandchild"} <= kinds, kinds
    seen: set[bytes] = set()
    total = 0
    for p in files:
        data = p.read_bytes()
        for i in range(0, len(data) - len(data) % 16, 16):
            block = data[i:i + 16]
            assert block not in seen, f"a 16-byte block repeats ({p.name}, offset {i})"
            seen.add(block)
            total += 1
    assert total > 50_000
    before, after = map(int, re.search(r"rss_kb before (\d+) after (\d+)", r.stdout).groups())
    assert after - before < 16 << 10, (before, after)
