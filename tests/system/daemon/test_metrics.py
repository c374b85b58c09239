"""qrngd's Prometheus metrics, scraped over HTTP from a running daemon and parsed with prometheus-client's own
parser; the alert and recording rules checked and unit-tested with Debian's promtool; every metric the rules and
the Grafana dashboard use is one the daemon exports (or a recording rule, or Prometheus' own `up`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qrng.sources.usbemu import write_control
from qrng.sources.usbemu_init import init_emulator
from qrngd.client import DaemonClient
from tests.netwait import free_port

from .test_qrngd import stop

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "contrib" / "prometheus"
PROMTOOL = shutil.which("promtool")



def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out.setdefault(fam.name, [])  # a family with no sample yet (no client fell back) is exported all the same
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture()
def daemon(tmp_path):
    folder = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    cfg = tmp_path / "usb.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: usb, emulator: {folder}}}\n")
    sock, port = tmp_path / "qrngd.sock", free_port()
    key = tmp_path / "log.key"
    subprocess.run([sys.executable, "-m", "qrng_cli", "audit", "keygen", "qrngd.example/metrics", "--out", str(key)],
                   check=True, capture_output=True)
    p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket", str(sock),
                          "--metrics", f"127.0.0.1:{port}", "--attest-roots", str(tmp_path / "att" /
                                                                               "test-manufacturer-ca.pem"),
                          "--allow-emulator", "--audit-log", str(tmp_path / "audit.log"), "--audit-key", str(key),
                          "--feed-fifo", str(tmp_path / "rngd.fifo")], stderr=subprocess.DEVNULL, text=True)
    DaemonClient(str(sock)).wait(30, alive=lambda: p.poll() is None)
    yield folder, sock, port
    stop(p)


def test_metrics_follow_what_was_served_and_the_source(daemon):
    folder, sock, port = daemon
    c = DaemonClient(str(sock), "metrics-test")
    for _ in range(25):
        c.seed(64)
    m = scrape(port)
    assert m["qrng_seed_bytes_served_total"] == [({"client": "metrics-test"}, 1600.0)]
    assert m["qrng_source_up"][0][1] == 1.0 and m["qrng_daemon_healthy"] == [({}, 1.0)]
    info = m["qrng_source_info"][0][0]
    assert info["simulator"] == "true" and "EMULATOR" in info["label"]
    assert m["qrng_seed_request_duration_seconds_count"][0][1] == 25.0
    assert m["qrng_raw_samples_total"][0][1] > 0 and m["qrng_entropy_claimed_bits_per_sample"][0][1] == 4.0
    assert {lab["test"] for lab, _ in m["qrng_health_test_failures_total"]} == {"rct", "apt"}
    # M8 attestation, M7 pool age, the audit log, every extracted byte accounted by fate
    assert m["qrng_attestation_valid"][0][1] == 1.0
    assert m["qrng_attestation_expiry_timestamp_seconds"][0][1] > time.time() + 86400
    assert time.time() - 60 < m["qrng_attestation_verified_timestamp_seconds"][0][1] <= time.time()
    assert m["qrng_audit_log_entries"][0][1] >= 2 and m["qrng_audit_checkpoint_timestamp_seconds"][0][1] > 0
    assert m["qrng_seed_pool_age_seconds"][0][1] >= 0
    fates = {lab["fate"]: v for lab, v in m["qrng_extracted_disposed_bytes_total"]}
    assert set(fates) == {"discarded", "dropped", "kernel"}
    assert m["qrng_extracted_bytes_total"][0][1] == 1600 + m["qrng_pool_bytes"][0][1] + sum(fates.values())
    write_control(folder, plugged="no")
    time.sleep(0.2)
    m = scrape(port)
    assert m["qrng_daemon_healthy"] == [({}, 0.0)] and m["qrng_source_up"][0][1] == 0.0
    write_control(folder, plugged="yes")


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(qrng[:_][a-zA-Z0-9_:]+|up)\b", expr))


def test_rules_and_dashboard_use_only_exported_metrics(daemon):
    import yaml
    _, sock, port = daemon
    DaemonClient(str(sock), "x").seed(8)
    exported = {re.sub(r"_(bucket|count|sum|created)$", "", n) for n in scrape(port)}
    exported |= {n.removesuffix("_info") for n in exported}
    rules = yaml.safe_load((RULES / "qrng-rules.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((ROOT / "contrib" / "grafana" / "qrng-dashboard.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for expr in exprs:
        for name in _metric_names(expr):
            assert name in exported or name in recorded or name == "up" or \
                re.sub(r"_(bucket|total)$", "", name) in exported, f"{expr}: {name} is not exported"


@pytest.mark.skipif(PROMTOOL is None, reason="Debian's prometheus package (promtool) is installed by make provision")
def test_promtool_checks_and_unit_tests_the_rules():
    r = subprocess.run([PROMTOOL, "check", "rules", "qrng-rules.yml"], cwd=RULES, capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS: 18 rules found" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([PROMTOOL, "test", "rules", "qrng-rules.test.yml"], cwd=RULES, capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="Debian's prometheus package (promtool) is installed by make provision")
def test_the_example_prometheus_configuration_is_valid_and_names_the_job_the_rules_expect():
    """contrib/prometheus/prometheus.yml (issue 22, on-call): promtool accepts it with the shipped rules, and its
    job is the one the rules' up{job=...} selects."""
    r = subprocess.run([PROMTOOL, "check", "config", "prometheus.yml"], cwd=RULES, capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout + r.stderr, r.stdout + r.stderr
    jobs = re.findall(r"job_name: (\S+)", (RULES / "prometheus.yml").read_text())
    assert jobs == ["qrngd"] and all(f'job="{j}"' in (RULES / "qrng-rules.yml").read_text() for j in jobs)
