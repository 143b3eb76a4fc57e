"""`doctor` findings from given answers: health and the feature flag of each instance,
PostgreSQL, the schema against Alembic's heads and the prekey pools, with the API, the
database, Redis and Alembic replaced by small stand-ins."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from e2ee_ops.adapters.api import Health
from e2ee_ops.adapters.postgres import OtpkSummary
from e2ee_ops.config import Thresholds
from e2ee_ops.errors import UnreachableError
from e2ee_ops.procedures.doctor import DoctorTargets, doctor_probes, run_doctor
from e2ee_ops.status import Finding, Status


def health(http_status: int = 200, status: str = "ok", enabled: bool | None = True) -> Health:
    return Health(http_status, status, "ok", "ok", enabled, "1.2.3", "i-1")


@dataclass
class Api:
    host: str
    answer: Health = field(default_factory=health)
    metrics: dict[str, Any] = field(
        default_factory=lambda: {"redis_status": "ok", "relay_lag": False, "pubsub_lag_seconds": 3}
    )
    release: threading.Event | None = None

    def health(self) -> Health:
        if self.release is not None:
            self.release.wait(30)
        return self.answer

    def dm_metrics(self) -> dict[str, Any]:
        return self.metrics


class Redis:
    def ping(self) -> float:
        raise UnreachableError("connection refused", host="redis")


@dataclass
class Window:
    stored: int = 0
    delivered: int = 0
    deliverable: int = 0
    waiting_offline: int = 0
    pending_rows: int = 0


@dataclass
class Db:
    pools: OtpkSummary
    host: str = "db.example"
    asked: list[tuple[int, int]] = field(default_factory=list)

    def server_version(self) -> str:
        return "16.4"

    def otpk_summary(self, *, critical: int, warning: int) -> OtpkSummary:
        self.asked.append((critical, warning))
        return self.pools

    def recent_window(self, minutes: float) -> Window:
        return Window()


@dataclass
class Alembic:
    head: list[str]
    at: list[str]

    def heads(self) -> list[str]:
        return self.head

    def current(self) -> list[str]:
        return self.at


def targets(
    *,
    public: list[Api] | None = None,
    db: Db | None = None,
    migrations: Alembic | None = None,
    thresholds: Thresholds | None = None,
    sentinel: Any = None,
) -> DoctorTargets:
    return DoctorTargets(
        public_apis=public or [],
        admin_apis=[],
        redis=Redis(),  # type: ignore[arg-type]
        db=db,  # type: ignore[arg-type]
        migrations=migrations,  # type: ignore[arg-type]
        thresholds=thresholds or Thresholds(),
        sentinel=sentinel,
    )


def by_name(t: DoctorTargets) -> dict[str, Finding]:
    return {f.name: f for f in run_doctor(t).findings}


def test_probe_names_in_order() -> None:
    t = targets(public=[Api("a:1"), Api("b:2")])
    t.admin_apis = [Api("a:1")]  # type: ignore[list-item]
    assert list(doctor_probes(t)) == [
        "api health (a:1)",
        "api health (b:2)",
        "api metrics (a:1)",
        "redis ping",
        "postgres",
        "schema",
        "otpk pools",
        "undelivered messages",
    ]


class Sentinels:
    def views(self) -> list[Any]:
        raise UnreachableError("no sentinel of s1:26379 answered", host="s1")


def test_sentinels_are_asked_when_configured() -> None:
    found = by_name(targets(sentinel=Sentinels()))
    assert found["sentinel"] == Finding(
        "sentinel", Status.UNKNOWN, None, "sentinel: no sentinel of s1:26379 answered"
    )


def test_each_instance_is_asked_about_its_own_health() -> None:
    t = targets(public=[Api("a:1"), Api("b:2", health(503, "error", None))])
    t.admin_apis = [Api("a:1"), Api("b:2", metrics={"redis_status": "down", "relay_lag": True})]  # type: ignore[list-item]
    found = by_name(t)
    assert found["api health (a:1)"].status is Status.OK
    assert found["api health (b:2)"].status is Status.CRITICAL
    assert found["api redis_status (a:1)"].status is Status.OK
    assert found["pub/sub lag (a:1)"].status is Status.WARNING  # 3 s > the 2 s threshold
    assert found["api redis_status (b:2)"].status is Status.CRITICAL
    assert "feature flag (b:2)" not in found


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (health(200, "ok"), Status.OK),
        (health(200, "degraded"), Status.WARNING),
        (health(503, "degraded"), Status.CRITICAL),
        (health(503, "ok"), Status.CRITICAL),
        (health(200, "error"), Status.CRITICAL),
    ],
)
def test_health_status(answer: Health, status: Status) -> None:
    finding = by_name(targets(public=[Api("api.example:443", answer)]))[
        "api health (api.example:443)"
    ]
    assert finding == Finding(
        "api health (api.example:443)",
        status,
        answer.status,
        f"/health on api.example:443: {answer.status} (database ok, redis ok, version 1.2.3)",
    )


def test_the_feature_flag_is_reported_when_the_service_says() -> None:
    on = by_name(targets(public=[Api("h")]))["feature flag (h)"]
    assert on == Finding("feature flag (h)", Status.OK, "enabled", "E2EE DM is enabled on h")
    off = by_name(targets(public=[Api("h", health(enabled=False))]))["feature flag (h)"]
    assert off == Finding(
        "feature flag (h)",
        Status.WARNING,
        "disabled",
        "E2EE DM is disabled (feature-flag rollback) on h",
    )


def test_without_postgres_its_checks_are_unknown() -> None:
    found = by_name(targets())
    for name in ("postgres", "schema", "otpk pools"):
        assert found[name] == Finding(
            name, Status.UNKNOWN, None, "no PostgreSQL configured (postgres.url)"
        )


def test_postgres_answers_with_its_version() -> None:
    found = by_name(targets(db=Db(OtpkSummary(3, 0, 0, 20))))
    assert found["postgres"] == Finding(
        "postgres", Status.OK, "16.4", "PostgreSQL 16.4 at db.example answers"
    )


@pytest.mark.parametrize(
    ("heads", "current", "finding"),
    [
        (
            ["b"],
            [],
            Finding("schema", Status.CRITICAL, None, "the database has no Alembic revision"),
        ),
        (["b"], ["b"], Finding("schema", Status.OK, "b", "schema is at Alembic head")),
        (
            ["c", "d"],
            ["d", "c"],
            Finding("schema", Status.OK, "c,d", "schema is at Alembic head"),
        ),
        (
            ["d", "c"],
            ["b", "a"],
            Finding("schema", Status.WARNING, "a,b", "schema at a, b, head is c, d"),
        ),
    ],
)
def test_schema_against_the_heads(heads: list[str], current: list[str], finding: Finding) -> None:
    assert by_name(targets(migrations=Alembic(heads, current)))["schema"] == finding


@pytest.mark.parametrize(
    ("pools", "status", "value"),
    [
        (OtpkSummary(12, 2, 5, 1), Status.CRITICAL, 2),
        (OtpkSummary(12, 0, 5, 6), Status.WARNING, 5),
        (OtpkSummary(12, 0, 0, 30), Status.OK, 0),
    ],
)
def test_otpk_pools(pools: OtpkSummary, status: Status, value: int) -> None:
    db = Db(pools)
    th = Thresholds(otpk_critical=4, otpk_warning=11)
    finding = by_name(targets(db=db, thresholds=th))["otpk pools"]
    assert db.asked == [(4, 11)]
    assert finding == Finding(
        "otpk pools",
        status,
        value,
        f"{pools.below_critical} active device(s) under 4 one-time prekeys, "
        f"{pools.below_warning} under 11, of 12",
        threshold_warn=0,
        threshold_crit=0,
    )


def test_the_undelivered_count_uses_the_database_and_thresholds() -> None:
    found = by_name(
        targets(
            db=Db(OtpkSummary(1, 0, 0, 20)), thresholds=Thresholds(undelivered_window_minutes=7)
        )
    )
    assert found["undelivered messages (7 min)"].status is Status.OK


def test_the_timeout_bounds_the_whole_run() -> None:
    release = threading.Event()
    try:
        report = run_doctor(targets(public=[Api("slow", release=release)]), timeout=0.05)
    finally:
        release.set()
    assert report.title == "doctor"
    assert report.findings[0] == Finding(
        "api health (slow)", Status.UNKNOWN, None, "api health (slow): no answer within 0.05 s"
    )


class Stuck:
    """Every collaborator of doctor at once, each call waiting until released."""

    host = "stuck"

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def __getattr__(self, name: str) -> Any:
        def wait(*args: Any, **kwargs: Any) -> Any:
            self.release.wait(30)
            raise UnreachableError("released", host="stuck")

        return wait


def test_each_probe_that_does_not_answer_is_named() -> None:
    release = threading.Event()
    stuck = Stuck(release)
    t = targets(public=[stuck], db=stuck, migrations=stuck, sentinel=stuck)  # type: ignore[list-item]
    t.admin_apis = [stuck]  # type: ignore[list-item]
    t.redis = stuck  # type: ignore[assignment]
    try:
        report = run_doctor(t, timeout=0.05)
    finally:
        release.set()
    names = [
        "api health (stuck)",
        "api metrics (stuck)",
        "redis ping",
        "sentinel",
        "postgres",
        "schema",
        "otpk pools",
        "undelivered messages",
    ]
    assert report.findings == [
        Finding(name, Status.UNKNOWN, None, f"{name}: no answer within 0.05 s") for name in names
    ]
