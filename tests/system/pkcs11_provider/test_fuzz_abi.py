"""The PKCS#11 ABI fuzzer (fuzz_abi.c) against a sanitizer build of the module (issue 10): random functions of the
function list with hostile arguments from several threads and across fork, for a bounded time. Zero crashes,
sanitizer reports, hangs or leaks; every failed C_GenerateRandom leaves its buffer as the README documents.

Bounded in `make test` (QRNG_FUZZ_SECONDS, default 10); QRNG_FUZZ_SEED repeats a run."""

from __future__ import annotations

import os
import random
import re
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
SECONDS = int(os.environ.get("QRNG_FUZZ_SECONDS", "10"))


@pytest.fixture(scope="module")
def sanitized(module, tmp_path_factory) -> tuple[Path, Path]:
    from pkcs11_provider.build import build
    lib = build(sanitize=True)
    exe = tmp_path_factory.mktemp("fuzz") / "fuzz_abi"
    subprocess.run(["gcc", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", *SANITIZE,
                    f"-I{module.parent}", str(HERE / "fuzz_abi.c"), "-o", str(exe), "-ldl", "-lpthread"], check=True)
    return exe, lib


def test_abi_fuzzer_finds_nothing(sanitized, tmp_path):
    exe, lib = sanitized
    seed = int(os.environ.get("QRNG_FUZZ_SEED", random.randrange(1, 2**31)))
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\n")
    env = {**os.environ, "QRNG_CONFIG": str(cfg), "PYTHONMALLOC": "malloc",  # Python objects on the scanned heap
           "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=66",
           "LSAN_OPTIONS": f"suppressions={HERE / 'lsan.supp'}:print_suppressions=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    env.pop("QRNG_PKCS11_LOG", None)
    r = subprocess.run([str(exe), str(lib), str(SECONDS), "3", str(seed)], capture_output=True, text=True, env=env,
                       timeout=SECONDS * 6 + 120)
    report = f"seed {seed} (QRNG_FUZZ_SEED={seed} repeats it)\n{r.stdout}\n{r.stderr[-4000:]}"
    assert r.returncode == 0, report
    m = re.search(r"(\d+) calls \((\d+) C_GenerateRandom\).* (\d+) forks, (\d+) violations", r.stdout)
    assert m, report
    calls, generates, forks, violations = map(int, m.groups())
    assert violations == 0 and calls > 1000 and generates > 100 and forks > 0, report
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, report


@pytest.mark.parametrize("scenario", ["zero-null", "fork-during-init"])
def test_what_the_fuzzer_found(sanitized, tmp_path, scenario):
    """Regressions: memcpy(NULL, ., 0) in the fast path (UBSan); forked children hanging on the init lock, on the
    token's and pipeline's locks, and on a module import another thread was in the middle of."""
    exe, lib = sanitized
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("version: 1\nsource: {type: simulator}\n")
    env = {**os.environ, "QRNG_CONFIG": str(cfg), "ASAN_OPTIONS": "detect_leaks=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    env.pop("QRNG_PKCS11_LOG", None)
    r = subprocess.run([str(exe), str(lib), scenario], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "runtime error" not in r.stderr
