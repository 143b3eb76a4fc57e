"""`redis check`'s decisions, finding by finding: the exact names, statuses, values and
sentences an on-call engineer reads, the verdict (down, healthy, could not tell) and what
is journalled, from scripted API, Redis, SSE and database answers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from e2ee_ops.adapters.api import SseEvent
from e2ee_ops.adapters.postgres import DeliveryWindow
from e2ee_ops.adapters.redis_client import LatencyEvent
from e2ee_ops.config import Thresholds
from e2ee_ops.errors import ServiceError, UnreachableError, VerificationFailed
from e2ee_ops.journal import REDIS_OBSERVATION, Journal
from e2ee_ops.procedures.redis_outage import (
    _heartbeat_finding,
    check_redis,
    detection_probes,
    metrics_findings,
    ping_findings,
    read_heartbeat,
    redis_down,
    undelivered_finding,
)
from e2ee_ops.status import Finding, Status
from tests.support.redis_fakes import DOWN, HEALTHY, Clock, FakeApi, FakeDb, FakeRedis, targets

OK, WARNING, CRITICAL, UNKNOWN = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN
RUNBOOK = Thresholds()
REFUSED = UnreachableError("connection refused", host="redis")


# ---- /dm/metrics ------------------------------------------------------------------------


def test_healthy_metrics_give_status_relay_lag_and_the_pubsub_round_trip() -> None:
    api = FakeApi("api-1", [{**HEALTHY, "pubsub_lag_seconds": 0.012345678}])
    assert metrics_findings(api, RUNBOOK) == [  # type: ignore[arg-type]
        Finding("api redis_status (api-1)", OK, "ok", "/dm/metrics on api-1 says redis_status=ok"),
        Finding("api relay_lag (api-1)", OK, False, "/dm/metrics on api-1 says relay_lag=false"),
        Finding(
            "pub/sub lag (api-1)",
            OK,
            0.0123,
            "pub/sub round trip on api-1 is 0.012 s",
            threshold_warn=2,
            unit="s",
        ),
    ]


@pytest.mark.parametrize(("lag", "status"), [(1, OK), (2, OK), (2.001, WARNING)])
def test_pubsub_lag_warns_only_above_the_runbook_figure(lag: float, status: Status) -> None:
    api = FakeApi("api-1", [{**HEALTHY, "pubsub_lag_seconds": lag}])
    finding = metrics_findings(api, RUNBOOK)[2]  # type: ignore[arg-type]
    assert (finding.status, finding.value, type(finding.value)) == (status, lag, float)


def test_unavailable_redis_and_relay_lag_are_critical_and_lag_is_not_reported() -> None:
    api = FakeApi("api-2", [{**DOWN, "relay_lag": 1, "pubsub_lag_seconds": 0.5}])
    assert metrics_findings(api, RUNBOOK) == [  # type: ignore[arg-type]
        Finding(
            "api redis_status (api-2)",
            CRITICAL,
            "unavailable",
            "/dm/metrics on api-2 says redis_status=unavailable",
        ),
        Finding(
            "api relay_lag (api-2)", CRITICAL, True, "/dm/metrics on api-2 says relay_lag=true"
        ),
    ]


def test_missing_redis_status_is_unknown_to_the_service_and_critical() -> None:
    [status, lag] = metrics_findings(FakeApi("a", [{"pubsub_lag_seconds": "n/a"}]), RUNBOOK)  # type: ignore[arg-type]
    assert (status.status, status.value, status.summary) == (
        CRITICAL,
        "unknown",
        "/dm/metrics on a says redis_status=unknown",
    )
    assert (lag.status, lag.value) == (OK, False)


def test_a_lag_that_is_not_a_number_adds_no_finding() -> None:
    api = FakeApi("a", [{**HEALTHY, "pubsub_lag_seconds": "0.5"}])
    assert len(metrics_findings(api, RUNBOOK)) == 2  # type: ignore[arg-type]


# ---- PING and INFO ----------------------------------------------------------------------


def test_a_failed_ping_is_the_outage_itself() -> None:
    assert ping_findings(FakeRedis([REFUSED])) == [  # type: ignore[arg-type]
        Finding("redis ping", CRITICAL, "down", "redis PING failed: connection refused")
    ]


def test_a_pong_reports_round_trip_role_stats_and_latency_spikes() -> None:
    redis = FakeRedis(
        [1.236],
        stats={
            "instantaneous_ops_per_sec": 12,
            "pubsub_channels": 3,
            "total_connections_received": 40,
        },
        replication={"role": "master"},
        spikes=[LatencyEvent("command", 1, 5, 9), LatencyEvent("fork", 2, 3, 4)],
    )
    assert ping_findings(redis) == [  # type: ignore[arg-type]
        Finding("redis ping", OK, 1.24, "redis PONG in 1.2 ms", unit="ms"),
        Finding(
            "redis info",
            OK,
            {
                "role": "master",
                "instantaneous_ops_per_sec": 12,
                "rejected_connections": 0,
                "pubsub_channels": 3,
                "total_connections_received": 40,
                "latency_spikes_max_ms": {"command": 9, "fork": 4},
            },
            "redis role=master, 12 ops/s, 0 rejected connections",
        ),
    ]


def test_rejected_connections_warn() -> None:
    redis = FakeRedis([2.0], stats={"rejected_connections": "3"}, replication={"role": "slave"})
    info = ping_findings(redis)[1]  # type: ignore[arg-type]
    assert (info.status, info.value["rejected_connections"], info.summary) == (
        WARNING,
        3,
        "redis role=slave, None ops/s, 3 rejected connections",
    )


# ---- the SSE heartbeat ------------------------------------------------------------------


def _canary_receiving(*events: SseEvent) -> object:
    from tests.support.redis_fakes import canary

    c, _a, b, _s = canary(Clock())
    b.events = list(events)
    return c


def test_the_first_heartbeat_of_the_receiver_stream_is_read() -> None:
    c = _canary_receiving(
        SseEvent("message", None, {"message_id": 1}),
        SseEvent("heartbeat", None, {"relay_lag": True, "n": 1}),
        SseEvent("heartbeat", None, {"relay_lag": False, "n": 2}),
    )
    assert read_heartbeat(c, 2.5) == {"relay_lag": True, "n": 1}  # type: ignore[arg-type]
    assert c.receiver.calls == [("stream", ("dev-b", 2.5))]  # type: ignore[attr-defined]


def test_a_stream_without_heartbeat_fails_to_verify() -> None:
    c = _canary_receiving(SseEvent("message", None, {"message_id": 1}))
    with pytest.raises(VerificationFailed) as raised:
        read_heartbeat(c, 2.5)  # type: ignore[arg-type]
    assert str(raised.value) == "no SSE heartbeat from api-b within 2.5 s"


def test_heartbeat_findings() -> None:
    name = "sse heartbeat relay_lag"
    assert _heartbeat_finding(None, 1) == Finding(
        name,
        UNKNOWN,
        None,
        "no canary configured: set tokens.canary_b and canary.device_b to read a heartbeat",
    )
    silent = _canary_receiving()
    assert _heartbeat_finding(silent, 3) == Finding(  # type: ignore[arg-type]
        name, UNKNOWN, None, "no SSE heartbeat from api-b within 3 s"
    )
    lagging = _canary_receiving(SseEvent("heartbeat", None, {"relay_lag": 1}))
    assert _heartbeat_finding(lagging, 3) == Finding(  # type: ignore[arg-type]
        name, CRITICAL, True, "SSE heartbeat says relay_lag=true"
    )
    fine = _canary_receiving(SseEvent("heartbeat", None, {}))
    assert _heartbeat_finding(fine, 3) == Finding(  # type: ignore[arg-type]
        name, OK, False, "SSE heartbeat says relay_lag=false"
    )


# ---- undelivered messages ---------------------------------------------------------------


def _window(stored: int, delivered: int, deliverable: int, rows: int) -> DeliveryWindow:
    return DeliveryWindow(None, None, stored, delivered, deliverable, rows, [])


def test_undelivered_messages_split_deliverable_from_offline() -> None:
    db = FakeDb(recent=_window(10, 6, 1, 7))
    thresholds = Thresholds(undelivered_window_minutes=2.5)
    assert undelivered_finding(db, thresholds) == Finding(  # type: ignore[arg-type]
        "undelivered messages (2.5 min)",
        WARNING,
        1,
        "1 message(s) of the last 2.5 min not delivered though a recipient device was seen "
        "since; 3 wait for devices not seen since it was stored (4 messages undelivered in "
        "all; the runbook's query counts 7 message-device rows)",
        threshold_warn=0,
    )
    assert db.asked == [("recent_window", 2.5)]


def test_messages_waiting_only_for_offline_devices_are_ok() -> None:
    finding = undelivered_finding(FakeDb(recent=_window(5, 3, 0, 2)), RUNBOOK)  # type: ignore[arg-type]
    assert (finding.status, finding.value) == (OK, 0)


def test_no_database_is_unknown() -> None:
    assert undelivered_finding(None, RUNBOOK) == Finding(
        "undelivered messages (5 min)", UNKNOWN, None, "no PostgreSQL configured (postgres.url)"
    )


# ---- the probes and the verdict ---------------------------------------------------------


def test_one_metrics_probe_per_instance_each_asking_its_own() -> None:
    apis = [FakeApi("a", [{**HEALTHY, "pubsub_lag_seconds": 3}]), FakeApi("b", [DOWN])]
    t = targets(Clock(), apis=apis, db=FakeDb(recent=_window(0, 0, 0, 0)))
    probes = detection_probes(t)
    assert list(probes) == [
        "api metrics (a)",
        "api metrics (b)",
        "redis ping",
        "sse heartbeat relay_lag",
        "undelivered messages",
    ]
    assert [f.value for f in probes["api metrics (b)"]()] == ["unavailable", True]  # type: ignore[union-attr]
    assert [(f.value, f.status) for f in probes["api metrics (a)"]()] == [  # type: ignore[union-attr]
        ("ok", OK),
        (False, OK),
        (3.0, WARNING),  # over the runbook's 2 s
    ]
    assert probes["undelivered messages"]().value == 0  # type: ignore[union-attr]


class Sentinels:
    hosts = ("s1:26379",)

    def views(self) -> list[object]:
        raise UnreachableError("no sentinel answered on s1:26379", host="s1")


def test_a_sentinel_adds_its_probe_before_the_heartbeat() -> None:
    t = targets(Clock(), sentinel=Sentinels())
    probes = detection_probes(t)
    assert list(probes)[-3:] == [
        "sentinel",
        "sse heartbeat relay_lag",
        "undelivered messages",
    ]
    report = check_redis(t)
    assert [f for f in report.findings if f.name == "sentinel"] == [
        Finding("sentinel", UNKNOWN, None, "sentinel: no sentinel answered on s1:26379")
    ]


def test_the_heartbeat_is_waited_for_as_long_as_configured() -> None:
    from tests.support.redis_fakes import canary

    c, _a, b, _s = canary(Clock())
    b.events = [SseEvent("heartbeat", None, {})]
    report = check_redis(targets(Clock(), canary=c, heartbeat_wait_seconds=7.5))
    assert b.calls == [("stream", ("dev-b", 7.5))]
    assert report.title == "redis check"


def _check(tmp_path: Path, *apis: FakeApi, redis: FakeRedis | None = None, **kw: object):  # type: ignore[no-untyped-def]
    journal = Journal(tmp_path / "journal.jsonl")
    command = kw.pop("command", None)
    t = targets(Clock(), apis=list(apis), redis=redis, journal=journal, **kw)
    report = check_redis(t, command=command) if command else check_redis(t)
    observations = [(e.command, e.data) for e in journal.entries(kind=REDIS_OBSERVATION)]
    return report, observations


def test_a_healthy_service_is_journalled_healthy_with_its_evidence(tmp_path: Path) -> None:
    report, observations = _check(tmp_path, FakeApi("a"), redis=FakeRedis([1.0]))
    assert (report.status, report.summary, redis_down(report.findings)) == (UNKNOWN, None, False)
    assert observations == [
        (
            "redis check",
            {
                "down": False,
                "evidence": ["/dm/metrics on a says redis_status=ok", "redis PONG in 1.0 ms"],
            },
        )
    ]


def test_an_outage_the_service_reports_is_critical_and_says_what_to_run(tmp_path: Path) -> None:
    # Everything else healthy: only the API and PING say it.
    report, observations = _check(
        tmp_path, FakeApi("a", [DOWN]), redis=FakeRedis([REFUSED]), db=FakeDb(_window(0, 0, 0, 0))
    )
    ping = next(f for f in report.findings if f.name == "redis ping")
    assert (ping.status, ping.summary) == (CRITICAL, "redis PING failed: connection refused")
    assert report.summary == (
        "Redis outage: messages are stored but not pushed; run `e2ee-ops redis recover`"
    )
    assert [o[1]["down"] for o in observations] == [True]


def test_a_stuck_relay_while_redis_answers_points_at_the_api(tmp_path: Path) -> None:
    report, _ = _check(tmp_path, FakeApi("a", [DOWN]), redis=FakeRedis([1.0]))
    assert report.summary == (
        "the API reports Redis unavailable while Redis answers PING: the relay is "
        "stuck; `e2ee-ops redis recover` restarts the API instances"
    )


def test_a_ping_failing_from_here_while_the_api_is_healthy_is_unknown(tmp_path: Path) -> None:
    report, observations = _check(tmp_path, FakeApi("a"), redis=FakeRedis([REFUSED]))
    ping = next(f for f in report.findings if f.name == "redis ping")
    assert (ping.status, ping.value, ping.summary) == (
        UNKNOWN,
        "down",
        "cannot reach Redis from here (connection refused); "
        "the API reports it healthy (redis_status=ok)",
    )
    assert (report.summary, observations) == (None, [])


def test_a_ping_failing_while_no_instance_answers_is_unknown(tmp_path: Path) -> None:
    api = FakeApi("a", [ServiceError("HTTP 502 from a")])
    report, observations = _check(tmp_path, api, redis=FakeRedis([REFUSED]))
    assert [(f.name, f.status) for f in report.findings][:2] == [
        ("api metrics (a)", UNKNOWN),
        ("redis ping", UNKNOWN),
    ]
    assert report.findings[1].summary == (
        "cannot reach Redis from here (connection refused); no API instance says how Redis is"
    )
    assert observations == []


def test_the_heartbeat_alone_can_say_redis_is_down(tmp_path: Path) -> None:
    from tests.support.redis_fakes import canary

    c, _a, b, _s = canary(Clock())
    b.events = [SseEvent("heartbeat", None, {"relay_lag": True})]
    report, observations = _check(tmp_path, FakeApi("a"), redis=FakeRedis([REFUSED]), canary=c)
    ping = next(f for f in report.findings if f.name == "redis ping")
    assert ping.status is CRITICAL
    assert [o[1]["down"] for o in observations] == [True]


def test_one_unavailable_instance_of_two_is_an_outage() -> None:
    findings = [
        Finding("api redis_status (a)", OK, "ok", ""),
        Finding("api redis_status (b)", CRITICAL, "unavailable", ""),
        Finding("redis ping", OK, 1.0, ""),
    ]
    assert redis_down(findings) is True
    assert redis_down(findings[:1] + findings[2:]) is False
    # A heartbeat that could not be read says nothing; PING must answer for "healthy".
    unread = Finding("sse heartbeat relay_lag", UNKNOWN, None, "")
    assert redis_down([findings[0], unread, findings[2]]) is False
    assert redis_down([findings[0], Finding("redis ping", UNKNOWN, "down", "")]) is None
    assert redis_down([findings[2]]) is None  # no instance says anything


def test_the_watch_journals_under_its_own_name(tmp_path: Path) -> None:
    _, observations = _check(tmp_path, FakeApi("a"), command="redis watch")
    assert [o[0] for o in observations] == ["redis watch"]


def test_a_probe_still_running_at_the_timeout_is_unknown() -> None:
    release = threading.Event()

    class Hanging(FakeApi):
        def dm_metrics(self):  # type: ignore[no-untyped-def]
            release.wait(10)
            return dict(HEALTHY)

    try:
        report = check_redis(targets(Clock(), apis=[Hanging("slow")]), timeout=0.2)
    finally:
        release.set()
    assert report.findings[0] == Finding(
        "api metrics (slow)", UNKNOWN, None, "api metrics (slow): no answer within 0.2 s"
    )
