"""Runbook: Monitoring and Alerting Setup, drawn: a Grafana dashboard (JSON, ready for
file provisioning) with a panel per runbook metric, its thresholds drawn as lines from
the same `Thresholds` (and the same queries) as `alerts rules`.

Each query lists the metrics it reads, as the reference server exports them on
`/metrics`; a test reads a live `/metrics` and fails when a panel names anything else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from e2ee_ops import metrics as m
from e2ee_ops.config import Thresholds
from e2ee_ops.procedures.alerts import DAY, DELIVERY_P99, RATE_WINDOW, SSE_FAILURE_RATE

UID = "e2ee-dm-runbook"
GREEN, ORANGE, RED = "green", "orange", "red"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    metrics: tuple[str, ...]  # every metric `expr` reads, as /metrics names its samples


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"  # Grafana's unit ids: s, percentunit, reqps, short, d
    warn: float | None = None
    crit: float | None = None
    higher_is_worse: bool = True


def panels(t: Thresholds) -> list[Panel]:
    """The runbook's metrics, one panel each, thresholds from `t`."""
    w = RATE_WINDOW
    return [
        Panel(
            "Delivery latency p99",
            "99th percentile of store-to-SSE-push latency over 5 minutes; warning above "
            "thresholds.delivery_p99_ms.",
            (Query(DELIVERY_P99, "p99 {{job}}", ("e2ee_delivery_latency_seconds_bucket",)),),
            unit="s",
            warn=t.delivery_p99_ms / 1000.0,
        ),
        Panel(
            "SSE failure rate",
            "Share of SSE streams ending in a server error; critical above "
            "thresholds.sse_failure_rate.",
            (
                Query(
                    SSE_FAILURE_RATE,
                    "{{instance}}",
                    ("e2ee_sse_failures_total", "e2ee_sse_connects_total"),
                ),
            ),
            unit="percentunit",
            crit=t.sse_failure_rate,
        ),
        Panel(
            "Redis pub/sub lag",
            "Round trip of each instance's pub/sub probe; warning above "
            "thresholds.pubsub_lag_seconds.",
            (Query("e2ee_pubsub_lag_seconds", "{{instance}}", ("e2ee_pubsub_lag_seconds",)),),
            unit="s",
            warn=t.pubsub_lag_seconds,
        ),
        Panel(
            "Redis up / relay lag",
            f"{m.REDIS_UP} is 0 while an instance cannot reach Redis (critical once it lasts "
            f"thresholds.redis_down_seconds = {t.redis_down_seconds:g} s); e2ee_relay_lag "
            "is 1 while SSE delivery lags.",
            (
                Query(m.REDIS_UP, "redis up {{instance}}", (m.REDIS_UP,)),
                Query("e2ee_relay_lag", "relay lag {{instance}}", ("e2ee_relay_lag",)),
            ),
            crit=1,
            higher_is_worse=False,
        ),
        Panel(
            "One-time prekey pools",
            "Smallest and average pool of active devices; critical below "
            "thresholds.otpk_critical, warning below thresholds.otpk_warning.",
            (
                Query("e2ee_otpk_remaining_min", "smallest", ("e2ee_otpk_remaining_min",)),
                Query("e2ee_otpk_remaining_avg", "average", ("e2ee_otpk_remaining_avg",)),
            ),
            warn=t.otpk_warning,
            crit=t.otpk_critical,
            higher_is_worse=False,
        ),
        Panel(
            "Devices by one-time prekey pool",
            "Active devices, and those with an exhausted pool or under the server's own "
            "critical and warning counts (the server's thresholds, not the configured ones).",
            (
                Query("e2ee_otpk_devices_active", "active", ("e2ee_otpk_devices_active",)),
                Query(
                    "e2ee_otpk_devices_below_warning",
                    "below warning",
                    ("e2ee_otpk_devices_below_warning",),
                ),
                Query(
                    "e2ee_otpk_devices_below_critical",
                    "below critical",
                    ("e2ee_otpk_devices_below_critical",),
                ),
                Query("e2ee_otpk_devices_exhausted", "exhausted", ("e2ee_otpk_devices_exhausted",)),
            ),
        ),
        Panel(
            "Identity key changes",
            "Most identity key changes by one user in 24 h; critical above "
            "thresholds.identity_changes_per_day (a possible account takeover).",
            (
                Query(
                    "e2ee_identity_changes_max_per_user_24h",
                    "max per user, 24 h",
                    ("e2ee_identity_changes_max_per_user_24h",),
                ),
            ),
            crit=t.identity_changes_per_day,
        ),
        Panel(
            "Signed prekey age",
            "Oldest signed prekey of an active device; warning above "
            "thresholds.signed_prekey_max_age_days.",
            (
                Query(
                    m.SIGNED_PREKEY_AGE_MAX_SECONDS,
                    "oldest",
                    (m.SIGNED_PREKEY_AGE_MAX_SECONDS,),
                ),
            ),
            unit="s",
            warn=t.signed_prekey_max_age_days * DAY,
        ),
        Panel(
            "403 / 409 / 429 / 5xx",
            "Error answers per second by status: 403 blocks and the disabled feature, 409 "
            "exhausted prekeys, stale bundles and revoked devices, 429 rate limits, 5xx.",
            (
                Query(
                    'sum by (status) (rate(e2ee_http_errors_total{status=~"403|409|429|5.."}'
                    f"[{w}]))",
                    "{{status}}",
                    ("e2ee_http_errors_total",),
                ),
                Query(
                    f'sum by (code) (rate(e2ee_http_errors_total{{status="409"}}[{w}]))',
                    "409 {{code}}",
                    ("e2ee_http_errors_total",),
                ),
            ),
            unit="reqps",
        ),
    ]


def _steps(panel: Panel) -> list[dict[str, Any]]:
    """Grafana threshold steps: colour from each limit upwards."""
    if panel.higher_is_worse:
        steps: list[dict[str, Any]] = [{"color": GREEN, "value": None}]
        if panel.warn is not None:
            steps.append({"color": ORANGE, "value": panel.warn})
        if panel.crit is not None:
            steps.append({"color": RED, "value": panel.crit})
        return steps
    low = [(panel.crit, ORANGE if panel.warn is not None else GREEN), (panel.warn, GREEN)]
    steps = [{"color": RED, "value": None}]
    steps += [{"color": colour, "value": limit} for limit, colour in low if limit is not None]
    return steps


def _panel_json(number: int, panel: Panel) -> dict[str, Any]:
    return {
        "id": number,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((number - 1) % 2), "y": 8 * ((number - 1) // 2)},
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": q.expr,
                "legendFormat": q.legend,
            }
            for i, q in enumerate(panel.queries)
        ],
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": _steps(panel)},
                "custom": {"thresholdsStyle": {"mode": "line"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
    }


def dashboard(t: Thresholds) -> dict[str, Any]:
    """The dashboard model (Grafana JSON), for file provisioning or import."""
    return {
        "uid": UID,
        "title": "E2EE DM service (runbook)",
        "description": "Generated by `e2ee-ops alerts dashboard` from the configured "
        "thresholds; regenerate rather than edit.",
        "tags": ["e2ee-dm", "e2ee-ops"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                }
            ]
        },
        "annotations": {"list": []},
        "panels": [_panel_json(n, p) for n, p in enumerate(panels(t), start=1)],
    }


def dashboard_json(t: Thresholds) -> str:
    """The dashboard as text; the same thresholds always give the same bytes."""
    return json.dumps(dashboard(t), indent=2, ensure_ascii=False) + "\n"
