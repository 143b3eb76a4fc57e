"""Per-process counters and the Prometheus exposition, with bounded label sets."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Labels take only these values, so the series count stays fixed at any scale.
KNOWN_CODES = (
    "PREKEYS_EXHAUSTED",
    "BUNDLE_STALE",
    "DEVICE_REVOKED",
    "BAD_SIGNATURE",
    "USER_BLOCKED",
    "BLOCKED_BY_RECIPIENT",
    "RATE_LIMITED",
    "DM_DISABLED",
)
LATENCY_WINDOW = 2000


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_errors = Counter(
            "e2ee_http_errors", "HTTP error responses", ["status", "code"], registry=r
        )
        self.messages_sent = Counter("e2ee_messages_sent", "Messages stored", registry=r)
        self.claims = Counter("e2ee_prekey_claims", "One-time prekeys handed out", registry=r)
        self.sse_connects = Counter("e2ee_sse_connects", "SSE streams opened", registry=r)
        self.sse_disconnects = Counter(
            "e2ee_sse_disconnects", "SSE streams closed by the client", registry=r
        )
        self.sse_failures = Counter(
            "e2ee_sse_failures", "SSE streams that ended with a server error", registry=r
        )
        self.sse_connections = Gauge("e2ee_sse_connections", "Open SSE streams", registry=r)
        self.publish_failures = Counter(
            "e2ee_relay_publish_failures", "Publishes that Redis did not take", registry=r
        )
        self.redis_up = Gauge("redis_up", "1 when this instance reaches Redis", registry=r)
        self.relay_lag = Gauge("e2ee_relay_lag", "1 while SSE delivery lags", registry=r)
        self.pubsub_lag = Gauge(
            "e2ee_pubsub_lag_seconds", "Round trip of the relay's pub/sub probe", registry=r
        )
        self.delivery_latency = Histogram(
            "e2ee_delivery_latency_seconds",
            "From storing a message to pushing it on a stream",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.shared = SharedGauges()
        r.register(self.shared)
        self.started = time.time()

    def error(self, status: int, code: str | None) -> None:
        label = code if code in KNOWN_CODES else "none"
        self.http_errors.labels(status=str(status), code=label).inc()

    def observe_delivery(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.delivery_latency.observe(seconds)
        self._latencies.append(seconds * 1000.0)

    def latency_summary(self) -> dict[str, Any]:
        values = sorted(self._latencies)
        return {
            "p95": _percentile(values, 0.95),
            "p99": _percentile(values, 0.99),
            "samples": len(values),
        }

    def errors_summary(self) -> dict[str, dict[str, float]]:
        by_status: dict[str, float] = {}
        by_code: dict[str, float] = {}
        for metric in self.http_errors.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                status, code = sample.labels["status"], sample.labels["code"]
                by_status[status] = by_status.get(status, 0) + sample.value
                if code != "none":
                    by_code[code] = by_code.get(code, 0) + sample.value
        return {"by_status": by_status, "by_code": by_code}

    def sse_summary(self) -> dict[str, float]:
        connects = _value(self.sse_connects)
        disconnects = _value(self.sse_disconnects)
        failures = _value(self.sse_failures)
        return {
            "connections": _value(self.sse_connections),
            "connects_total": connects,
            "disconnects_total": disconnects,
            "failures_total": failures,
            "disconnect_rate": disconnects / connects if connects else 0.0,
            "failure_rate": failures / connects if connects else 0.0,
        }


def _value(metric: Counter | Gauge) -> float:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") or sample.name == family.name:
                return float(sample.value)
    return 0.0


class SharedGauges(Collector):
    """Gauges computed from PostgreSQL (shared by all instances), refreshed before a scrape."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, float]] = {}

    def update(self, values: dict[str, tuple[str, float]]) -> None:
        self.values = dict(values)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (help_text, value) in sorted(self.values.items()):
            yield GaugeMetricFamily(name, help_text, value=value)

    def describe(self) -> list[GaugeMetricFamily]:
        return []
