"""Game day, every runbook's signals (issue 22): for each runbook, its fault is injected into a running qrngd, a real
Prometheus on loopback scrapes the daemon every second and evaluates contrib/prometheus/qrng-rules.yml as written,
and every signal the runbook's "Signals" section names is looked for where it must appear:

* an alert name (``QrngX``): active in Prometheus (pending or firing: the expression matched the scraped series;
  the ``for`` durations are the promtool unit tests' to check, qrng-rules.test.yml);
* a recording rule (``qrng:...``): Prometheus has a value for it;
* a metric (``qrng_...``): exported by the daemon after the fault; ``up``: Prometheus' own scrape failed;
* a log event (``source.failed``): in the daemon's log;
* a CKR or CKF name: what a PKCS#11 consumer (PyKCS11 through the daemon-mode C module) saw;
* any other quoted text (status text, a label, a message): in the daemon's log, ``qrng status``, the consumer's
  output or the metrics as exported.

A signal a runbook names that its fault does not raise fails the test; so does a runbook with no fault here
(``ELSEWHERE`` names the test that checks the few whose faults need another set-up)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qrng.sources.usbemu import write_control
from qrng.sources.usbemu_init import init_emulator
from qrngd.client import DaemonClient, DaemonUnavailable
from tests.netwait import free_port, wait_for_port

from .test_metrics import scrape

ROOT = Path(__file__).resolve().parents[3]
BOOKS = ROOT / "docs" / "runbooks"
PROMETHEUS = shutil.which("prometheus")

# runbooks whose faults are injected by another game-day test (it checks the runbook's signals too), or whose alert
# is driven by the passing of hours (a certificate's expiry, a stale attestation, an hour-old pool): for those the
# expression's inputs are exported (checked here) and the promtool unit tests drive the clock
ELSEWHERE = {
    "QrngAuditLogNotRecording": "tests/system/daemon/test_gameday_audit_log.py (a full disk in the daemon's namespace)",
    "QrngAttestationExpiringSoon": "time-driven: contrib/prometheus/qrng-rules.test.yml; input exported below",
    "QrngAttestationStale": "time-driven: contrib/prometheus/qrng-rules.test.yml; input exported below",
    "QrngSeedPoolStale": "time-driven: contrib/prometheus/qrng-rules.test.yml; input exported below",
}
TIME_DRIVEN_INPUTS = {"QrngAttestationExpiringSoon": "qrng_attestation_expiry_timestamp_seconds",
                      "QrngAttestationStale": "qrng_attestation_verified_timestamp_seconds",
                      "QrngSeedPoolStale": "qrng_seed_pool_age_seconds"}

CONSUMER = textwrap.dedent("""
    import sys, PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    slot = lib.getSlotList()[0]
    s = lib.openSession(slot)
    for _ in range(int(sys.argv[2])):
        try:
            s.generateRandom(4096)
        except PyKCS11.PyKCS11Error as exc:
            print("C_GenerateRandom:", exc)
    info = lib.getTokenInfo(slot)
    print("label:", info.label.strip(), "model:", info.model.strip())
    if info.flags & PyKCS11.CKF_ERROR_STATE:
        print("flags: CKF_ERROR_STATE")
""")


class Prometheus:
    """A real Prometheus (Debian's) on loopback: job ``qrngd`` (the name the rules expect), scraped and evaluated
    every second, the project's rules loaded as they are."""

    def __init__(self, tmp: Path, target_port: int) -> None:
        self.port = free_port()
        cfg = tmp / "prometheus.yml"
        cfg.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(ROOT / "contrib" / "prometheus" / "qrng-rules.yml")],
            "scrape_configs": [{"job_name": "qrngd", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
        }))
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=error"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 30, alive=lambda: self.proc.poll() is None)

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return json.loads(r.read())["data"]

    def active_alerts(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self._get("/api/v1/alerts")["alerts"]}

    def has_value(self, expr: str) -> bool:
        return bool(self._get("/api/v1/query?query=" + urllib.parse.quote(expr))["result"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


@dataclass
class Evidence:
    prom: Prometheus
    before: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    after: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    exposition: str = ""
    text: str = ""      # the daemon's log, `qrng status`, the consumer's output


def signal_lines(book: str) -> list[str]:
    text = (BOOKS / f"{book}.md").read_text()
    section = text[text.index("## Signals"):text.index("## Immediate action")]
    lines, cur = [], ""
    for ln in section.splitlines()[1:]:
        if ln.startswith("- "):
            if cur:
                lines.append(cur)
            cur = ln[2:]
        elif ln.strip():
            cur += " " + ln.strip()
    return lines + ([cur] if cur else [])


def check_signals(book: str, ev: Evidence, wait_s: float = 20.0) -> list[str]:
    """Every quoted signal of the runbook's Signals section, where it must appear; returns what was checked."""
    checked = []
    for line in signal_lines(book):
        tokens = re.findall(r"`([^`]+)`", line)
        exits = re.search(r"`qrng status` exits (\d+)", line)
        if exits:
            assert f"qrng status exits {exits.group(1)}" in ev.text, (book, line)
            checked.append(f"qrng status exits {exits.group(1)}")
        ckr = [t for t in tokens if t.startswith("CKR_")]
        if len(ckr) > 1 and " or " in line:  # "CKR_A (failed) or CKR_B (unplugged)": the one this fault gives
            assert any(c in ev.text for c in ckr), (book, line, ev.text[-1500:])
            tokens = [t for t in tokens if t not in ckr]
            checked.append(" or ".join(ckr))
        for t in tokens:
            if re.fullmatch(r"Qrng[A-Za-z]+", t):
                deadline = time.monotonic() + wait_s
                while t not in ev.prom.active_alerts():
                    assert time.monotonic() < deadline, f"{book}: alert {t} never became active"
                    time.sleep(0.5)
            elif t.startswith("qrng:"):
                deadline = time.monotonic() + wait_s
                while not ev.prom.has_value(t):
                    assert time.monotonic() < deadline, f"{book}: recording rule {t} has no value"
                    time.sleep(0.5)
            elif t == "up":
                assert ev.prom.has_value('up{job="qrngd"} == 0'), f"{book}: Prometheus still scrapes qrngd"
            elif re.fullmatch(r"qrng_[a-z_]+", t):
                name = t.removesuffix("_total")
                assert any(k.removesuffix("_total") == name for k in ev.after) or (
                    t in ev.exposition), f"{book}: metric {t} not exported after the fault"
            elif t.startswith("journalctl") or t.startswith("/"):
                continue  # where to look, not what to see
            else:
                assert t in ev.text or t in ev.exposition, f"{book}: {t!r} did not appear\n{ev.text[-2000:]}"
            checked.append(t)
    return checked


# --- the faults -------------------------------------------------------------------------------------------------

@dataclass
class World:
    tmp: Path
    emu: Path
    sock: Path
    port: int
    prom: Prometheus | None = None  # the one scraping the daemon, when the test has one
    daemon: subprocess.Popen[str] | None = None
    notes: list[str] = field(default_factory=list)  # what a fault's own consumer saw during the fault

    @property
    def log(self) -> str:
        return self.sock.with_suffix(".log").read_text() if self.sock.with_suffix(".log").exists() else ""


def _start_daemon(w: World, config: str, *extra: str) -> None:
    cfg = w.tmp / "source.yaml"
    cfg.write_text(config)
    log = open(w.sock.with_suffix(".log"), "a")  # noqa: SIM115 - the daemon writes it for its whole life
    w.daemon = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket",
                                 str(w.sock), "--metrics", f"127.0.0.1:{w.port}", *extra], stderr=log, text=True)
    log.close()
    d = w.daemon
    DaemonClient(str(w.sock)).wait(30, alive=lambda: d.poll() is None)
    # a fault injected before Prometheus' first scrape of the daemon is a series born with it: rate() and
    # increase() read nothing (a loaded machine may take seconds to scrape a new target)
    deadline = time.monotonic() + 30
    while w.prom is not None and not w.prom.has_value('up{job="qrngd"} == 1'):
        assert time.monotonic() < deadline, "Prometheus never scraped the daemon"
        time.sleep(0.2)


def _usb(w: World, extra: str = "") -> str:
    return (f"version: 1\nsource: {{type: usb, emulator: {w.emu}}}\nextractor: {{type: sha256}}\n"
            f"health: {{allow_reset: false}}\n{extra}")


def _draw_until_refused(w: World, limit_s: float = 30.0) -> None:
    c = DaemonClient(str(w.sock), "gameday")
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            c.seed(4096)
        except DaemonUnavailable:
            for _ in range(3):  # refused requests: the refused counter's increase
                with contextlib.suppress(DaemonUnavailable):
                    c.seed(32)
            return
    raise AssertionError("the daemon never refused")


def stuck(w: World) -> None:
    _start_daemon(w, _usb(w))
    write_control(w.emu, physics_fault="stuck_at")
    _draw_until_refused(w)


def unplugged(w: World) -> None:
    _start_daemon(w, _usb(w))
    write_control(w.emu, plugged="no")
    _draw_until_refused(w)


def claim_too_high(w: World) -> None:
    _start_daemon(w, "version: 1\nsource: {seed: 12, claimed_min_entropy: 7.5}\n"
                     "assessment: {window_samples: 100000, max_shortfall: 0.5}\nhealth: {alpha_log2: -40}\n")
    _draw_until_refused(w, 60)


def not_assessed(w: World) -> None:
    _start_daemon(w, "version: 1\nsource: {seed: 13}\nassessment: {every_samples: 0}\n")
    DaemonClient(str(w.sock), "gameday").seed(64)


def slow_source(w: World) -> None:
    # a throughput drop of the SIMULATOR (F3): a few thousand samples a second, the pool drained by clients
    _start_daemon(w, "version: 1\nsource: {seed: 14, faults: [{kind: throughput_drop, start: 0, rate: 20000}]}\n"
                     "extractor: {type: sha256}\n", "--pool", "4KiB")
    c = DaemonClient(str(w.sock), "gameday")
    start, prom = time.monotonic(), w.prom
    assert prom is not None
    # at least 4 s of slow requests, and on until Prometheus has scraped enough of them to see the p95 (bounded)
    while time.monotonic() < start + 4 or (
            time.monotonic() < start + 60 and not prom.has_value("qrng:seed_request_duration_seconds:p95_5m > 0.01")):
        with contextlib.suppress(DaemonUnavailable):
            c.seed(4096)


def attestation_tampered(w: World) -> None:
    # the emulator's firmware image changed after its certificate was issued: the digest it proves is not the one
    # the certificate names (docs/usb-protocol.md)
    fw = next(w.emu.glob("firmware*"))
    fw.write_bytes(fw.read_bytes() + b"tampered")
    _start_daemon(w, _usb(w), "--attest-roots", str(w.tmp / "att" / "test-manufacturer-ca.pem"), "--allow-emulator")


def fell_back(w: World) -> None:
    from qrng_pkcs11.build import build_client
    conf = w.tmp / "fallback.conf"
    conf.write_text(f"socket = {w.sock}\nfallback = os\nreseed_ms = 100\n")
    env = {k: v for k, v in os.environ.items() if k != "QRNGD_SOCKET"} | {"QRNGD_CLIENT_CONF": str(conf)}
    from .test_qrngd_operations import FALLBACK_THEN_BACK
    p = subprocess.Popen([sys.executable, "-c", FALLBACK_THEN_BACK, str(build_client())], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdin is not None and p.stdout is not None
    w.notes.append(p.stdout.readline())
    _start_daemon(w, _usb(w))
    p.stdin.write("\n")
    p.stdin.flush()
    w.notes.append(p.stdout.readline())
    p.wait(30)


def killed(w: World) -> None:
    _start_daemon(w, _usb(w))  # scraped while up
    assert w.daemon is not None
    w.daemon.send_signal(signal.SIGKILL)
    w.daemon.wait(10)


FAULTS: dict[str, Callable[[World], None]] = {
    "QrngHealthTestFailure": stuck, "QrngSourceUnhealthy": unplugged, "QrngRequestsRefused": stuck,
    "QrngEntropyBelowClaim": claim_too_high, "QrngEntropyEstimateMissing": not_assessed,
    "QrngSeedLatencyHigh": slow_source, "QrngAttestationInvalid": attestation_tampered, "QrngDaemonDown": killed,
    "QrngClientFellBack": fell_back,
}


def test_every_runbook_has_its_fault_here_or_elsewhere() -> None:
    from qrng.gameday import RUNBOOK_FAULTS  # what docs/gameday.md says of each
    books = {p.stem for p in BOOKS.glob("Qrng*.md")}
    assert books == set(FAULTS) | set(ELSEWHERE) == set(RUNBOOK_FAULTS), books ^ (set(FAULTS) | set(ELSEWHERE))


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus package is installed by make provision")
@pytest.mark.parametrize("book", sorted(FAULTS))
def test_a_fault_raises_every_signal_its_runbook_names(tmp_path: Path, book: str) -> None:
    from qrng_pkcs11.build import build_client
    module = build_client()
    emu = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    port = free_port()
    prom = Prometheus(tmp_path, port)
    w = World(tmp_path, Path(emu), tmp_path / "q.sock", port, prom)
    try:
        FAULTS[book](w)
        ev = Evidence(prom)
        with contextlib.suppress(OSError):
            ev.after = scrape(w.port)
            with urllib.request.urlopen(f"http://127.0.0.1:{w.port}/metrics", timeout=10) as r:
                ev.exposition = r.read().decode()
        status = subprocess.run([sys.executable, "-m", "qrng_cli", "status", "--socket", str(w.sock)],
                                capture_output=True, text=True, timeout=60)
        conf = tmp_path / "client.conf"
        conf.write_text(f"socket = {w.sock}\nreseed_ms = 100\n")
        env = {k: v for k, v in os.environ.items() if k != "QRNGD_SOCKET"} | {"QRNGD_CLIENT_CONF": str(conf)}
        consumer = subprocess.run([sys.executable, "-c", CONSUMER, str(module), "3"], capture_output=True, text=True,
                                  timeout=60, env=env)
        ev.text = "\n".join([w.log, *w.notes, status.stdout, status.stderr, f"qrng status exits {status.returncode}",
                             consumer.stdout, consumer.stderr])
        checked = check_signals(book, ev, wait_s=30.0)
        print(book, "checked:", checked)
        assert checked, book
    finally:
        prom.close()
        if w.daemon is not None and w.daemon.poll() is None:
            w.daemon.terminate()
            w.daemon.wait(20)


@pytest.mark.parametrize("book", sorted(TIME_DRIVEN_INPUTS))
def test_a_time_driven_alerts_input_is_exported(tmp_path: Path, book: str) -> None:
    """The hours-long alerts: their input series is exported by a daemon with an attested device and a pool."""
    emu = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    w = World(tmp_path, Path(emu), tmp_path / "q.sock", free_port())
    try:
        _start_daemon(w, _usb(w), "--attest-roots", str(tmp_path / "att" / "test-manufacturer-ca.pem"),
                      "--allow-emulator")
        DaemonClient(str(w.sock), "gameday").seed(64)
        m = scrape(w.port)
        assert m.get(TIME_DRIVEN_INPUTS[book]), (book, sorted(m))
        assert TIME_DRIVEN_INPUTS[book] in "".join(signal_lines(book))  # the runbook names the input it alerts on
    finally:
        if w.daemon is not None:
            w.daemon.terminate()
            w.daemon.wait(20)
