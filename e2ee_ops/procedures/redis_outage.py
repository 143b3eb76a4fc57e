"""Runbook: Redis Outage Procedures. Detection (`check_redis`), recovery (`recover_redis`).

Detection gathers every symptom the runbook lists: the API's own `redis_status`,
a direct PING and INFO, one SSE heartbeat's `relay_lag`, and messages stored but
not delivered. Recovery restarts Redis, then verifies what the runbook asks, in its
order: PING, metrics back to ok with no lag, a canary message arriving over SSE,
and stored vs delivered for the outage window; the outage goes to the journal.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from e2ee_ops.config import Thresholds
from e2ee_ops.errors import E2eeOpsError, UsageError, VerificationFailed
from e2ee_ops.journal import REDIS_OUTAGE
from e2ee_ops.procedures.probes import Probe, run_probes
from e2ee_ops.status import Finding, Plan, Report, Status, Step, StepRunner, classify

if TYPE_CHECKING:
    from e2ee_ops.adapters.api import ApiClient
    from e2ee_ops.adapters.postgres import DeliveryWindow, OpsDatabase
    from e2ee_ops.adapters.redis_client import RedisProbe
    from e2ee_ops.adapters.restarter import Restarter
    from e2ee_ops.adapters.sentinel import SentinelAdmin
    from e2ee_ops.journal import Journal


@dataclass(frozen=True)
class Canary:
    """Two canary accounts: A sends, B's device receives over SSE."""

    sender: ApiClient
    sender_device: str
    receiver: ApiClient
    receiver_account: str
    receiver_device: str
    delivery_timeout_seconds: float = 15.0  # how long the message may take over SSE


@dataclass
class RedisTargets:
    """Everything the Redis procedures look at or act on."""

    admin_apis: Sequence[ApiClient]
    redis: RedisProbe
    db: OpsDatabase | None
    canary: Canary | None
    thresholds: Thresholds
    restarter: Restarter | None = None
    sentinel: SentinelAdmin | None = None  # redis.sentinel: the Sentinel path
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    progress: Callable[[str], None] = lambda _m: None
    heartbeat_wait_seconds: float = 20.0
    extra: dict[str, Any] = field(default_factory=dict)


# ---- detection --------------------------------------------------------------------------


def metrics_findings(api: ApiClient, thresholds: Thresholds) -> list[Finding]:
    metrics = api.dm_metrics()
    where = f" ({api.host})"
    status = str(metrics.get("redis_status", "unknown"))
    lag = metrics.get("pubsub_lag_seconds")
    findings = [
        Finding(
            name=f"api redis_status{where}",
            status=Status.OK if status == "ok" else Status.CRITICAL,
            value=status,
            summary=f"/dm/metrics on {api.host} says redis_status={status}",
        ),
        Finding(
            name=f"api relay_lag{where}",
            status=Status.CRITICAL if metrics.get("relay_lag") else Status.OK,
            value=bool(metrics.get("relay_lag")),
            summary=f"/dm/metrics on {api.host} says relay_lag={_flag(metrics.get('relay_lag'))}",
        ),
    ]
    if status == "ok" and isinstance(lag, int | float):
        findings.append(
            Finding(
                name=f"pub/sub lag{where}",
                status=classify(lag, warn=thresholds.pubsub_lag_seconds),
                value=round(float(lag), 4),
                summary=f"pub/sub round trip on {api.host} is {lag:.3f} s",
                threshold_warn=thresholds.pubsub_lag_seconds,
                unit="s",
            )
        )
    return findings


def _flag(value: object) -> str:
    return "true" if value else "false"


def ping_findings(redis: RedisProbe) -> list[Finding]:
    try:
        ms = redis.ping()
    except E2eeOpsError as exc:
        # Redis not answering is the outage itself, not an inability to tell.
        return [Finding("redis ping", Status.CRITICAL, "down", f"redis PING failed: {exc}")]
    findings = [
        Finding("redis ping", Status.OK, round(ms, 2), f"redis PONG in {ms:.1f} ms", unit="ms")
    ]
    stats = redis.stats()
    replication = redis.replication()
    # Spikes Redis recorded itself (empty unless latency-monitor-threshold is set).
    spikes = {e.event: e.max_ms for e in redis.latency_latest()}
    rejected = int(stats.get("rejected_connections", 0))
    findings.append(
        Finding(
            name="redis info",
            status=Status.WARNING if rejected else Status.OK,
            value={
                "role": replication.get("role"),
                "instantaneous_ops_per_sec": stats.get("instantaneous_ops_per_sec"),
                "rejected_connections": rejected,
                "pubsub_channels": stats.get("pubsub_channels"),
                "total_connections_received": stats.get("total_connections_received"),
                "latency_spikes_max_ms": spikes,
            },
            summary=(
                f"redis role={replication.get('role')}, "
                f"{stats.get('instantaneous_ops_per_sec')} ops/s, "
                f"{rejected} rejected connections"
            ),
        )
    )
    return findings


def read_heartbeat(canary: Canary, wait_seconds: float) -> dict[str, Any]:
    """The first heartbeat of the canary receiver's stream."""
    for event in canary.receiver.stream(canary.receiver_device, deadline_seconds=wait_seconds):
        if event.event == "heartbeat":
            return event.data
    raise VerificationFailed(
        f"no SSE heartbeat from {canary.receiver.host} within {wait_seconds:g} s"
    )


def _heartbeat_finding(canary: Canary | None, wait_seconds: float) -> Finding:
    if canary is None:
        return Finding(
            "sse heartbeat relay_lag",
            Status.UNKNOWN,
            None,
            "no canary configured: set tokens.canary_b and canary.device_b to read a heartbeat",
        )
    try:
        data = read_heartbeat(canary, wait_seconds)
    except VerificationFailed as exc:
        # A stream that says nothing is no evidence of lag: we could not tell.
        return Finding("sse heartbeat relay_lag", Status.UNKNOWN, None, str(exc))
    lag = bool(data.get("relay_lag"))
    return Finding(
        "sse heartbeat relay_lag",
        Status.CRITICAL if lag else Status.OK,
        lag,
        f"SSE heartbeat says relay_lag={str(lag).lower()}",
    )


def undelivered_finding(db: OpsDatabase | None, thresholds: Thresholds) -> Finding:
    minutes = thresholds.undelivered_window_minutes
    name = f"undelivered messages ({minutes:g} min)"
    if db is None:
        return Finding(name, Status.UNKNOWN, None, "no PostgreSQL configured (postgres.url)")
    count = db.undelivered_recent(minutes)
    return Finding(
        name,
        Status.WARNING if count else Status.OK,
        count,
        f"{count} message(s) of the last {minutes:g} min stored but not delivered",
        threshold_warn=0,
    )


def detection_probes(t: RedisTargets) -> dict[str, Probe]:
    probes: dict[str, Probe] = {}
    for api in t.admin_apis:
        probes[f"api metrics ({api.host})"] = lambda api=api: metrics_findings(api, t.thresholds)  # type: ignore[misc]
    probes["redis ping"] = lambda: ping_findings(t.redis)
    if t.sentinel is not None:
        from e2ee_ops.procedures.redis_sentinel import sentinel_findings

        sentinel = t.sentinel
        probes["sentinel"] = lambda: sentinel_findings(sentinel)
    probes["sse heartbeat relay_lag"] = lambda: _heartbeat_finding(
        t.canary, t.heartbeat_wait_seconds
    )
    probes["undelivered messages"] = lambda: undelivered_finding(t.db, t.thresholds)
    return probes


def check_redis(t: RedisTargets, *, timeout: float | None = None) -> Report:
    findings = run_probes(detection_probes(t), timeout=timeout)
    report = Report(title="redis check", findings=findings)
    down = any(f.name == "redis ping" and f.status is Status.CRITICAL for f in findings)
    if down:
        report.summary = (
            "Redis outage: messages are stored but not pushed; run `e2ee-ops redis recover`"
        )
    return report


# ---- recovery ---------------------------------------------------------------------------


def _redis_up(redis: RedisProbe) -> bool:
    try:
        redis.ping()
        return True
    except E2eeOpsError:
        return False


# Between two looks at a condition recovery waits for (PING, relay_lag, stored vs
# delivered): each look is one cheap request, and a second's poll would add up to a
# second to every verified recovery.
POLL_SECONDS = 0.1


def _wait_until(
    t: RedisTargets,
    deadline_seconds: float,
    predicate: Callable[[], bool],
    interval: float = POLL_SECONDS,
) -> bool:
    end = t.monotonic() + deadline_seconds
    while True:
        if predicate():
            return True
        if t.monotonic() >= end:
            return False
        t.sleep(interval)


def _metrics_clear(apis: Sequence[ApiClient]) -> bool:
    for api in apis:
        try:
            m = api.dm_metrics()
        except E2eeOpsError:
            return False
        if m.get("redis_status") != "ok" or m.get("relay_lag"):
            return False
    return True


@dataclass(frozen=True)
class CanaryResult:
    message_id: int
    latency_ms: float


def send_canary(canary: Canary, *, deadline_seconds: float) -> CanaryResult:
    """Send a canary from A and watch it arrive on B's SSE stream; then acknowledge it."""
    with canary.receiver.open_stream(
        canary.receiver_device, lifetime_seconds=deadline_seconds + 5
    ) as stream:
        if not stream.wait_for(lambda s: s.opened, deadline_seconds):
            raise stream.error or VerificationFailed("the canary stream never opened")
        conversation = canary.sender.create_conversation(canary.receiver_account)
        devices = canary.sender.user_devices(canary.receiver_account)
        if not devices:
            raise VerificationFailed("the canary receiver has no active device")
        sent_at = time.monotonic()
        answer = canary.sender.send_message(
            str(conversation["conversation_id"]),
            sender_device_id=canary.sender_device,
            client_message_id=f"canary-{uuid.uuid4().hex}",
            envelopes=[
                {
                    "device_id": d["device_id"],
                    "bundle_version": d["bundle_version"],
                    # Opaque bytes: a canary carries no plaintext, like any envelope.
                    "ciphertext": _b64(os.urandom(32)),
                }
                for d in devices
            ],
        )
        expected = int(answer["message_id"])
        if not stream.wait_for(lambda s: expected in s.message_ids(), deadline_seconds):
            if stream.error is not None and not isinstance(stream.error, TimeoutError):
                raise stream.error
            raise VerificationFailed(
                f"canary message {expected} did not arrive over SSE within {deadline_seconds:g} s"
            )
        arrived_at = next(
            at
            for at, e in stream.received
            if e.event == "message" and int(e.data.get("message_id", 0)) == expected
        )
        received = stream.message_ids()
    # Everything the canary device received over SSE was delivered to it: say so.
    canary.receiver.ack(canary.receiver_device, sorted(set(received)))
    return CanaryResult(expected, (arrived_at - sent_at) * 1000.0)


@dataclass(frozen=True)
class RelayVerified:
    """What the runbook's verification after Redis is back measured."""

    canary: CanaryResult
    window: DeliveryWindow | None  # None without PostgreSQL
    undelivered: list[dict[str, Any]]

    def record(self) -> dict[str, Any]:
        """Its part of the outage record: stored vs delivered and the canary."""
        w = self.window
        return {
            "stored": w.stored if w else None,
            "delivered": w.delivered if w else None,
            "stored_not_delivered": (w.stored - w.delivered) if w else None,
            "all_delivered": w.all_delivered if w else None,
            "undelivered": self.undelivered,
            "canary_message_id": self.canary.message_id,
            "canary_latency_ms": round(self.canary.latency_ms, 1),
        }


def record_outage(
    plan: Plan, run: StepRunner, journal: Journal | None, record: dict[str, Any]
) -> Plan:
    """The outage record into the plan's data and, as the last step, the journal."""
    plan.data["outage"] = record
    if journal is not None:
        journal.append(REDIS_OUTAGE, command="redis recover", data=record)
        run.done(f"outage recorded in the journal ({journal.path})")
    else:
        run.skip("no journal configured")
    return plan


def verify_relay(
    t: RedisTargets,
    run: StepRunner,
    *,
    window_start: datetime,
    settle_seconds: float,
    stuck: str = "",
) -> RelayVerified | str:
    """The runbook's verification once Redis answers again (after a restart or a
    failover), as three steps of `run`: every instance's metrics clear, a canary arrives
    over SSE, and everything stored since `window_start` is delivered. Returns what was
    measured, or the failed step's outcome (`stuck` is added when the metrics stay bad)."""
    th = t.thresholds
    if not _wait_until(t, th.recover_deadline_seconds, lambda: _metrics_clear(t.admin_apis)):
        return (
            "/dm/metrics still shows redis unavailable or relay_lag after "
            f"{th.recover_deadline_seconds:g} s{stuck}"
        )
    run.done("every API instance reports redis_status=ok and relay_lag=false")

    if t.canary is None:
        return "no canary accounts are configured (tokens.canary_a/b, canary.*)"
    try:
        canary = send_canary(t.canary, deadline_seconds=t.canary.delivery_timeout_seconds)
    except E2eeOpsError as exc:
        return f"canary not delivered: {exc}"
    slow = canary.latency_ms > th.delivery_p99_ms
    run.done(
        f"canary message {canary.message_id} arrived over SSE in {canary.latency_ms:.0f} ms"
        + (f" (over {th.delivery_p99_ms:g} ms)" if slow else ""),
        Status.WARNING if slow else Status.OK,
    )

    window = _settled_window(t, window_start, settle_seconds)
    undelivered = (
        [
            {
                "message_id": u.message_id,
                "created_at": u.created_at.isoformat(),
                "devices_pending": u.devices_pending,
            }
            for u in window.undelivered
        ]
        if window
        else []
    )
    if window is None:
        run.done("no PostgreSQL configured: stored vs delivered not compared", Status.UNKNOWN)
    elif window.all_delivered:
        run.done(
            f"all {window.stored} message(s) stored since {window.start:%H:%M:%S} were delivered"
        )
    else:
        run.done(
            f"{window.stored - window.delivered} of {window.stored} message(s) stored since "
            f"{window.start:%H:%M:%S} are not yet delivered (offline devices?); ids: "
            + ", ".join(str(u["message_id"]) for u in undelivered[:10]),
            Status.WARNING,
        )
    return RelayVerified(canary, window, undelivered)


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


def recovery_plan(t: RedisTargets, *, force: bool) -> Plan:
    restart = (
        t.restarter.describe()
        if t.restarter and t.restarter.spec
        else "(no restart method configured)"
    )
    th = t.thresholds
    steps = [
        Step(f"check Redis with PING; restart only if it is down{' (forced)' if force else ''}"),
        Step(f"restart Redis: {restart}"),
        Step(f"wait for PING (deadline {th.recover_deadline_seconds:g} s)"),
        Step("watch /dm/metrics until redis_status is ok and relay_lag is false"),
        Step(
            "send a canary message from canary A to canary B and see it arrive over SSE "
            f"(latency threshold {th.delivery_p99_ms:g} ms)"
        ),
        Step("compare messages stored vs delivered for the outage window; list any undelivered"),
        Step("record the outage (start, end, duration, counts) in the journal"),
    ]
    return Plan(title="redis recover", steps=steps)


def recover_redis(
    t: RedisTargets,
    *,
    execute: bool,
    force: bool = False,
    since: datetime | None = None,
    journal: Journal | None = None,
    settle_seconds: float = 15.0,
) -> Plan:
    if t.sentinel is not None:
        from e2ee_ops.procedures.redis_sentinel import recover_sentinel

        if force:
            raise UsageError(
                "--force restarts a lone Redis; under Sentinel a healthy primary is not "
                "restarted (that would only cause a failover)",
                hint="drop --force; `redis recover` fails over when the primary is down",
            )
        return recover_sentinel(
            t, execute=execute, since=since, journal=journal, settle_seconds=settle_seconds
        )
    plan = recovery_plan(t, force=force)
    if not execute:
        return plan
    run = StepRunner(plan, t.progress)
    th = t.thresholds
    detected_at = datetime.now(UTC)

    def fail(outcome: str) -> Plan:
        return run.fail(outcome, rest="not run: an earlier verification failed")

    was_down = not _redis_up(t.redis)
    if since is not None:
        window_start, start_source = since, "--since given by the operator"
    else:
        window_start, start_source = _outage_start_estimate(t, detected_at)
    run.done("Redis is down" if was_down else "Redis answers PING")

    if was_down or force:
        if t.restarter is None or t.restarter.spec is None:
            return fail("no restart method is configured for redis (services.redis.restart)")
        try:
            result = t.restarter.restart()
        except E2eeOpsError as exc:
            return fail(f"restart failed: {exc}")
        run.done(f"restarted Redis in {result.seconds:.1f} s")
    else:
        run.skip("skipped: Redis is up (use --force to restart anyway)")

    if not _wait_until(t, th.recover_deadline_seconds, lambda: _redis_up(t.redis)):
        return fail(f"Redis did not answer PING within {th.recover_deadline_seconds:g} s")
    redis_back_at = datetime.now(UTC)
    run.done("Redis answers PING")

    verified = verify_relay(t, run, window_start=window_start, settle_seconds=settle_seconds)
    if isinstance(verified, str):
        return fail(verified)
    ended_at = datetime.now(UTC)
    record = {
        "detected_at": detected_at.isoformat(),
        "start": window_start.isoformat(),
        "start_source": start_source,
        "redis_back_at": redis_back_at.isoformat(),
        "redis_back_source": "Redis answered PING (redis recover)",
        "end": ended_at.isoformat(),
        "duration_seconds": round((redis_back_at - window_start).total_seconds(), 1),
        "was_down": was_down,
        **verified.record(),
    }
    return record_outage(plan, run, journal, record)


def _outage_start_estimate(t: RedisTargets, now: datetime) -> tuple[datetime, str]:
    """When the outage began, at the latest, and the evidence: the oldest message of the
    last hour still undelivered (messages stored while Redis was down are the ones not
    pushed), else the time it was detected."""
    detected = "detection by redis recover (no earlier evidence)"
    if t.db is None:
        return now, detected
    try:
        oldest = t.db.oldest_undelivered(now)
    except E2eeOpsError:
        return now, detected
    if oldest is None or oldest >= now:
        return now, detected
    return oldest, "the oldest message of the last hour not yet delivered (PostgreSQL)"


def _settled_window(
    t: RedisTargets, start: datetime, settle_seconds: float
) -> DeliveryWindow | None:
    """Stored vs delivered since `start`, given clients `settle_seconds` to catch up."""
    if t.db is None:
        return None
    db = t.db

    def probe() -> DeliveryWindow:
        return db.delivery_window(start, datetime.now(UTC) + timedelta(seconds=1))

    window = probe()
    deadline = t.monotonic() + settle_seconds
    while not window.all_delivered and t.monotonic() < deadline:
        t.sleep(POLL_SECONDS)
        window = probe()
    return window
