"""`alerts check` decided from canned `/metrics` samples: every finding in full (name,
status, value, the operator's sentence, thresholds, unit), the histogram's p99 as
Prometheus computes it, rates between two samples, HTTP error rates and Redis outages
dated by evidence only."""

from __future__ import annotations

import pytest

from e2ee_ops.config import Thresholds
from e2ee_ops.errors import ServiceError
from e2ee_ops.procedures.alerts import (
    Samples,
    counter_deltas,
    evaluate_samples,
    histogram_p99,
    parse_exposition,
)
from e2ee_ops.status import Finding, Status

CRITICAL, WARNING, OK, UNKNOWN = Status.CRITICAL, Status.WARNING, Status.OK, Status.UNKNOWN
HOST = "api-1:8000"
WHERE = f"/metrics on {HOST}"
OVER = " (over 10 s: /metrics sampled twice)"
LATENCY = "e2ee_delivery_latency_seconds"


def gauges(**values: float) -> dict[str, list[tuple[dict[str, str], float]]]:
    """One unlabelled sample per metric."""
    return {name: [({}, value)] for name, value in values.items()}


def buckets(**counts: float) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Cumulative latency buckets, keyed `le_0_5=...` (`inf` for +Inf)."""
    rows = [
        ({"le": "+Inf" if key == "le_inf" else key.removeprefix("le_").replace("_", ".")}, value)
        for key, value in counts.items()
    ]
    return {f"{LATENCY}_bucket": rows}


LEVELS = gauges(
    e2ee_redis_up=1,
    e2ee_otpk_devices_active=4,
    e2ee_otpk_remaining_min=50,
    e2ee_identity_changes_max_per_user_24h=1,
    e2ee_signed_prekey_age_max_seconds=10 * 86400,
    e2ee_pubsub_lag_seconds=0.01,
)


def by_label(findings: list[Finding]) -> dict[str, Finding]:
    return {f.name.removesuffix(f" ({HOST})"): f for f in findings}


def test_a_healthy_instance_gives_every_finding_in_full() -> None:
    # Growth over 10 s: 300 streams, 1 failed; 200 deliveries, 100 of them within 0.1 s.
    rates: Samples = {
        **gauges(e2ee_sse_connects_total=300, e2ee_sse_failures_total=1),
        **buckets(le_0_1=100, le_0_5=200, le_inf=200),
        "e2ee_http_errors_total": [
            ({"status": "429", "code": "rate_limited"}, 1.0),
            ({"status": "409", "code": "prekeys_exhausted"}, 1.5),
            ({"status": "409", "code": "bundle_stale"}, 0.5),
            ({"status": "500", "code": "none"}, 0.0),
        ],
    }
    found = evaluate_samples(LEVELS, Thresholds(), host=HOST, rates=rates, rate_seconds=10)
    assert found == [
        Finding(f"redis down > 60 s ({HOST})", OK, 0, f"{WHERE}: e2ee_redis_up=1", unit="s"),
        Finding(
            f"otpk pool min ({HOST})",
            OK,
            50,
            "smallest one-time prekey pool is 50 (critical below 5, warning below 10)",
            threshold_warn=10,
            threshold_crit=5,
            higher_is_worse=False,
            minimum=0,
        ),
        Finding(
            f"identity changes per user per day ({HOST})",
            OK,
            1,
            "identity changes per user per day is 1 (critical above 2)",
            threshold_crit=2,
        ),
        Finding(
            f"sse failure rate ({HOST})",
            OK,
            0.0033,
            f"sse failure rate is 0.003333{OVER} (critical above 0.1)",
            threshold_crit=0.1,
        ),
        Finding(
            f"signed prekey age max ({HOST})",
            OK,
            10,
            "signed prekey age max is 10 days (warning above 90)",
            threshold_warn=90,
            unit="days",
        ),
        # rank 198 of 200: 0.1 + 0.4 * 98 / 100 s
        Finding(
            f"delivery p99 ({HOST})",
            OK,
            492,
            f"delivery p99 is 492 ms{OVER} (warning above 500)",
            threshold_warn=500,
            unit="ms",
        ),
        Finding(
            f"http error rate ({HOST})",
            OK,
            {"409": 0.2, "429": 0.1, "500": 0.0},
            f"HTTP error responses per second{OVER.removesuffix(')')}): 409: 0.2/s, 429: 0.1/s",
        ),
        Finding(
            f"pub/sub lag ({HOST})",
            OK,
            0.01,
            "pub/sub lag is 0.01 s (warning above 2)",
            threshold_warn=2,
            unit="s",
        ),
    ]


def test_every_threshold_breached_names_its_figure_and_limit() -> None:
    levels = {
        **LEVELS,
        **gauges(
            e2ee_otpk_remaining_min=3,
            e2ee_identity_changes_max_per_user_24h=3,
            e2ee_signed_prekey_age_max_seconds=100.5 * 86400,
            e2ee_pubsub_lag_seconds=2.123456,
        ),
    }
    rates: Samples = {
        **gauges(e2ee_sse_connects_total=3, e2ee_sse_failures_total=1),
        **buckets(le_0_5=0, le_1_0=10, le_inf=10),
    }
    found = by_label(
        evaluate_samples(levels, Thresholds(), host=HOST, rates=rates, rate_seconds=10)
    )
    assert [(f.status, f.value, f.summary) for f in found.values()] == [
        (OK, 0, f"{WHERE}: e2ee_redis_up=1"),
        (
            CRITICAL,
            3,
            "smallest one-time prekey pool is 3 (critical below 5, warning below 10)",
        ),
        (CRITICAL, 3, "identity changes per user per day is 3 (critical above 2)"),
        (CRITICAL, 0.3333, f"sse failure rate is 0.3333{OVER} (critical above 0.1)"),
        (WARNING, 100.5, "signed prekey age max is 100.5 days (warning above 90)"),
        (WARNING, 995, f"delivery p99 is 995 ms{OVER} (warning above 500)"),
        (OK, {}, f"HTTP error responses per second{OVER.removesuffix(')')}): none"),
        (WARNING, 2.1235, "pub/sub lag is 2.123 s (warning above 2)"),
    ]
    pool = found["otpk pool min"]
    assert repr(pool.value) == "3"  # a count of prekeys: 3, never 3.0
    assert (pool.threshold_warn, pool.threshold_crit, pool.higher_is_worse, pool.minimum) == (
        10,
        5,
        False,
        0,
    )


def test_the_configured_thresholds_decide_and_appear_in_the_sentences() -> None:
    t = Thresholds(
        otpk_critical=2,
        otpk_warning=4,
        identity_changes_per_day=3,
        signed_prekey_max_age_days=7.5,
        pubsub_lag_seconds=0.005,
    )
    levels = {
        **LEVELS,
        **gauges(e2ee_otpk_remaining_min=3, e2ee_identity_changes_max_per_user_24h=3),
    }
    found = by_label(evaluate_samples(levels, t, host=HOST))
    assert [(f.status, f.summary) for f in found.values()][1:] == [
        (WARNING, "smallest one-time prekey pool is 3 (critical below 2, warning below 4)"),
        (OK, "identity changes per user per day is 3 (critical above 3)"),
        (UNKNOWN, f"{WHERE} does not export e2ee_sse_failures_total"),
        (WARNING, "signed prekey age max is 10 days (warning above 7.5)"),
        (UNKNOWN, f"{WHERE} does not export e2ee_delivery_latency_seconds"),
        (WARNING, "pub/sub lag is 0.01 s (warning above 0.005)"),
    ]
    assert (found["otpk pool min"].threshold_warn, found["otpk pool min"].threshold_crit) == (4, 2)
    assert found["signed prekey age max"].threshold_warn == 7.5
    assert found["redis down > 60 s"].name == f"redis down > 60 s ({HOST})"
    assert by_label(evaluate_samples(LEVELS, Thresholds(redis_down_seconds=90.5), host=HOST))[
        "redis down > 90.5 s"
    ].status is (OK)


def test_nothing_to_judge_is_ok_and_says_why() -> None:
    """No active device, no SSE stream opened and no delivery in the interval."""
    levels = {**LEVELS, **gauges(e2ee_otpk_devices_active=0, e2ee_otpk_remaining_min=0)}
    rates: Samples = {
        **gauges(e2ee_sse_connects_total=0, e2ee_sse_failures_total=0),
        **buckets(le_0_5=0, le_inf=0),
    }
    found = by_label(
        evaluate_samples(levels, Thresholds(), host=HOST, rates=rates, rate_seconds=10)
    )
    assert found["otpk pool min"] == Finding(
        f"otpk pool min ({HOST})", OK, None, f"{WHERE}: no active device"
    )
    assert found["sse failure rate"] == Finding(
        f"sse failure rate ({HOST})",
        OK,
        None,
        f"no SSE connection was opened{OVER}: no failure rate to judge",
    )
    assert found["delivery p99"] == Finding(
        f"delivery p99 ({HOST})", OK, None, f"{WHERE}: no delivery{OVER}"
    )


def test_since_start_without_rates_and_the_source_named_by_the_caller() -> None:
    totals = {**LEVELS, **gauges(e2ee_sse_connects_total=0, e2ee_sse_failures_total=0)}
    found = by_label(evaluate_samples(totals, Thresholds(), host=HOST))
    assert found["sse failure rate"].summary == (
        "no SSE connection was opened (since the process started): no failure rate to judge"
    )
    assert "http error rate" not in found
    rates = gauges(e2ee_sse_connects_total=0, e2ee_sse_failures_total=0)
    named = by_label(
        evaluate_samples(
            LEVELS,
            Thresholds(),
            host=HOST,
            rates=rates,
            rate_seconds=1.0,
            rate_source="rate over 5m from Prometheus",
        )
    )
    assert named["sse failure rate"].summary == (
        "no SSE connection was opened (rate over 5m from Prometheus): no failure rate to judge"
    )
    # Rates without an interval: no per-second figure is made up.
    bare = by_label(evaluate_samples(LEVELS, Thresholds(), host=HOST, rates=rates))
    assert bare["sse failure rate"].summary == (
        "no SSE connection was opened (): no failure rate to judge"
    )
    errors = {"e2ee_http_errors_total": [({"status": "500"}, 4.0)]}
    assert by_label(evaluate_samples(LEVELS, Thresholds(), host=HOST, rates=errors))[
        "http error rate"
    ] == Finding(f"http error rate ({HOST})", OK, {}, "HTTP error responses per second (): none")


@pytest.mark.parametrize(
    ("counters", "missing"),
    [
        ({"e2ee_sse_failures_total": 1}, "e2ee_sse_failures_total"),  # no connects
        ({"e2ee_sse_connects_total": 0}, "e2ee_sse_failures_total"),  # no failures, 0 opened
        ({"e2ee_sse_connects_total": 5}, "e2ee_sse_failures_total"),
    ],
)
def test_a_failure_rate_missing_either_counter_is_unknown(
    counters: dict[str, float], missing: str
) -> None:
    found = by_label(evaluate_samples({**LEVELS, **gauges(**counters)}, Thresholds(), host=HOST))
    assert found["sse failure rate"] == Finding(
        f"sse failure rate ({HOST})", UNKNOWN, None, f"{WHERE} does not export {missing}"
    )


def test_http_error_rates_add_up_per_status_in_order() -> None:
    rates: Samples = {
        "e2ee_http_errors_total": [
            ({"status": "500", "code": "none"}, 1.0),
            ({"code": "unlabelled"}, 2.0),
            ({"status": "403", "code": "blocked"}, 1.0),
            ({"status": "403", "code": "disabled"}, 1.0),
        ]
    }
    [errors] = [
        f
        for f in evaluate_samples({}, Thresholds(), host=HOST, rates=rates, rate_seconds=3)
        if f.name.startswith("http error rate")
    ]
    assert errors.value == {"403": 0.6667, "500": 0.3333, "?": 0.6667}
    assert errors.summary == (
        "HTTP error responses per second (over 3 s: /metrics sampled twice): "
        "403: 0.6667/s, 500: 0.3333/s, ?: 0.6667/s"
    )


def test_redis_down_is_dated_by_the_server_then_by_the_caller_else_unknown() -> None:
    down = gauges(e2ee_redis_up=0)
    name = f"redis down > 60 s ({HOST})"
    undated = evaluate_samples(down, Thresholds(), host=HOST)[0]
    assert undated == Finding(
        name,
        WARNING,
        None,
        f"{WHERE}: e2ee_redis_up=0; Redis is down, duration unknown (no evidence dates the "
        "start: configure services.api.log or run `e2ee-ops redis check` from cron)",
        threshold_crit=60,
        unit="s",
    )
    recorded = {**down, **gauges(e2ee_redis_unavailable_seconds=75.26)}
    asked: list[str] = []

    def journal() -> tuple[float, str]:
        asked.append("journal")
        return 10.0, "journal"

    assert evaluate_samples(recorded, Thresholds(), host=HOST, redis_down_for=journal)[0] == (
        Finding(
            name,
            CRITICAL,
            75.3,
            f"{WHERE}: e2ee_redis_up=0 for at least 75 s (e2ee_redis_unavailable_seconds on "
            f"{HOST}, the server's own record)",
            threshold_crit=60,
            unit="s",
        )
    )
    assert asked == []  # the server's record wins: the journal is not read
    exactly = evaluate_samples(down, Thresholds(), host=HOST, redis_down_for=lambda: (60.0, "j"))
    assert exactly[0] == Finding(
        name,
        WARNING,
        60.0,
        f"{WHERE}: e2ee_redis_up=0 for at least 60 s (j)",
        threshold_crit=60,
        unit="s",
    )
    # A gauge of 0 dates nothing: the caller's evidence is asked.
    zero = {**down, **gauges(e2ee_redis_unavailable_seconds=0)}
    assert evaluate_samples(zero, Thresholds(), host=HOST, redis_down_for=journal)[0].value == 10
    assert asked == ["journal"]


def test_redis_up_above_one_is_up_and_missing_is_unknown() -> None:
    assert evaluate_samples(gauges(e2ee_redis_up=2), Thresholds(), host=HOST)[0].status is OK
    assert evaluate_samples({}, Thresholds(), host=HOST)[0] == Finding(
        f"redis down > 60 s ({HOST})", UNKNOWN, None, f"{WHERE} does not export e2ee_redis_up"
    )


def test_histogram_p99_follows_histogram_quantile() -> None:
    def p99(**counts: float) -> float | None:
        return histogram_p99(buckets(**counts), LATENCY)

    assert histogram_p99({}, LATENCY) is None
    assert p99(le_0_1=0, le_inf=0) is None  # no observation at all
    # Interpolated inside the first bucket, from 0.
    assert p99(le_0_5=100, le_inf=100) == pytest.approx(0.495)
    # Rates per second from Prometheus: under one observation in all is still some.
    assert p99(le_0_5=0.5, le_inf=0.5) == pytest.approx(0.495)
    # The rank falls in +Inf: the highest finite bound.
    assert p99(le_0_5=50, le_inf=100) == 0.5
    assert p99(le_0_1=0, le_0_2=0, le_inf=5) == 0.2
    # The first bucket whose count reaches the rank (99 of 100), even when the next one
    # holds the same count.
    assert p99(le_0_1=99, le_0_2=99, le_0_3=100, le_inf=100) == pytest.approx(0.1)
    # Buckets come in any order; they are sorted by bound.
    assert p99(le_inf=100, le_2_0=100, le_1_0=0) == pytest.approx(1.99)


def test_counters_grow_between_samples_and_a_reset_counts_from_zero() -> None:
    earlier: Samples = {
        "c": [({"status": "500"}, 10.0), ({"status": "403"}, 4.0)],
        "gone": [({}, 1.0)],
    }
    later: Samples = {
        "c": [({"status": "500"}, 15.0), ({"status": "403"}, 3.0), ({"status": "429"}, 2.0)],
        "new": [({}, 7.0)],
    }
    assert counter_deltas(later, earlier) == {
        "c": [({"status": "500"}, 5.0), ({"status": "403"}, 3.0), ({"status": "429"}, 2.0)],
        "new": [({}, 7.0)],
    }
    same = {"c": [({"a": "1", "b": "2"}, 5.0)]}
    assert counter_deltas(same, {"c": [({"b": "2", "a": "1"}, 5.0)]}) == {
        "c": [({"a": "1", "b": "2"}, 0.0)]
    }


def test_parse_exposition_reads_labels_and_refuses_other_text() -> None:
    text = (
        "# TYPE e2ee_http_errors counter\n"
        'e2ee_http_errors_total{status="409",code="bundle_stale"} 3\n'
        "# TYPE e2ee_redis_up gauge\n"
        "e2ee_redis_up 1\n"
    )
    samples = parse_exposition(text)
    assert samples["e2ee_http_errors_total"] == [({"status": "409", "code": "bundle_stale"}, 3.0)]
    assert samples["e2ee_redis_up"] == [({}, 1.0)]
    from prometheus_client.parser import text_string_to_metric_families

    with pytest.raises(ValueError) as parser:
        list(text_string_to_metric_families("garbage{{\n"))
    with pytest.raises(ServiceError) as caught:
        parse_exposition("garbage{{\n")
    assert str(caught.value) == f"/metrics is not Prometheus text exposition ({parser.value})"
