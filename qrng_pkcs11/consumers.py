"""Real consumers of a PKCS#11 module, run as a user runs them: pkcs11-tool (OpenSC), ``openssl rand`` with
pkcs11-provider as OpenSSL's random source, and a Java SunPKCS11 client (``java/QrngRandom.java``). Each draws
a few bytes once, in its own process; :class:`Seen` is what it saw: its exit code, the CKR_* code it named (or
its first error line), how many bytes it got, and what the module answered it (from the module's call log,
QRNG_PKCS11_LOG, which both modules write). The game day's consumer matrix (:mod:`qrng_pkcs11.gameday`)
and the consumer tests use these."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .openssl_conf import PKCS11_PROVIDER, openssl_rand_conf

__all__ = ["CONSUMERS", "Seen", "draw", "missing", "prepare_java"]

CONSUMERS = ("pkcs11-tool", "openssl", "java")
JAVA_SOURCE = Path(__file__).resolve().parent / "java" / "QrngRandom.java"
_CKR = re.compile(r"CKR_[A-Z_]+")


@dataclass(frozen=True)
class Seen:
    consumer: str
    exit_code: int
    said: str             # the CKR_* code the consumer named, else its first error line, else "-"
    bytes_received: int
    module_answer: str    # the module's first failing answer to it ("C_GenerateRandom -> CKR_DEVICE_ERROR"), or "-"


def missing() -> list[str]:
    """The consumers this machine cannot run (a tool not installed), with what is missing."""
    out = [f"{tool} (not installed)" for tool in ("pkcs11-tool", "openssl", "javac", "java") if not shutil.which(tool)]
    if not PKCS11_PROVIDER.exists():
        out.append(f"pkcs11-provider ({PKCS11_PROVIDER} not installed)")
    return out


def prepare_java(folder: Path) -> Path:
    """Compile the Java client into ``folder`` (once per folder); returns the folder."""
    if not (folder / "QrngRandom.class").exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(JAVA_SOURCE, folder / JAVA_SOURCE.name)
        subprocess.run(["javac", JAVA_SOURCE.name], cwd=folder, check=True, capture_output=True, timeout=180)
    return folder


def _said(text: str) -> str:
    """The CKR_* code in a consumer's output, else its first error line without addresses and source paths
    (OpenSSL's "80FB...:error:0308010C:digital envelope routines:inner_evp_generic_fetch:unsupported:../x.c:..."
    becomes "error:0308010C:...:inner_evp_generic_fetch:unsupported"), so the same failure reads the same."""
    m = _CKR.search(text)
    if m:
        return m.group(0)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()] or lines
    if not errors:
        return "-"
    line = re.sub(r"^[0-9A-F]+:error:", "error:", errors[0]).split(":../")[0].split(":(unknown")[0]
    parts = line.split(":")
    if len(parts) > 4 and parts[0] == "error":  # error:CODE:library:function:reason
        line = ":".join([parts[0], parts[1], "...", *parts[-2:]])
    return line.removeprefix("error: ")[:100]


def _module_answer(log: Path) -> str:
    """The first call the module did not answer CKR_OK, from its call log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        m = re.search(r" (C_\w+) -> (CKR_\w+|0x[0-9a-f]+)", line)
        if m and m.group(2) != "CKR_OK":
            return f"{m.group(1)} -> {m.group(2)}"
    return "-"


def draw(consumer: str, module: Path, env: dict[str, str], folder: Path, n: int = 32,
         timeout: float = 120) -> Seen:
    """``n`` bytes through ``module`` by ``consumer`` (one of CONSUMERS), with ``env`` (the module's configuration
    variables); ``folder`` holds the consumer's files (the OpenSSL configuration, the compiled Java client, the
    module's call log)."""
    log = folder / "calls.log"
    log.unlink(missing_ok=True)
    env = {**env, "QRNG_PKCS11_LOG": str(log)}
    if consumer == "pkcs11-tool":
        out = folder / "pkcs11-tool.bin"
        out.unlink(missing_ok=True)
        cmd = ["pkcs11-tool", "--module", str(module), "--generate-random", str(n), "--output-file", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        got = out.stat().st_size if out.exists() and r.returncode == 0 else 0
    elif consumer == "openssl":
        conf = folder / f"openssl-{module.stem}.cnf"
        conf.write_text(openssl_rand_conf(module))
        r = subprocess.run(["openssl", "rand", "-hex", str(n)], capture_output=True, text=True,
                           env={**env, "OPENSSL_CONF": str(conf)}, timeout=timeout)
        got = len(r.stdout.strip()) // 2 if r.returncode == 0 else 0
    elif consumer == "java":
        prepare_java(folder / "java")
        cfg = folder / f"java-{module.stem}.cfg"
        cfg.write_text(f"name = QRNG\nlibrary = {module}\n")
        r = subprocess.run(["java", "-cp", str(folder / "java"), "QrngRandom", str(cfg), str(n)], capture_output=True,
                           text=True, env=env, timeout=timeout)
        words = r.stdout.split()
        got = len(words[2]) // 2 if r.returncode == 0 and len(words) == 3 else 0
    else:
        raise ValueError(f"unknown consumer {consumer!r}; expected one of {CONSUMERS}")
    return Seen(consumer, r.returncode, "-" if r.returncode == 0 else _said(r.stderr + r.stdout), got,
                _module_answer(log))
