"""Per-process counters and the Prometheus exposition, with bounded label sets."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from e2ee_ops import metrics as m

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
            m.HTTP_ERRORS, "HTTP error responses", ["status", "code"], registry=r
        )
        self.messages_sent = Counter(m.MESSAGES_SENT, "Messages stored", registry=r)
        self.claims = Counter(m.PREKEY_CLAIMS, "One-time prekeys handed out", registry=r)
        self.sse_connects = Counter(m.SSE_CONNECTS, "SSE streams opened", registry=r)
        self.sse_disconnects = Counter(
            m.SSE_DISCONNECTS, "SSE streams closed by the client", registry=r
        )
        self.sse_failures = Counter(
            m.SSE_FAILURES, "SSE streams that ended with a server error", registry=r
        )
        self.sse_connections = Gauge(m.SSE_CONNECTIONS, "Open SSE streams", registry=r)
        self.publish_failures = Counter(
            m.RELAY_PUBLISH_FAILURES, "Publishes that Redis did not take", registry=r
        )
        self.redis_up = Gauge(m.REDIS_UP, "1 when this instance reaches Redis", registry=r)
        self.relay_lag = Gauge(m.RELAY_LAG, "1 while SSE delivery lags", registry=r)
        self.redis_unavailable = Gauge(
            m.REDIS_UNAVAILABLE_SECONDS,
            "How long this instance has been without Redis, by its own record (0 when it has it)",
            registry=r,
        )
        self.pubsub_lag = Gauge(
            m.PUBSUB_LAG_SECONDS, "Round trip of the relay's pub/sub probe", registry=r
        )
        self.delivery_latency = Histogram(
            m.DELIVERY_LATENCY_SECONDS,
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
