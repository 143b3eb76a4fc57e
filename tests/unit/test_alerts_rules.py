"""`alerts rules`: the committed rule file is what the command generates, promtool accepts
it and its unit tests fire and clear every alert; `evaluate_samples` on canned text."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from e2ee_ops.config import Thresholds
from e2ee_ops.procedures.alerts import evaluate_samples, histogram_p99, parse_exposition
from e2ee_ops.status import Status
from tests.support.cli import cli
from tests.support.required import tool

ALERTS = Path(__file__).resolve().parents[2] / "alerts"
RULES = ALERTS / "e2ee_alerts.rules.yml"


@pytest.fixture
def promtool() -> str:
    return tool("promtool", "Debian: apt-get install prometheus; .ci/run installs it")


def test_committed_rules_are_the_generated_defaults(isolated_env: dict[str, str]) -> None:
    result = cli("alerts", "rules")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == RULES.read_text()


def test_committed_rules_carry_the_runbook_figures() -> None:
    """Each alert of the committed file: its severity and the runbook's figure in its rule."""
    import yaml

    [group] = yaml.safe_load(RULES.read_text())["groups"]
    rules = {r["alert"]: (r["labels"]["severity"], r["expr"], r["for"]) for r in group["rules"]}
    job = '{job="e2ee-api"}'
    active = f"and e2ee_otpk_devices_active{job} > 0"
    assert rules == {
        "E2eeApiInstanceDown": ("critical", f"up{job} == 0", "1m"),
        "E2eeRedisDown": ("critical", f"e2ee_redis_up{job} == 0", "60s"),
        "E2eeOtpkPoolCritical": ("critical", f"e2ee_otpk_remaining_min{job} < 5 {active}", "5m"),
        "E2eeIdentityChangesHigh": (
            "critical",
            f"e2ee_identity_changes_max_per_user_24h{job} > 2",
            "5m",
        ),
        "E2eeSseFailureRateHigh": (
            "critical",
            f"(rate(e2ee_sse_failures_total{job}[5m]) / rate(e2ee_sse_connects_total{job}[5m]))"
            " > 0.1",
            "5m",
        ),
        "E2eeOtpkPoolLow": ("warning", f"e2ee_otpk_remaining_min{job} < 10 {active}", "5m"),
        # 90 days in seconds: the server exports base units.
        "E2eeSignedPrekeyStale": (
            "warning",
            f"e2ee_signed_prekey_age_max_seconds{job} > 7776000",
            "5m",
        ),
        "E2eeDeliveryLatencyP99High": (
            "warning",
            "histogram_quantile(0.99, sum by (job, le) "
            f"(rate(e2ee_delivery_latency_seconds_bucket{job}[5m]))) > 0.5",
            "5m",
        ),
        "E2eePubsubLagHigh": ("warning", f"e2ee_pubsub_lag_seconds{job} > 2", "5m"),
    }


def test_rules_take_their_numbers_from_the_config(
    isolated_env: dict[str, str], tmp_path: Path, promtool: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "thresholds: {otpk_critical: 3, otpk_warning: 8, redis_down_seconds: 90,"
        " delivery_p99_ms: 250, sse_failure_rate: 0.05}\n"
    )
    out = tmp_path / "rules.yml"
    result = cli("--config", str(config), "alerts", "rules", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    pool = 'e2ee_otpk_remaining_min{job="e2ee-api"}'
    assert f"{pool} < 3 and" in text and f"{pool} < 8 and" in text
    assert "for: 90s" in text and "> 0.25" in text and "> 0.05" in text
    done = subprocess.run([promtool, "check", "rules", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_rules_select_the_configured_scrape_job(isolated_env: dict[str, str]) -> None:
    result = cli("alerts", "rules", "--job", "dm-api-prod")
    assert result.exit_code == 0, result.stderr
    exprs = [ln for ln in result.stdout.splitlines() if ln.strip().startswith("expr:")]
    assert exprs and all('{job="dm-api-prod"}' in e for e in exprs)
    assert 'up{job="dm-api-prod"} == 0' in result.stdout
    assert 'e2ee_redis_up{job="dm-api-prod"} == 0' in result.stdout
    assert "e2ee-api" not in result.stdout


def test_promtool_checks_the_committed_rules(promtool: str) -> None:
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_promtool_unit_tests_fire_and_clear_each_alert(promtool: str) -> None:
    test_file = ALERTS / "e2ee_alerts.test.yml"
    done = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, cwd=ALERTS
    )
    assert done.returncode == 0, done.stdout + done.stderr
    names = {
        line.split(": ", 1)[1] for line in RULES.read_text().splitlines() if "- alert:" in line
    }
    tested = test_file.read_text()
    assert all(f"alertname: {name}" in tested for name in names)


EXPOSITION = """\
# TYPE e2ee_redis_up gauge
e2ee_redis_up 1.0
# TYPE e2ee_otpk_devices_active gauge
e2ee_otpk_devices_active 4.0
# TYPE e2ee_otpk_remaining_min gauge
e2ee_otpk_remaining_min {pool}
# TYPE e2ee_identity_changes_max_per_user_24h gauge
e2ee_identity_changes_max_per_user_24h {identity}
# TYPE e2ee_sse_connects_total counter
e2ee_sse_connects_total 100.0
# TYPE e2ee_sse_failures_total counter
e2ee_sse_failures_total {failures}
# TYPE e2ee_signed_prekey_age_max_seconds gauge
e2ee_signed_prekey_age_max_seconds {age_seconds}
# TYPE e2ee_delivery_latency_seconds histogram
e2ee_delivery_latency_seconds_bucket{{le="0.5"}} {fast}
e2ee_delivery_latency_seconds_bucket{{le="1.0"}} 100.0
e2ee_delivery_latency_seconds_bucket{{le="+Inf"}} 100.0
e2ee_delivery_latency_seconds_count 100.0
e2ee_delivery_latency_seconds_sum 10.0
# TYPE e2ee_pubsub_lag_seconds gauge
e2ee_pubsub_lag_seconds {lag}
"""


def _statuses(**values: float) -> dict[str, Status]:
    text = EXPOSITION.format(age_seconds=values.pop("age") * 86400, **values)
    findings = evaluate_samples(parse_exposition(text), Thresholds(), host="api")
    return {f.name.removesuffix(" (api)"): f.status for f in findings}


def test_every_threshold_trips_and_clears() -> None:
    healthy = _statuses(pool=50, identity=1, failures=2, age=10, fast=100, lag=0.01)
    assert set(healthy.values()) == {Status.OK}, healthy
    bad = _statuses(pool=3, identity=3, failures=20, age=100, fast=0, lag=3)
    assert bad == {
        "redis down > 60 s": Status.OK,
        "otpk pool min": Status.CRITICAL,
        "identity changes per user per day": Status.CRITICAL,
        "sse failure rate": Status.CRITICAL,
        "signed prekey age max": Status.WARNING,
        "delivery p99": Status.WARNING,
        "pub/sub lag": Status.WARNING,
    }
    assert _statuses(pool=7, identity=2, failures=10, age=90, fast=100, lag=2)["otpk pool min"] is (
        Status.WARNING
    )


def test_histogram_p99_interpolates_like_prometheus() -> None:
    samples = parse_exposition(
        EXPOSITION.format(pool=1, identity=1, failures=1, age_seconds=1, fast=0, lag=1)
    )
    assert histogram_p99(samples, "e2ee_delivery_latency_seconds") == pytest.approx(0.995)


def test_redis_down_is_dated_or_assumed_critical() -> None:
    text = "# TYPE e2ee_redis_up gauge\ne2ee_redis_up 0.0\n"
    samples = parse_exposition(text)
    t = Thresholds()
    [undated] = [f for f in evaluate_samples(samples, t, host="a") if f.name.startswith("redis")]
    assert undated.status is Status.CRITICAL and "unknown time" in undated.summary
    short = evaluate_samples(samples, t, host="a", redis_down_for=lambda: 10.0)[0]
    long = evaluate_samples(samples, t, host="a", redis_down_for=lambda: 75.0)[0]
    assert (short.status, long.status) == (Status.WARNING, Status.CRITICAL)
    missing = [f for f in evaluate_samples(samples, t, host="a") if f.status is Status.UNKNOWN]
    # Every metric this text lacks is UNKNOWN, never OK, and says which metric is missing.
    assert [(f.name, f.summary) for f in missing] == [
        ("otpk pool min (a)", "/metrics on a does not export e2ee_otpk_remaining_min"),
        (
            "identity changes per user per day (a)",
            "/metrics on a does not export e2ee_identity_changes_max_per_user_24h",
        ),
        ("sse failure rate (a)", "/metrics on a does not export e2ee_sse_failures_total"),
        (
            "signed prekey age max (a)",
            "/metrics on a does not export e2ee_signed_prekey_age_max_seconds",
        ),
        ("delivery p99 (a)", "/metrics on a does not export e2ee_delivery_latency_seconds"),
        ("pub/sub lag (a)", "/metrics on a does not export e2ee_pubsub_lag_seconds"),
    ]
