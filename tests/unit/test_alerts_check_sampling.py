"""`check_alerts` over its collaborators: each instance's /metrics sampled twice (or its
rates asked of Prometheus, with the exact queries), the report's data, probes that fail
or hang, and what it journals of Redis for later checks to date an outage from."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from e2ee_ops.config import Thresholds
from e2ee_ops.errors import ServiceError
from e2ee_ops.journal import REDIS_OBSERVATION, Journal
from e2ee_ops.procedures.alerts import check_alerts, prometheus_rates, redis_down_evidence
from e2ee_ops.schema import as_dict
from e2ee_ops.status import Finding, Status
from tests.support.journal import T0, Clock, fixed_journal

UP = "e2ee_redis_up 1\n"
DOWN = "e2ee_redis_up 0\n"
FAR_AHEAD = datetime(2999, 1, 1, tzinfo=UTC)


class Api:
    """An API instance answering /metrics with the given texts, one per call (the last
    one again once they run out); `answer` replaces the text by any behaviour."""

    def __init__(self, host: str, *texts: str, answer: Callable[[], str] | None = None) -> None:
        self.host = host
        self._texts = list(texts)
        self._answer = answer
        self.calls = 0

    def prometheus_metrics(self) -> str:
        self.calls += 1
        if self._answer is not None:
            return self._answer()
        return self._texts[min(self.calls, len(self._texts)) - 1]


class Prometheus:
    """Prometheus's instant queries: the vector for each expression, every query kept."""

    host = "prom:9090"

    def __init__(self, vectors: dict[str, list[tuple[dict[str, str], float]]]) -> None:
        self.vectors = vectors
        self.queries: list[str] = []

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        self.queries.append(expr)
        return [(dict(labels), value) for labels, value in self.vectors.get(expr, [])]


def run(apis: list[Api], **options: Any) -> tuple[list[Finding], dict[str, Any], list[float]]:
    slept: list[float] = []
    report = check_alerts(
        apis=cast(Any, apis), thresholds=Thresholds(), sleep=slept.append, **options
    )
    return report.findings, report.data, slept


def named(findings: list[Finding], prefix: str) -> list[Finding]:
    return [f for f in findings if f.name.startswith(prefix)]


def sse(connects: float, failures: float) -> str:
    return f"e2ee_sse_connects_total {connects}\ne2ee_sse_failures_total {failures}\n"


def test_each_instance_is_sampled_twice_the_interval_apart() -> None:
    a = Api("a:1", UP + sse(100, 0), UP + sse(110, 5))
    b = Api("b:2", UP + sse(0, 0))
    findings, data, slept = run([a, b], sample_interval=2.5)
    assert (a.calls, b.calls, slept) == (2, 2, [2.5, 2.5])
    assert [(f.name, f.status, f.value) for f in named(findings, "sse failure rate")] == [
        ("sse failure rate (a:1)", Status.CRITICAL, 0.5),
        ("sse failure rate (b:2)", Status.OK, None),
    ]
    assert named(findings, "sse failure rate (a:1)")[0].summary == (
        "sse failure rate is 0.5 (over 2.5 s: /metrics sampled twice) (critical above 0.1)"
    )
    assert check_alerts(apis=cast(Any, [b]), thresholds=Thresholds(), sleep=slept.append).title == (
        "alerts check"
    )
    assert data == {
        "thresholds": as_dict(Thresholds()),
        "rates_from": "/metrics of each instance sampled twice, 2.5 s apart",
    }


def test_the_default_interval_is_ten_seconds() -> None:
    errors = 'e2ee_http_errors_total{status="429"} '
    api = Api("a:1", UP + errors + "0\n", UP + errors + "5\n")
    findings, data, slept = run([api])
    assert slept == [10.0]
    assert data["rates_from"] == "/metrics of each instance sampled twice, 10 s apart"
    assert named(findings, "http error rate")[0].value == {"429": 0.5}


def test_rates_come_from_prometheus_queries_when_it_is_given() -> None:
    prometheus = Prometheus(
        {
            "sum by (instance) (rate(e2ee_sse_connects_total[5m]))": [
                ({"instance": "a:1"}, 4.0),
                ({"instance": "b:2"}, 9.0),
            ],
            "sum by (instance) (rate(e2ee_sse_failures_total[5m]))": [
                ({"instance": "a:1"}, 1.0),
            ],
            "sum by (instance, le) (rate(e2ee_delivery_latency_seconds_bucket[5m]))": [
                ({"instance": "a:1", "le": "0.25"}, 2.0),
                ({"instance": "a:1", "le": "+Inf"}, 2.0),
            ],
            "sum by (instance, status) (rate(e2ee_http_errors_total[5m]))": [
                ({"instance": "a:1", "status": "500"}, 0.125),
                ({"status": "403"}, 3.0),  # no instance label
            ],
        }
    )
    api = Api("a:1", UP)
    findings, data, slept = run([api], prometheus=prometheus)
    assert (api.calls, slept) == (1, [])  # one sample for the levels; rates from Prometheus
    assert prometheus.queries == list(prometheus.vectors)
    assert [(f.status, f.value, f.summary) for f in findings[2:]] == [
        (
            Status.UNKNOWN,
            None,
            "/metrics on a:1 does not export e2ee_identity_changes_max_per_user_24h",
        ),
        (
            Status.CRITICAL,
            0.25,
            "sse failure rate is 0.25 (rate over 5m from Prometheus) (critical above 0.1)",
        ),
        (
            Status.UNKNOWN,
            None,
            "/metrics on a:1 does not export e2ee_signed_prekey_age_max_seconds",
        ),
        (
            Status.OK,
            247.5,
            "delivery p99 is 247.5 ms (rate over 5m from Prometheus) (warning above 500)",
        ),
        (
            Status.OK,
            {"500": 0.125},
            "HTTP error responses per second (rate over 5m from Prometheus): 500: 0.125/s",
        ),
        (Status.UNKNOWN, None, "/metrics on a:1 does not export e2ee_pubsub_lag_seconds"),
    ]
    assert data["rates_from"] == "Prometheus at prom:9090, rate over 5m"
    assert prometheus_rates(cast(Any, prometheus), "5m")[""] == {
        "e2ee_http_errors_total": [({"status": "403"}, 3.0)]
    }


def test_the_prometheus_window_is_the_one_asked_for() -> None:
    prometheus = Prometheus({})
    findings, data, _ = run([Api("a:1", UP)], prometheus=prometheus, rate_window="10m")
    assert prometheus.queries == [
        "sum by (instance) (rate(e2ee_sse_connects_total[10m]))",
        "sum by (instance) (rate(e2ee_sse_failures_total[10m]))",
        "sum by (instance, le) (rate(e2ee_delivery_latency_seconds_bucket[10m]))",
        "sum by (instance, status) (rate(e2ee_http_errors_total[10m]))",
    ]
    assert data["rates_from"] == "Prometheus at prom:9090, rate over 10m"
    assert named(findings, "http error rate")[0].summary == (
        "HTTP error responses per second (rate over 10m from Prometheus): none"
    )


def test_an_instance_that_fails_or_hangs_is_unknown_and_named() -> None:
    def refuse() -> str:
        raise ServiceError("/metrics answered HTTP 503")

    release = threading.Event()

    def hang() -> str:
        release.wait(10)
        return UP

    try:
        findings, _, _ = run(
            [Api("a:1", answer=refuse), Api("b:2", answer=hang), Api("c:3", UP)], timeout=0.3
        )
    finally:
        release.set()
    assert findings[:2] == [
        Finding("metrics (a:1)", Status.UNKNOWN, None, "metrics (a:1): /metrics answered HTTP 503"),
        Finding("metrics (b:2)", Status.UNKNOWN, None, "metrics (b:2): no answer within 0.3 s"),
    ]
    assert findings[2].name == "redis down > 60 s (c:3)"


def observations(journal: Journal) -> list[tuple[str, dict[str, Any]]]:
    return [(e.command, e.data) for e in journal.entries(kind=REDIS_OBSERVATION)]


def test_what_the_check_saw_of_redis_is_journaled(tmp_path: Path) -> None:
    journal = fixed_journal(tmp_path, Clock())
    run([Api("a:1", UP), Api("b:2", UP)], journal=journal)
    assert observations(journal) == [
        (
            "alerts check",
            {
                "down": False,
                "evidence": [
                    "/metrics on a:1: e2ee_redis_up=1",
                    "/metrics on b:2: e2ee_redis_up=1",
                ],
            },
        )
    ]
    run([Api("a:1", UP), Api("b:2", DOWN)], journal=journal)
    assert observations(journal)[1:] == [
        (
            "alerts check",
            {
                "down": True,
                "evidence": [
                    "/metrics on a:1: e2ee_redis_up=1",
                    "/metrics on b:2: e2ee_redis_up=0; Redis is down, duration unknown (no "
                    "evidence dates the start: configure services.api.log or run `e2ee-ops "
                    "redis check` from cron)",
                ],
            },
        )
    ]


def test_nothing_is_journaled_when_an_instance_could_not_tell(tmp_path: Path) -> None:
    journal = fixed_journal(tmp_path, Clock())
    run([Api("a:1", DOWN), Api("b:2", "e2ee_pubsub_lag_seconds 0\n")], journal=journal)
    run([Api("a:1", answer=lambda: "garbage{{\n")], journal=journal)
    assert observations(journal) == []


def test_an_outage_journaled_earlier_dates_this_one(tmp_path: Path) -> None:
    clock = Clock()
    clock.now = FAR_AHEAD
    journal = fixed_journal(tmp_path, clock)
    journal.append(REDIS_OBSERVATION, command="redis check", data={"down": True})
    [down] = named(run([Api("a:1", DOWN)], journal=journal)[0], "redis down")
    # Seen down "in the future" (a skewed clock): at least 0 s, never negative.
    assert (down.status, down.value) == (Status.WARNING, 0)
    assert down.summary == (
        "/metrics on a:1: e2ee_redis_up=0 for at least 0 s (journal: first seen down by "
        "`redis check` (at the latest))"
    )
    # Down for 0 s is still down: never journaled as healthy.
    assert [data["down"] for _, data in observations(journal)] == [True]


def test_redis_down_evidence_reads_the_journal(tmp_path: Path) -> None:
    assert redis_down_evidence(None) is None
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    assert redis_down_evidence(journal) is None  # nothing observed
    journal.append(REDIS_OBSERVATION, command="redis watch", data={"down": True})
    now = T0 + timedelta(seconds=120.5)
    assert redis_down_evidence(journal, now) == (
        120.5,
        "journal: first seen down by `redis watch` (at the latest)",
    )
    clock.at(90)
    journal.append(REDIS_OBSERVATION, command="redis check", data={"down": False})
    assert redis_down_evidence(journal, now) is None  # that outage ended
