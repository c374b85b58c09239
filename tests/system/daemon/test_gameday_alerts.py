"""Game day, the signals (issue 22): faults injected into the USB EMULATOR under a running qrngd (a stuck device,
removal, I/O errors, stalls), and every signal the runbooks QrngHealthTestFailure and QrngSourceUnhealthy name
checked where it appears: the metrics scraped from the daemon, the alerts those scraped values raise in
Prometheus' rule engine (promtool test rules, fed the series exactly as scraped before and after the fault; the
health-test alert for the stuck device only), the `source.failed` event in the daemon's log, `qrng status`
(UNHEALTHY, exit 3), and the SEED answer (refused: fail closed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qrng.sources.usbemu import write_control
from qrng.sources.usbemu_init import init_emulator
from qrngd.client import DaemonClient, DaemonUnavailable
from tests.netwait import free_port

from .test_metrics import RULES, scrape
from .test_qrngd import stop

PROMTOOL = shutil.which("promtool")
BOOKS = Path(__file__).resolve().parents[3] / "docs" / "runbooks"


def _series(metrics: dict, name: str) -> list[tuple[dict[str, str], float]]:
    return metrics.get(name, [])


def _annotations(alert: str, labels: dict[str, str]) -> dict[str, str]:
    """The alert's annotations as the rules file writes them, with its labels filled in."""
    import yaml
    rules = yaml.safe_load((RULES / "qrng-rules.yml").read_text())
    ann = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert)["annotations"]
    out = {}
    for k, v in ann.items():
        for name, value in labels.items():
            v = v.replace("{{ $labels." + name + " }}", value)
        out[k] = v
    return out


def _promtool_case(before: dict, after: dict, source: str, health_failure: bool) -> str:
    """A promtool test: 3 minutes of the scraped healthy values, then 6 of the scraped faulty ones; the health-test
    alert is expected exactly when the fault is one a health test sees."""
    def values(name: str, default: float, **labels: str) -> str:
        def pick(m: dict) -> float:
            return next((v for lab, v in _series(m, name) if lab.get("source") == source
                         and all(lab.get(k) == x for k, x in labels.items())), default)
        return " ".join([f"{pick(before):g}"] * 3 + [f"{pick(after):g}"] * 6)
    series = [{"series": f'qrng_source_up{{source="{source}"}}', "values": values("qrng_source_up", 1)}]
    tests = [{"eval_time": "2m", "alertname": "QrngSourceUnhealthy", "exp_alerts": []},
             {"eval_time": "6m", "alertname": "QrngSourceUnhealthy", "exp_alerts": [
                 {"exp_labels": {"severity": "page", "source": source},
                  "exp_annotations": _annotations("QrngSourceUnhealthy", {"source": source})}]}]
    fired = []  # one entry per alert name and time: promtool compares every alert of that name at that time
    for test in ("rct", "apt"):
        fails = values("qrng_health_test_failures_total", 0, test=test)
        series.append({"series": f'qrng_health_test_failures_total{{source="{source}", test="{test}"}}',
                       "values": fails})
        if fails.split()[-1] != fails.split()[0]:
            fired.append({"exp_labels": {"severity": "page", "source": source, "test": test},
                          "exp_annotations": _annotations("QrngHealthTestFailure", {"source": source, "test": test})})
    assert bool(fired) == health_failure, f"failures counted: {bool(fired)}; a health test sees it: {health_failure}"
    tests.append({"eval_time": "6m", "alertname": "QrngHealthTestFailure", "exp_alerts": fired})
    return json.dumps({"rule_files": [str(RULES / "qrng-rules.yml")], "evaluation_interval": "1m",
                       "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests}]})


# (emulator control key, value, whether a health test sees it): the fault, and which alerts its runbooks promise
FAULTS = [("physics_fault", "stuck_at", True), ("plugged", "no", False), ("fault", "eio", False),
          ("fault", "stall", False)]


@pytest.mark.skipif(PROMTOOL is None, reason="Debian's prometheus package (promtool) is installed by make provision")
@pytest.mark.parametrize(("key", "value", "health"), FAULTS, ids=[f"{k}={v}" for k, v, _ in FAULTS])
def test_a_fault_raises_every_signal_its_runbooks_name(tmp_path, key, value, health):
    folder = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    cfg = tmp_path / "usb.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: usb, emulator: {folder}}}\nextractor: {{type: sha256}}\n"
                   "health: {allow_reset: false}\n")  # the failure stays, as a broken device's would
    sock, port = tmp_path / "q.sock", free_port()
    log = open(tmp_path / "qrngd.log", "w")  # noqa: SIM115 - the daemon writes it for its whole life
    p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket", str(sock),
                          "--metrics", f"127.0.0.1:{port}"], stderr=log, text=True)
    try:
        client = DaemonClient(str(sock), "gameday")
        client.wait(30, alive=lambda: p.poll() is None)
        assert len(client.seed(48)) == 48
        before = scrape(port)
        source = next(lab["source"] for lab, v in before["qrng_source_up"] if v == 1.0)
        write_control(folder, **{key: value})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # draw fast: a bus fault shows at the next read, once the pool drains
            try:
                client.seed(4096)
            except DaemonUnavailable:
                break
        else:
            pytest.fail("the stuck device was never refused")
        after = scrape(port)
        assert [v for lab, v in after["qrng_source_up"] if lab["source"] == source] == [0.0]
        counted = sum(v for lab, v in after["qrng_health_test_failures_total"] if lab["source"] == source) - \
            sum(v for lab, v in before["qrng_health_test_failures_total"] if lab["source"] == source)
        assert (counted > 0) == health, counted
        status = subprocess.run([sys.executable, "-m", "qrng_cli", "status", "--socket", str(sock)],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 3 and "UNHEALTHY" in status.stdout, status.stdout + status.stderr
        case = tmp_path / "alerts.test.yml"
        case.write_text(_promtool_case(before, after, source, health))
        r = subprocess.run([PROMTOOL, "test", "rules", str(case)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    finally:
        stop(p)
        log.close()
    daemon_log = (tmp_path / "qrngd.log").read_text()
    assert re.search(r"source\.failed ", daemon_log), daemon_log[-2000:]
    if health:
        assert re.search(r"source\.failed .*(RCT|APT)", daemon_log), daemon_log[-2000:]
    # the signals these two runbooks name are the ones checked above
    named = {"QrngHealthTestFailure": ("`source.failed`", "`qrng_health_test_failures_total`", "`CKR_DEVICE_ERROR`"),
             "QrngSourceUnhealthy": ("`source.failed`", "`qrng_source_up`", "`qrng status`")}
    for book, signals in named.items():
        text = (BOOKS / f"{book}.md").read_text()
        assert all(sig in text for sig in signals), (book, [sig for sig in signals if sig not in text])
