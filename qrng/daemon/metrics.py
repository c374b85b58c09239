"""qrngd's Prometheus metrics (prometheus-client), named by Prometheus conventions: one ``qrng_`` prefix, base
units, ``_total`` on counters, ``_info`` for identity. Values are read from the daemon's state at scrape time (a
collector), except the seed-request latency histogram, which the server observes. The QRNG operations guide's
metrics they carry: M1 entropy estimate, M2 availability (``qrng_source_up``), M3 raw sample rate, M5 health-test
results, M6 latency, M10 consumption by client.

Alert and recording rules built on them: contrib/prometheus/; SLOs: docs/slo.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .server import Daemon

__all__ = ["DaemonCollector", "Metrics"]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class DaemonCollector(Collector):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Any]:
        st = self.daemon.status()
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
        failures = CounterMetricFamily("qrng_health_test_failures", "SP 800-90B 4.4 health-test failures",
                                       labels=["source", "test"])
        contribution = CounterMetricFamily("qrng_source_contribution_bytes",
                                           "Extracted bytes each source contributed to served seeds (credited "
                                           "8 bits per byte, from healthy sources only)", labels=["source"])
        for s in st.get("sources", []):
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
        if not st.get("sources"):
            up.add_metric(["none"], 0.0)
        yield from (info, up, claimed, estimate, raw, credited, failures, contribution)
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


class Metrics:
    """The daemon's registry: its collector and the seed-latency histogram; ``serve(port)`` exposes /metrics."""

    def __init__(self, daemon: Daemon) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(DaemonCollector(daemon))
        self.latency = Histogram("qrng_seed_request_duration_seconds", "Time to answer a SEED request",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)
