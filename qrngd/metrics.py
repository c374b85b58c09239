"""qrngd's Prometheus metrics (prometheus-client), named by Prometheus conventions: one ``qrng_`` prefix, base
units, ``_total`` on counters, ``_info`` for identity. Values are read from the daemon's state at scrape time (a
collector), except the seed-request latency histogram, which the server observes. The QRNG operations guide's
metrics they carry: M1 entropy estimate, M2 availability (``qrng_source_up``), M3 raw sample rate, M5 health-test
results, M6 latency, M7 seed freshness (pool age), M8 attestation validity and expiry, M10 consumption by client;
and the fallback state of clients, the kernel feed, and the audit log's size and last checkpoint.

Alert and recording rules built on them: contrib/prometheus/; SLOs: docs/slo.md.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .state import Daemon

__all__ = ["DaemonCollector", "Metrics"]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class DaemonCollector(Collector):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Any]:
        st = self.daemon.status()
        sources = st.get("sources", [])
        yield from _identity_and_health(sources)
        yield from _flow_and_attestation(sources)
        yield from _daemon_families(st)


def _identity_and_health(sources: list[dict[str, Any]]) -> Iterator[Any]:
    """Per source: identity, up, claimed and estimated entropy, raw samples, credit, test failures, contribution."""
    info = InfoMetricFamily("qrng_source", "The entropy source's identity", labels=["source"])
    up = GaugeMetricFamily("qrng_source_up", "1 when the source passes its health tests and serves, else 0",
                           labels=["source"])
    claimed = GaugeMetricFamily("qrng_entropy_claimed_bits_per_sample", "Claimed min-entropy per sample",
                                labels=["source"])
    estimate = GaugeMetricFamily("qrng_entropy_estimate_bits_per_sample",
                                 "Latest SP 800-90B estimate of min-entropy per sample (NaN before the first)",
                                 labels=["source"])
    raw = CounterMetricFamily("qrng_raw_samples", "Raw samples read from the source and health-tested",
                              labels=["source"])
    credited = CounterMetricFamily("qrng_entropy_credited_bits", "Entropy credited to extraction, bits",
                                   labels=["source"])
    failures = CounterMetricFamily("qrng_health_test_failures", "SP 800-90B 4.4 health-test failures, the host's "
                                   "and those the device reports of its own tests",
                                   labels=["source", "test"])
    contribution = CounterMetricFamily("qrng_source_contribution_bytes",
                                       "Extracted bytes each source contributed to served seeds (credited "
                                       "8 bits per byte, from healthy sources only)", labels=["source"])
    for s in sources:
        name = s["identity"]
        info.add_metric([name], {"label": s["label"], "simulator": str(s["simulator"]).lower()})
        up.add_metric([name], 1.0 if s["state"] == "healthy" else 0.0)
        contribution.add_metric([name], float(s.get("contributed_bytes", 0)))
        claimed.add_metric([name], float(s["claimed_min_entropy"]))
        h = s.get("estimate")
        estimate.add_metric([name], float(h) if h is not None else math.nan)
        raw.add_metric([name], float(s["raw_samples"]))
        credited.add_metric([name], float(s["entropy_credited_bits"]))
        failures.add_metric([name, "rct"], float(s["rct_failures"]))
        failures.add_metric([name, "apt"], float(s["apt_failures"]))
    if not sources:
        up.add_metric(["none"], 0.0)
    yield from (info, up, claimed, estimate, raw, credited, failures, contribution)


def _flow_and_attestation(sources: list[dict[str, Any]]) -> Iterator[Any]:
    """Per source: what became of every extracted byte, the pool, the raw ring and the device's attestation."""
    extracted = CounterMetricFamily("qrng_extracted_bytes", "Extractor output, bytes (served, pooled, fed to "
                                    "the kernel, discarded or dropped: every byte accounted)", labels=["source"])
    fate = CounterMetricFamily("qrng_extracted_disposed_bytes", "Extracted bytes not served, by what became of "
                               "them: discarded (not needed), dropped (pooled when the source failed), kernel "
                               "(fed to the kernel's pool)", labels=["source", "fate"])
    pooled = GaugeMetricFamily("qrng_pool_bytes", "Extracted output ready to serve", labels=["source"])
    retained = GaugeMetricFamily("qrng_retained_raw_bytes", "Raw samples kept in the on-disk ring",
                                 labels=["source"])
    att_valid = GaugeMetricFamily("qrng_attestation_valid", "1 when the device's last attestation verified, "
                                  "0 when it failed (absent for sources that cannot attest)", labels=["source"])
    att_expiry = GaugeMetricFamily("qrng_attestation_expiry_timestamp_seconds",
                                   "When the attested device certificate expires (Unix time)", labels=["source"])
    att_time = GaugeMetricFamily("qrng_attestation_verified_timestamp_seconds",
                                 "When the device was last attested (Unix time)", labels=["source"])
    for s in sources:
        name = s["identity"]
        extracted.add_metric([name], float(s.get("received_bytes", 0)))
        for fate_name, key in (("discarded", "discarded_bytes"), ("dropped", "dropped_bytes"),
                               ("kernel", "kernel_fed_bytes")):
            fate.add_metric([name, fate_name], float(s.get(key, 0)))
        pooled.add_metric([name], float(s.get("pooled_bytes", 0)))
        retained.add_metric([name], float(s.get("retained_bytes", 0)))
        att = s.get("attestation")
        if att:
            att_valid.add_metric([name], 1.0 if att.get("valid") else 0.0)
            att_time.add_metric([name], float(att.get("verified_at", 0.0)))
            if att.get("not_after"):
                att_expiry.add_metric([name], float(att["not_after"]))
    yield from (extracted, fate, pooled, retained, att_valid, att_expiry, att_time)


def _daemon_families(st: dict[str, Any]) -> Iterator[Any]:
    """The daemon as a whole: health, served and refused seeds, client fallbacks, pool age, kernel feed, audit log."""
    healthy = GaugeMetricFamily("qrng_daemon_healthy", "1 when the daemon can serve seed material, else 0")
    healthy.add_metric([], 1.0 if st["state"] == "healthy" else 0.0)
    yield healthy
    served = CounterMetricFamily("qrng_seed_bytes_served", "Seed material served, bytes", labels=["client"])
    for client, n in sorted(st.get("clients", {}).items()):
        served.add_metric([client], float(n))
    yield served
    refused = CounterMetricFamily("qrng_seed_requests_refused", "SEED requests answered UNHEALTHY (fail closed)")
    refused.add_metric([], float(st.get("refused", 0)))
    yield refused
    fallback = CounterMetricFamily("qrng_client_fallback_seeds", "Seeds PKCS#11 modules took from their named "
                                   "fallback while this daemon could not serve them (reported when they "
                                   "reconnect)", labels=["client"])
    for client, n in sorted(st.get("client_fallback_seeds", {}).items()):
        fallback.add_metric([client], float(n))
    yield fallback
    age = GaugeMetricFamily("qrng_seed_pool_age_seconds", "Age of the oldest extracted output waiting in a "
                            "pool (seed freshness, M7)", labels=["source"])
    for s in st.get("sources", []):
        if s.get("pool_age_s") is not None:
            age.add_metric([s["identity"]], float(s["pool_age_s"]))
    yield age
    feed = st.get("kernel_feed")
    if feed is not None:
        fed = CounterMetricFamily("qrng_kernel_fed_bytes", "Extracted output added to the kernel's pool "
                                  "(RNDADDENTROPY) or written to rngd's FIFO", labels=["kind"])
        fed.add_metric([feed["kind"]], float(feed["fed_bytes"]))
        yield fed
    audit = st.get("audit_log")
    if audit is not None:
        entries = GaugeMetricFamily("qrng_audit_log_entries", "Entries in the daemon's signed audit log")
        entries.add_metric([], float(audit["entries"]))
        yield entries
        writable = GaugeMetricFamily("qrng_audit_log_writable", "1 while the audit log takes appends; 0 after one "
                                     "was refused (full or read-only disk) until the held events are written")
        writable.add_metric([], 1.0 if audit.get("writable", True) else 0.0)
        yield writable
        errors = CounterMetricFamily("qrng_audit_log_write_errors", "Appends to the audit log the file system "
                                     "refused (each retried)")
        errors.add_metric([], float(audit.get("write_errors", 0)))
        yield errors
        held = GaugeMetricFamily("qrng_audit_log_held_events", "Events held in memory until the audit log takes "
                                 "appends again")
        held.add_metric([], float(audit.get("held_events", 0)))
        yield held
        dropped = CounterMetricFamily("qrng_audit_log_dropped_events", "Held events dropped (more than qrngd "
                                      "holds while the log refuses appends)")
        dropped.add_metric([], float(audit.get("dropped_events", 0)))
        yield dropped
        if audit.get("last_checkpoint"):
            cp = GaugeMetricFamily("qrng_audit_checkpoint_timestamp_seconds",
                                   "When the audit log's latest checkpoint was signed (Unix time)")
            cp.add_metric([], float(audit["last_checkpoint"]))
            yield cp


class Metrics:
    """The daemon's registry: its collector and the seed-latency histogram; ``serve(port)`` exposes /metrics."""

    def __init__(self, daemon: Daemon) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(DaemonCollector(daemon))
        self.latency = Histogram("qrng_seed_request_duration_seconds", "Time to answer a SEED request",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)

    def serve(self, address: str, port: int) -> None:
        """/metrics in the Prometheus text format (prometheus_client's exposition), on a server with a connection
        cap and read timeouts (qrng.httpbound): an unprivileged local user cannot exhaust the daemon's descriptors
        or threads through the metrics port (prometheus_client's own server has neither)."""
        import threading
        from http.server import BaseHTTPRequestHandler

        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from qrng.httpbound import BoundedHTTPServer
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                pass

        class Server(BoundedHTTPServer):
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        server = Server((address, port), Handler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
