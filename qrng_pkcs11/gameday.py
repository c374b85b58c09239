"""Game day, consumer layer (issue 22): each fault the SP 800-90B health tests detect, injected into the
SIMULATOR (seeded, reproducible; not a quantum source) from its first sample, with real consumers attached
through both modules: in-process (libqrng-pkcs11.so, the pipeline in the consumer's own process) and through
qrngd (libqrng-pkcs11-qrngd.so, the daemon running on the faulty source); then the daemon itself killed and hung
under the qrngd module. A healthy source is the control row: every consumer gets its bytes there, so a failing
row is the fault's doing, not the harness's.

Fail closed, as the consumers see it: a non-zero exit, 0 bytes, and the module's answer CKR_DEVICE_ERROR."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .consumers import CONSUMERS, Seen, draw

__all__ = ["FAULTS", "Row", "run_matrix", "table"]

# (fault kind, its parameters): the faults a health test detects; None is the healthy control
FAULTS: tuple[tuple[str, dict[str, float]] | None, ...] = (
    None,
    ("stuck_at", {"value": 0}),
    ("repeating_pattern", {"period": 4}),
    ("low_entropy", {"factor": 0.01}),
    ("saturation", {"factor": 40.0}),
    ("supply_failure", {}),
)
MODULES = ("in-process", "qrngd")
# what can happen to the daemon itself, with a healthy source (the qrngd module only): killed, or hung (SIGSTOP: the
# kernel still accepts connections on its socket, nobody answers; the module gives up after its 2 s timeout)
DAEMON_FAULTS = (("qrngd killed (SIGKILL)", signal.SIGKILL), ("qrngd hung (SIGSTOP)", signal.SIGSTOP))


@dataclass(frozen=True)
class Row:
    fault: str        # "none (healthy)" or "stuck_at value=0"
    module: str       # "in-process" or "qrngd"
    seen: Seen

    @property
    def failed_closed(self) -> bool:
        return self.seen.exit_code != 0 and self.seen.bytes_received == 0 and \
            self.seen.module_answer.endswith("CKR_DEVICE_ERROR")


def _name(fault: tuple[str, dict[str, float]] | None) -> str:
    if fault is None:
        return "none (healthy)"
    kind, params = fault
    return " ".join([kind, *(f"{k}={v:g}" for k, v in params.items())])


def _config(folder: Path, fault: tuple[str, dict[str, float]] | None) -> Path:
    path = folder / f"{_name(fault).split()[0]}.yaml"
    faults = ""
    if fault is not None:
        params = "".join(f", {k}: {v:g}" for k, v in fault[1].items())
        faults = f"\n  faults: [{{kind: {fault[0]}, start: 0{params}}}]"
    path.write_text(f"version: 1\nsource:\n  type: simulator{faults}\nextractor: {{type: sha256}}\n")
    return path


def _daemon(config: Path, sock: Path, log: Path) -> subprocess.Popen[bytes]:
    """qrngd on ``config``, serving on ``sock`` (its stderr into ``log``); waits until it accepts."""
    sock.unlink(missing_ok=True)
    with log.open("ab") as err:
        p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(config), "--socket",
                              str(sock)], stderr=err)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(sock))
                return p
            except OSError:
                time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"qrngd did not start on {config} (see {log})")


def run_matrix(folder: Path, modules: dict[str, Path], consumers: Sequence[str] = CONSUMERS,
               progress: Callable[[str], None] = lambda m: None) -> list[Row]:
    """Every fault of FAULTS through every module of ``modules`` ("in-process", "qrngd": the built .so files)
    to every consumer; ``folder`` holds the configurations, sockets and logs."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("QRNG_CONFIG", "QRNGD_SOCKET", "QRNGD_CLIENT_CONF", "OPENSSL_CONF", "QRNG_PKCS11_LOG")}
    rows: list[Row] = []
    for i, fault in enumerate(FAULTS, 1):
        config = _config(folder, fault)
        for module in MODULES:
            progress(f"[{i}/{len(FAULTS)}] {_name(fault)} through the {module} module")
            daemon = None
            if module == "in-process":
                env = base | {"QRNG_CONFIG": str(config)}
            else:
                sock = folder / "qrngd.sock"
                daemon = _daemon(config, sock, folder / "qrngd.log")
                env = base | {"QRNGD_SOCKET": str(sock)}
            try:
                rows += [Row(_name(fault), module, draw(c, modules[module], env, folder)) for c in consumers]
            finally:
                if daemon is not None:
                    daemon.terminate()
                    daemon.wait(timeout=30)
    if "qrngd" in modules:
        rows += _daemon_faults(folder, modules["qrngd"], base, consumers, progress)
    return rows


def _daemon_faults(folder: Path, module: Path, base: dict[str, str], consumers: Sequence[str],
                   progress: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    config = _config(folder, None)
    sock = folder / "qrngd.sock"
    for name, sig in DAEMON_FAULTS:
        progress(f"[daemon] {name}")
        daemon = _daemon(config, sock, folder / "qrngd.log")
        try:
            daemon.send_signal(sig)
            if sig == signal.SIGKILL:
                daemon.wait(timeout=30)
            env = base | {"QRNGD_SOCKET": str(sock)}
            rows += [Row(name, "qrngd", draw(c, module, env, folder)) for c in consumers]
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGCONT)
                daemon.terminate()
                daemon.wait(timeout=30)
    return rows


def _cell(s: Seen) -> str:
    if s.exit_code == 0:
        return f"exit 0, {s.bytes_received} bytes"
    said = s.said if s.said.startswith("CKR_") else f"\"{s.said}\""
    answer = s.module_answer.split(" -> ")[-1]
    return f"exit {s.exit_code}, {s.bytes_received} bytes; said {said}; module {answer}"


def table(rows: list[Row]) -> str:
    """One line per fault and module; a column per consumer."""
    consumers = list(dict.fromkeys(r.seen.consumer for r in rows))
    keys = list(dict.fromkeys((r.fault, r.module) for r in rows))
    cells = {(r.fault, r.module, r.seen.consumer): _cell(r.seen) for r in rows}
    out = ["| fault (SIMULATOR, from sample 0) | module | " + " | ".join(consumers) + " |",
           "|---|---|" + "---|" * len(consumers)]
    out += [f"| {f} | {m} | " + " | ".join(cells.get((f, m, c), "-") for c in consumers) + " |" for f, m in keys]
    return "\n".join(out)
