"""Game day, the signals (issue 22): a stuck-at fault injected into the USB EMULATOR under a running qrngd, and
every signal the runbooks QrngHealthTestFailure and QrngSourceUnhealthy name checked where it appears: the metrics
scraped from the daemon, the alerts those scraped values raise in Prometheus' rule engine (promtool test rules,
fed the series exactly as scraped before and after the fault), the `source.failed` event in the daemon's log,
`qrng status` (UNHEALTHY, exit 3), and the SEED answer (refused: fail closed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qrng.sources.usbemu import init_emulator, write_control
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


def _promtool_case(before: dict, after: dict, source: str) -> str:
    """A promtool test: 3 minutes of the scraped healthy values, then 6 of the scraped faulty ones."""
    def values(name: str, default: float) -> str:
        b = next((v for lab, v in _series(before, name) if lab.get("source") == source), default)
        a = next((v for lab, v in _series(after, name) if lab.get("source") == source), default)
        return " ".join([f"{b:g}"] * 3 + [f"{a:g}"] * 6)
    failures = {lab["test"]: v for lab, v in _series(after, "qrng_health_test_failures_total")
                if lab.get("source") == source}
    fired = max(failures, key=lambda k: failures[k])
    b_fail = next((v for lab, v in _series(before, "qrng_health_test_failures_total")
                   if lab.get("source") == source and lab["test"] == fired), 0.0)
    fail_values = " ".join([f"{b_fail:g}"] * 3 + [f"{failures[fired]:g}"] * 6)
    return json.dumps({
        "rule_files": [str(RULES / "qrng-rules.yml")], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [
            {"series": f'qrng_source_up{{source="{source}"}}', "values": values("qrng_source_up", 1)},
            {"series": f'qrng_health_test_failures_total{{source="{source}", test="{fired}"}}',
             "values": fail_values}],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "QrngSourceUnhealthy", "exp_alerts": []},
                {"eval_time": "2m", "alertname": "QrngHealthTestFailure", "exp_alerts": []},
                {"eval_time": "6m", "alertname": "QrngSourceUnhealthy", "exp_alerts": [
                    {"exp_labels": {"severity": "page", "source": source},
                     "exp_annotations": _annotations("QrngSourceUnhealthy", {"source": source})}]},
                {"eval_time": "6m", "alertname": "QrngHealthTestFailure", "exp_alerts": [
                    {"exp_labels": {"severity": "page", "source": source, "test": fired},
                     "exp_annotations": _annotations("QrngHealthTestFailure", {"source": source, "test": fired})}]}]}]})


@pytest.mark.skipif(PROMTOOL is None, reason="Debian's prometheus package (promtool) is installed by make provision")
def test_a_stuck_device_raises_every_signal_its_runbooks_name(tmp_path):
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
        write_control(folder, physics_fault="stuck_at")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                client.seed(48)
            except DaemonUnavailable:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the stuck device was never refused")
        after = scrape(port)
        assert [v for lab, v in after["qrng_source_up"] if lab["source"] == source] == [0.0]
        assert sum(v for lab, v in after["qrng_health_test_failures_total"] if lab["source"] == source) > \
            sum(v for lab, v in before["qrng_health_test_failures_total"] if lab["source"] == source)
        status = subprocess.run([sys.executable, "-m", "qrng_cli", "status", "--socket", str(sock)],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 3 and "UNHEALTHY" in status.stdout, status.stdout + status.stderr
        case = tmp_path / "alerts.test.yml"
        case.write_text(_promtool_case(before, after, source))
        r = subprocess.run([PROMTOOL, "test", "rules", str(case)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    finally:
        stop(p)
        log.close()
    daemon_log = (tmp_path / "qrngd.log").read_text()
    assert re.search(r"source\.failed .*(RCT|APT)", daemon_log), daemon_log[-2000:]
    # the signals these two runbooks name are the ones checked above
    named = {"QrngHealthTestFailure": ("`source.failed`", "`qrng_health_test_failures_total`", "`CKR_DEVICE_ERROR`"),
             "QrngSourceUnhealthy": ("`source.failed`", "`qrng_source_up`", "`qrng status`")}
    for book, signals in named.items():
        text = (BOOKS / f"{book}.md").read_text()
        assert all(sig in text for sig in signals), (book, [sig for sig in signals if sig not in text])
