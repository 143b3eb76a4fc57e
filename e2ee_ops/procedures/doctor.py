"""`doctor`: every read-only check at once, concurrently, for CI smoke runs and on-call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from e2ee_ops.config import Thresholds
from e2ee_ops.procedures.probes import Probe, run_probes
from e2ee_ops.procedures.redis_outage import metrics_findings, ping_findings, undelivered_finding
from e2ee_ops.status import Finding, Report, Status

if TYPE_CHECKING:
    from e2ee_ops.adapters.api import ApiClient
    from e2ee_ops.adapters.migrations import Migrations
    from e2ee_ops.adapters.postgres import OpsDatabase
    from e2ee_ops.adapters.redis_client import RedisProbe
    from e2ee_ops.adapters.sentinel import SentinelAdmin


@dataclass
class DoctorTargets:
    public_apis: Sequence[ApiClient]
    admin_apis: Sequence[ApiClient]
    redis: RedisProbe
    db: OpsDatabase | None
    migrations: Migrations | None
    thresholds: Thresholds
    sentinel: SentinelAdmin | None = None  # redis.sentinel: quorum, primary, replicas


def _health(api: ApiClient) -> list[Finding]:
    health = api.health()
    status = Status.OK if health.http_status == 200 and health.status == "ok" else Status.CRITICAL
    if health.http_status == 200 and health.status == "degraded":
        status = Status.WARNING  # serving, but a dependency is down (Redis: see its checks)
    findings = [
        Finding(
            f"api health ({api.host})",
            status,
            health.status,
            f"/health on {api.host}: {health.status} (database {health.database}, "
            f"redis {health.redis}, version {health.version})",
        )
    ]
    if health.e2ee_dm_enabled is not None:
        enabled = bool(health.e2ee_dm_enabled)
        findings.append(
            Finding(
                f"feature flag ({api.host})",
                Status.OK if enabled else Status.WARNING,
                "enabled" if enabled else "disabled",
                f"E2EE DM is {'enabled' if enabled else 'disabled (feature-flag rollback)'}"
                f" on {api.host}",
            )
        )
    return findings


def _postgres(db: OpsDatabase | None) -> Finding:
    if db is None:
        return Finding("postgres", Status.UNKNOWN, None, "no PostgreSQL configured (postgres.url)")
    version = db.server_version()
    return Finding("postgres", Status.OK, version, f"PostgreSQL {version} at {db.host} answers")


def _schema(migrations: Migrations | None) -> Finding:
    if migrations is None:
        return Finding("schema", Status.UNKNOWN, None, "no PostgreSQL configured (postgres.url)")
    heads, current = set(migrations.heads()), set(migrations.current())
    if not current:
        return Finding("schema", Status.CRITICAL, None, "the database has no Alembic revision")
    if current == heads:
        return Finding("schema", Status.OK, ",".join(sorted(current)), "schema is at Alembic head")
    return Finding(
        "schema",
        Status.WARNING,
        ",".join(sorted(current)),
        f"schema at {', '.join(sorted(current))}, head is {', '.join(sorted(heads))}",
    )


def _otpk(db: OpsDatabase | None, th: Thresholds) -> Finding:
    name = "otpk pools"
    if db is None:
        return Finding(name, Status.UNKNOWN, None, "no PostgreSQL configured (postgres.url)")
    s = db.otpk_summary(critical=th.otpk_critical, warning=th.otpk_warning)
    status = (
        Status.CRITICAL if s.below_critical else Status.WARNING if s.below_warning else Status.OK
    )
    return Finding(
        name,
        status,
        s.below_critical if s.below_critical else s.below_warning,
        f"{s.below_critical} active device(s) under {th.otpk_critical} one-time prekeys, "
        f"{s.below_warning} under {th.otpk_warning}, of {s.devices_active}",
        threshold_warn=0,
        threshold_crit=0,
    )


def doctor_probes(t: DoctorTargets) -> dict[str, Probe]:
    th = t.thresholds
    probes: dict[str, Probe] = {}
    for api in t.public_apis:
        probes[f"api health ({api.host})"] = lambda api=api: _health(api)  # type: ignore[misc]
    for api in t.admin_apis:
        probes[f"api metrics ({api.host})"] = lambda api=api: metrics_findings(api, th)  # type: ignore[misc]
    probes["redis ping"] = lambda: ping_findings(t.redis)
    if t.sentinel is not None:
        from e2ee_ops.procedures.redis_sentinel import sentinel_findings

        sentinel = t.sentinel
        probes["sentinel"] = lambda: sentinel_findings(sentinel)
    probes["postgres"] = lambda: _postgres(t.db)
    probes["schema"] = lambda: _schema(t.migrations)
    probes["otpk pools"] = lambda: _otpk(t.db, th)
    probes["undelivered messages"] = lambda: undelivered_finding(t.db, th)
    return probes


def run_doctor(t: DoctorTargets, *, timeout: float | None = None) -> Report:
    return Report(title="doctor", findings=run_probes(doctor_probes(t), timeout=timeout))
