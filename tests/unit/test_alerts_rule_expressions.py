"""`alerts rules` and `alerts dashboard` expressions: how long Redis must be down before
E2eeRedisDown fires is the configured threshold in whole seconds, rounded up and never 0s
(0s would page on a single scrape); the queries the rules and the dashboard share read
every job unless given a selector."""

from __future__ import annotations

import pytest

from e2ee_ops.config import Thresholds
from e2ee_ops.procedures.alerts import alert_rules, delivery_p99, sse_failure_rate


@pytest.mark.parametrize(
    ("seconds", "for_", "prose"),
    [(0.25, "1s", "0.25"), (1.0, "1s", "1"), (59.2, "60s", "59.2"), (90.0, "90s", "90")],
)
def test_redis_down_waits_the_threshold_in_whole_seconds(
    seconds: float, for_: str, prose: str
) -> None:
    [rule] = [
        r for r in alert_rules(Thresholds(redis_down_seconds=seconds)) if r.name == "E2eeRedisDown"
    ]
    assert rule.for_ == for_
    assert rule.description.startswith(f"Redis has been unreachable for more than {prose} s: ")
    assert rule.threshold == "redis_down_seconds"


def test_shared_queries_without_a_selector_read_every_job() -> None:
    assert sse_failure_rate() == (
        "rate(e2ee_sse_failures_total[5m]) / rate(e2ee_sse_connects_total[5m])"
    )
    assert delivery_p99() == (
        "histogram_quantile(0.99, sum by (job, le) "
        "(rate(e2ee_delivery_latency_seconds_bucket[5m])))"
    )
