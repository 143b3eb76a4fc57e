"""Runbook: Monitoring and Alerting Setup. Prometheus rules (`alert_rules`, `rules_yaml`)
and the same thresholds evaluated now (`check_alerts`).

Both are written against the metric names the reference server exports on `/metrics`
and take every number from `Thresholds`. Where the server exports a count that bakes
in its own threshold (`e2ee_otpk_devices_below_critical` counts pools under the
SERVER's 5), the rules use a threshold-free metric instead (`e2ee_otpk_remaining_min`,
`e2ee_signed_prekey_age_max_seconds`, `e2ee_identity_changes_max_per_user_24h`), so a
configured threshold other than the runbook's default still means what it says.

`check_alerts` has no history, unlike Prometheus: the SSE failure rate is the ratio
of the counters since the server started, the p99 comes from the histogram's buckets
since start (as `histogram_quantile` computes it), and how long Redis has been down is
dated by evidence only (the server's own `e2ee_redis_unavailable_seconds`, else
e2ee-ops's earlier observations in the journal); when nothing dates it, "down,
duration unknown" is a WARNING, never an invented CRITICAL.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from e2ee_ops import metrics as m
from e2ee_ops.config import Thresholds
from e2ee_ops.errors import ServiceError
from e2ee_ops.procedures.outage_evidence import journal_window, record_observation
from e2ee_ops.procedures.probes import Probe, run_probes
from e2ee_ops.schema import as_dict
from e2ee_ops.status import Finding, Report, Status, classify

if TYPE_CHECKING:
    from e2ee_ops.adapters.api import ApiClient
    from e2ee_ops.adapters.prometheus import PrometheusQuery
    from e2ee_ops.journal import Journal

GROUP = "e2ee_alerts"
# The Prometheus scrape job of the API instances; `alerts rules --job` changes it.
DEFAULT_JOB = "e2ee-api"
INSTANCE_DOWN_FOR = "1m"
DAY = 86400
# How long a condition other than "Redis down" must hold before it fires: long enough
# that a refill or a single slow scrape does not page, short enough to matter.
SUSTAIN = "5m"
RATE_WINDOW = "5m"


@dataclass(frozen=True)
class AlertRule:
    name: str
    severity: str  # "critical" | "warning"
    expr: str
    for_: str
    summary: str
    description: str
    threshold: str | None  # the Thresholds field this rule takes its number from


def _num(value: float) -> str:
    """A threshold as PromQL and prose write it: 5, 0.1, 0.5 (never 5.0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _duration(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


def sse_failure_rate(selector: str = "") -> str:
    return (
        f"rate({m.total(m.SSE_FAILURES)}{selector}[{RATE_WINDOW}])"
        f" / rate({m.total(m.SSE_CONNECTS)}{selector}[{RATE_WINDOW}])"
    )


def delivery_p99(selector: str = "") -> str:
    return (
        "histogram_quantile(0.99, sum by (job, le) "
        f"(rate({m.DELIVERY_LATENCY_SECONDS}_bucket{selector}[{RATE_WINDOW}])))"
    )


# The queries the rules and the dashboard (`alerts_dashboard.py`) share.
SSE_FAILURE_RATE = sse_failure_rate()
DELIVERY_P99 = delivery_p99()


def alert_rules(t: Thresholds, job: str = DEFAULT_JOB) -> list[AlertRule]:
    """Every critical and warning threshold of the runbook as a Prometheus alert rule,
    on the series of the scrape job `job` (the API instances)."""
    selector = "{" + f"job={json.dumps(job)}" + "}"

    def q(metric: str) -> str:
        return metric + selector

    # min is 0 when there is no device at all
    active = f"and {q(m.OTPK_DEVICES_ACTIVE)} > 0"
    sse_rate, p99 = sse_failure_rate(selector), delivery_p99(selector)
    return [
        AlertRule(
            "E2eeApiInstanceDown",
            "critical",
            f"{q('up')} == 0",
            INSTANCE_DOWN_FOR,
            "API instance {{ $labels.instance }} does not answer",
            "Prometheus could not scrape this API instance for more than "
            f"{INSTANCE_DOWN_FOR}: its streams are gone and its clients reconnect elsewhere. "
            "Run `e2ee-ops doctor`, then restart the instance (services.api).",
            None,
        ),
        AlertRule(
            "E2eeRedisDown",
            "critical",
            f"{q(m.REDIS_UP)} == 0",
            _duration(t.redis_down_seconds),
            "Redis unavailable on {{ $labels.instance }}",
            f"Redis has been unreachable for more than {_num(t.redis_down_seconds)} s: messages "
            "are stored but not pushed over SSE. Run `e2ee-ops redis check`, then "
            "`e2ee-ops redis recover --execute`.",
            "redis_down_seconds",
        ),
        AlertRule(
            "E2eeOtpkPoolCritical",
            "critical",
            f"{q(m.OTPK_REMAINING_MIN)} < {_num(t.otpk_critical)} {active}",
            SUSTAIN,
            f"A device has fewer than {_num(t.otpk_critical)} one-time prekeys",
            "The smallest one-time prekey pool of an active device is {{ $value }}. "
            "Run `e2ee-ops devices stuck`.",
            "otpk_critical",
        ),
        AlertRule(
            "E2eeIdentityChangesHigh",
            "critical",
            f"{q(m.IDENTITY_CHANGES_MAX_PER_USER_24H)} > {_num(t.identity_changes_per_day)}",
            SUSTAIN,
            f"A user changed identity keys more than {_num(t.identity_changes_per_day)} "
            "times in 24 h",
            "The most identity key changes by one user in 24 h is {{ $value }}: "
            "a possible account takeover. Review the security events.",
            "identity_changes_per_day",
        ),
        AlertRule(
            "E2eeSseFailureRateHigh",
            "critical",
            f"({sse_rate}) > {_num(t.sse_failure_rate)}",
            SUSTAIN,
            f"More than {_num(t.sse_failure_rate * 100)} % of SSE connections fail "
            "on {{ $labels.instance }}",
            "The SSE stream failure rate over 5 minutes is {{ $value }}.",
            "sse_failure_rate",
        ),
        AlertRule(
            "E2eeOtpkPoolLow",
            "warning",
            f"{q(m.OTPK_REMAINING_MIN)} < {_num(t.otpk_warning)} {active}",
            SUSTAIN,
            f"A device has fewer than {_num(t.otpk_warning)} one-time prekeys",
            "The smallest one-time prekey pool of an active device is {{ $value }}. "
            "Run `e2ee-ops devices stuck` to remind its owner.",
            "otpk_warning",
        ),
        AlertRule(
            "E2eeSignedPrekeyStale",
            "warning",
            f"{q(m.SIGNED_PREKEY_AGE_MAX_SECONDS)} > {_num(t.signed_prekey_max_age_days * DAY)}",
            SUSTAIN,
            f"A signed prekey is older than {_num(t.signed_prekey_max_age_days)} days",
            "The oldest signed prekey of an active device is {{ $value | humanizeDuration }} old. "
            "Run `e2ee-ops devices stuck`.",
            "signed_prekey_max_age_days",
        ),
        AlertRule(
            "E2eeDeliveryLatencyP99High",
            "warning",
            f"{p99} > {_num(t.delivery_p99_ms / 1000.0)}",
            SUSTAIN,
            f"Message delivery p99 is above {_num(t.delivery_p99_ms)} ms",
            "The 99th percentile of delivery latency over 5 minutes is {{ $value }} s.",
            "delivery_p99_ms",
        ),
        AlertRule(
            "E2eePubsubLagHigh",
            "warning",
            f"{q(m.PUBSUB_LAG_SECONDS)} > {_num(t.pubsub_lag_seconds)}",
            SUSTAIN,
            f"Redis pub/sub lag is above {_num(t.pubsub_lag_seconds)} s "
            "on {{ $labels.instance }}",
            "The relay's pub/sub round trip is {{ $value }} s.",
            "pubsub_lag_seconds",
        ),
    ]


RULES_HEADER = """\
# Prometheus alert rules for the E2EE DM service, generated by `e2ee-ops alerts rules`
# from the configured thresholds (runbook: Monitoring and Alerting Setup).
# Check with `promtool check rules FILE`. Do not edit by hand: change the thresholds
# in the e2ee-ops config and regenerate.
"""


def rules_document(t: Thresholds, job: str = DEFAULT_JOB) -> dict[str, object]:
    rules = [
        {
            "alert": r.name,
            "expr": r.expr,
            "for": r.for_,
            "labels": {"severity": r.severity, "service": "e2ee-dm"},
            "annotations": {
                "summary": r.summary,
                "description": r.description,
                **({"threshold": f"thresholds.{r.threshold}"} if r.threshold else {}),
            },
        }
        for r in alert_rules(t, job)
    ]
    return {"groups": [{"name": GROUP, "rules": rules}]}


def rules_yaml(t: Thresholds, job: str = DEFAULT_JOB) -> str:
    """The rule file's text; the same thresholds and job always give the same bytes."""
    import yaml

    body = yaml.safe_dump(rules_document(t, job), sort_keys=False, width=100, allow_unicode=True)
    return RULES_HEADER + body


# ---- evaluation now -----------------------------------------------------------------------

Samples = Mapping[str, Sequence[tuple[dict[str, str], float]]]


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name from Prometheus text exposition (prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    except ValueError as exc:
        raise ServiceError(f"/metrics is not Prometheus text exposition ({exc})") from None
    return samples


def _one(samples: Samples, name: str) -> float | None:
    values = [v for _, v in samples.get(name, ())]
    return values[0] if values else None


def histogram_p99(samples: Samples, name: str) -> float | None:
    """The 0.99 quantile of a histogram's cumulative buckets, interpolated as Prometheus does."""
    buckets = sorted(
        (float(labels["le"]), value) for labels, value in samples.get(f"{name}_bucket", ())
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = 0.99 * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # as histogram_quantile: the highest finite bucket
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def _missing(name: str, metric: str, where: str) -> Finding:
    return Finding(name, Status.UNKNOWN, None, f"{where} does not export {metric}")


def evaluate_samples(
    samples: Samples,
    t: Thresholds,
    *,
    host: str,
    redis_down_for: Callable[[], tuple[float, str] | None] = lambda: None,
    rates: Samples | None = None,
    rate_seconds: float | None = None,
    rate_source: str = "",
) -> list[Finding]:
    """One finding per threshold from one instance's `/metrics` samples.

    `rates`: each counter's growth over the last `rate_seconds` (two samples), or, with
    `rate_source`, its per-second rate from there; without it, ratios are of the totals
    since the process started."""
    rate_note = rate_source or (
        f"over {rate_seconds:g} s: /metrics sampled twice" if rate_seconds else ""
    )
    where = f"/metrics on {host}"
    found: list[Finding] = []

    up = _one(samples, m.REDIS_UP)
    name = f"redis down > {_num(t.redis_down_seconds)} s ({host})"
    if up is None:
        found.append(_missing(name, m.REDIS_UP, where))
    elif up >= 1:
        found.append(Finding(name, Status.OK, 0, f"{where}: {m.REDIS_UP}=1", unit="s"))
    else:
        gauge = _one(samples, m.REDIS_UNAVAILABLE_SECONDS)
        down_for = (
            (gauge, f"{m.REDIS_UNAVAILABLE_SECONDS} on {host}, the server's own record")
            if gauge
            else redis_down_for()
        )
        found.append(_redis_down_finding(name, where, t, down_for))

    active = _one(samples, m.OTPK_DEVICES_ACTIVE)
    pool = _one(samples, m.OTPK_REMAINING_MIN)
    name = f"otpk pool min ({host})"
    if pool is None:
        found.append(_missing(name, m.OTPK_REMAINING_MIN, where))
    elif not active:
        found.append(Finding(name, Status.OK, None, f"{where}: no active device"))
    else:
        status = classify(pool, warn=t.otpk_warning, crit=t.otpk_critical, higher_is_worse=False)
        found.append(
            Finding(
                name,
                status,
                int(pool),
                f"smallest one-time prekey pool is {pool:g} (critical below "
                f"{_num(t.otpk_critical)}, warning below {_num(t.otpk_warning)})",
                threshold_warn=t.otpk_warning,
                threshold_crit=t.otpk_critical,
                higher_is_worse=False,
                minimum=0,
            )
        )

    def above(
        label: str,
        metric: str,
        value: float | None,
        limit: float,
        status: Status,
        unit: str = "",
        note: str = "",
    ) -> None:
        if value is None:
            found.append(_missing(f"{label} ({host})", metric, where))
            return
        bad = value > limit
        found.append(
            Finding(
                f"{label} ({host})",
                status if bad else Status.OK,
                round(value, 4),
                f"{label} is {value:.4g}{(' ' + unit) if unit else ''}{note} "
                f"({status.value.lower()} above {_num(limit)})",
                threshold_warn=limit if status is Status.WARNING else None,
                threshold_crit=limit if status is Status.CRITICAL else None,
                unit=unit,
            )
        )

    above(
        "identity changes per user per day",
        m.IDENTITY_CHANGES_MAX_PER_USER_24H,
        _one(samples, m.IDENTITY_CHANGES_MAX_PER_USER_24H),
        t.identity_changes_per_day,
        Status.CRITICAL,
    )
    # Rates from the counters' growth between two samples when given (else since the
    # process started, which a long-lived healthy process dilutes).
    counted = rates if rates is not None else samples
    over = f" ({rate_note})" if rates is not None else " (since the process started)"
    connects = _one(counted, m.total(m.SSE_CONNECTS))
    failures = _one(counted, m.total(m.SSE_FAILURES))
    if connects is not None and failures is not None and not connects:
        found.append(
            Finding(
                f"sse failure rate ({host})",
                Status.OK,
                None,
                f"no SSE connection was opened{over}: no failure rate to judge",
            )
        )
    else:
        above(
            "sse failure rate",
            m.total(m.SSE_FAILURES),
            None if connects is None or failures is None else failures / connects,
            t.sse_failure_rate,
            Status.CRITICAL,
            note=over,
        )
    age = _one(samples, m.SIGNED_PREKEY_AGE_MAX_SECONDS)
    above(
        "signed prekey age max",
        m.SIGNED_PREKEY_AGE_MAX_SECONDS,
        None if age is None else age / DAY,
        t.signed_prekey_max_age_days,
        Status.WARNING,
        "days",
    )
    p99 = histogram_p99(counted, m.DELIVERY_LATENCY_SECONDS)
    if p99 is None and m.DELIVERY_LATENCY_SECONDS + "_bucket" in counted:
        found.append(
            Finding(f"delivery p99 ({host})", Status.OK, None, f"{where}: no delivery{over}")
        )
    else:
        above(
            "delivery p99",
            m.DELIVERY_LATENCY_SECONDS,
            None if p99 is None else p99 * 1000.0,
            t.delivery_p99_ms,
            Status.WARNING,
            "ms",
            note=over,
        )
    if rates is not None:
        found.append(_http_error_rates(rates, host, rate_seconds or 0.0, rate_note))
    above(
        "pub/sub lag",
        m.PUBSUB_LAG_SECONDS,
        _one(samples, m.PUBSUB_LAG_SECONDS),
        t.pubsub_lag_seconds,
        Status.WARNING,
        "s",
    )
    return found


def prometheus_rates(prometheus: PrometheusQuery, window: str) -> dict[str, Samples]:
    """Per-second rates over `window` by instance (its `instance` label, host:port), in
    the shape of counter samples: connects, failures, latency buckets, HTTP errors."""
    by_instance: dict[str, dict[str, list[tuple[dict[str, str], float]]]] = {}

    def gather(name: str, expr: str) -> None:
        for labels, value in prometheus.query(expr):
            instance = labels.pop("instance", "")
            by_instance.setdefault(instance, {}).setdefault(name, []).append((labels, value))

    for counter in (m.SSE_CONNECTS, m.SSE_FAILURES):
        gather(m.total(counter), f"sum by (instance) (rate({m.total(counter)}[{window}]))")
    bucket = m.DELIVERY_LATENCY_SECONDS + "_bucket"
    gather(bucket, f"sum by (instance, le) (rate({bucket}[{window}]))")
    errors = m.total(m.HTTP_ERRORS)
    gather(errors, f"sum by (instance, status) (rate({errors}[{window}]))")
    return dict(by_instance)


def _http_error_rates(rates: Samples, host: str, seconds: float, note: str) -> Finding:
    """HTTP error responses per second by status over the sampling interval (the
    runbook's "monitor error rates": 409, 429, 403, 500)."""
    by_status: dict[str, float] = {}
    for labels, grew in rates.get(m.total(m.HTTP_ERRORS), ()):
        status = labels.get("status", "?")
        by_status[status] = by_status.get(status, 0.0) + grew
    per_second = {s: round(n / seconds, 4) for s, n in sorted(by_status.items())} if seconds else {}
    shown = ", ".join(f"{s}: {v:g}/s" for s, v in per_second.items() if v) or "none"
    # The runbook lists these to monitor but gives no threshold: shown, never judged.
    return Finding(
        f"http error rate ({host})",
        Status.OK,
        per_second,
        f"HTTP error responses per second ({note}): {shown}",
    )


def _redis_down_finding(
    name: str, where: str, t: Thresholds, down_for: tuple[float, str] | None
) -> Finding:
    """Redis down: CRITICAL once evidence shows it down longer than the threshold; down
    for a time nothing dates is a WARNING saying so, never a CRITICAL on a guess."""
    if down_for is None:
        return Finding(
            name,
            Status.WARNING,
            None,
            f"{where}: {m.REDIS_UP}=0; Redis is down, duration unknown (no evidence dates "
            "the start: configure services.api.log or run `e2ee-ops redis check` from cron)",
            threshold_crit=t.redis_down_seconds,
            unit="s",
        )
    seconds, source = down_for
    return Finding(
        name,
        Status.CRITICAL if seconds > t.redis_down_seconds else Status.WARNING,
        round(seconds, 1),
        f"{where}: {m.REDIS_UP}=0 for at least {seconds:.0f} s ({source})",
        threshold_crit=t.redis_down_seconds,
        unit="s",
    )


def redis_down_evidence(
    journal: Journal | None, now: datetime | None = None
) -> tuple[float, str] | None:
    """How long Redis has been down by e2ee-ops's own earlier observations: since the
    first check that saw it down after the last that saw it healthy (at least)."""
    if journal is None:
        return None
    start, end = journal_window(journal.entries())
    if start is None or start.at is None or end is not None:
        return None
    now = now or datetime.now(UTC)
    return max(0.0, (now - start.at).total_seconds()), start.source


def counter_deltas(
    later: Samples, earlier: Samples
) -> dict[str, list[tuple[dict[str, str], float]]]:
    """How much each series grew between two samples (a series that shrank was reset by
    a restart: its later value is what it counted since)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name, rows in later.items():
        before = {tuple(sorted(labels.items())): v for labels, v in earlier.get(name, ())}
        out[name] = []
        for labels, value in rows:
            old = before.get(tuple(sorted(labels.items())), 0.0)
            out[name].append((labels, value - old if value >= old else value))
    return out


def check_alerts(
    *,
    apis: Sequence[ApiClient],
    thresholds: Thresholds,
    sample_interval: float = 10.0,
    prometheus: PrometheusQuery | None = None,
    rate_window: str = "5m",
    timeout: float | None = None,
    journal: Journal | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Every alert threshold evaluated now, per API instance; the worst decides. Rates
    come from two samples of each instance's /metrics `sample_interval` seconds apart,
    levels from the second. `journal` dates an outage from earlier observations and
    receives this one's view of Redis."""

    from_prometheus = prometheus_rates(prometheus, rate_window) if prometheus else None

    def probe(api: ApiClient) -> list[Finding]:
        if from_prometheus is not None:
            samples = parse_exposition(api.prometheus_metrics())
            rates: Samples = from_prometheus.get(api.host, {})
            seconds, source = 1.0, f"rate over {rate_window} from Prometheus"
        else:
            first = parse_exposition(api.prometheus_metrics())
            sleep(sample_interval)
            samples = parse_exposition(api.prometheus_metrics())
            rates = counter_deltas(samples, first)
            seconds, source = sample_interval, ""
        return evaluate_samples(
            samples,
            thresholds,
            host=api.host,
            redis_down_for=lambda: redis_down_evidence(journal),
            rates=rates,
            rate_seconds=seconds,
            rate_source=source,
        )

    probes: dict[str, Probe] = {
        f"metrics ({api.host})": (lambda api=api: probe(api))  # type: ignore[misc]
        for api in apis
    }
    report = Report(title="alerts check", findings=run_probes(probes, timeout=timeout))
    report.data["thresholds"] = as_dict(thresholds)
    report.data["rates_from"] = (
        f"Prometheus at {prometheus.host}, rate over {rate_window}"
        if prometheus is not None
        else f"/metrics of each instance sampled twice, {sample_interval:g} s apart"
    )
    redis = [f for f in report.findings if f.name.startswith("redis down >")]
    if redis and all(f.status is not Status.UNKNOWN for f in redis):
        record_observation(
            journal,
            "alerts check",
            any(f.status is not Status.OK for f in redis),  # down, even for "0 s" so far
            [f.summary for f in redis],
        )
    return report
