"""Runbook: Redis Outage Procedures. Detection (`check_redis`), recovery (`recover_redis`).

Detection gathers every symptom the runbook lists: the API's own `redis_status`,
a direct PING and INFO, one SSE heartbeat's `relay_lag`, and messages stored but
not delivered. The verdict is the service's: Redis is down (CRITICAL) only when the
API says so; e2ee-ops failing to PING it while the API reports it healthy is UNKNOWN
(a wrong `redis.url`, a firewall), never an outage.

Recovery decides "down" from several signals over a short window (PINGs retried over
`redis.down_confirm_seconds`, and the API's view): a refused connection that the API
confirms is down; a Redis that accepts connections but does not answer (a stall,
CLIENT PAUSE) is waited for up to the runbook's 60 s before it counts as down; a
Redis the API reports healthy is never restarted without --force. Then it verifies
what the runbook asks, in its order: PING, metrics back to ok with no lag (restarting
the API instances if they still report Redis unavailable while it answers), a canary
message arriving over SSE, and stored vs delivered for the outage window. The outage
is recorded from evidence (see `outage_evidence`); no outage, no record.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from e2ee_ops.config import Thresholds
from e2ee_ops.errors import (
    E2eeOpsError,
    TimedOutError,
    UnreachableError,
    UsageError,
    VerificationFailed,
)
from e2ee_ops.journal import REDIS_OUTAGE
from e2ee_ops.procedures.outage_evidence import (
    DOWN_MARKER,
    UP_MARKER,
    Instant,
    OutageWindow,
    ServerRecord,
    first,
    journal_window,
    log_window,
    record_observation,
    server_record,
)
from e2ee_ops.procedures.probes import Probe, run_probes
from e2ee_ops.status import Finding, Plan, Report, Status, Step, StepRunner, classify

if TYPE_CHECKING:
    from e2ee_ops.adapters.api import ApiClient
    from e2ee_ops.adapters.postgres import DeliveryWindow, OpsDatabase
    from e2ee_ops.adapters.redis_client import RedisProbe
    from e2ee_ops.adapters.restarter import Restarter
    from e2ee_ops.adapters.sentinel import SentinelAdmin
    from e2ee_ops.adapters.service_log import ServiceLog
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
    # The clock the receiver's stream stamps arrivals with (EventStream: time.monotonic).
    monotonic: Callable[[], float] = time.monotonic


@dataclass
class RedisTargets:
    """Everything the Redis procedures look at or act on."""

    admin_apis: Sequence[ApiClient]
    redis: RedisProbe
    db: OpsDatabase | None
    canary: Canary | None
    thresholds: Thresholds
    restarter: Restarter | None = None
    api_restarter: Restarter | None = None  # restarts the API instances (services.api)
    service_log: ServiceLog | None = None  # the API's log, for its "Redis unavailable" lines
    log_markers: tuple[str, str] = (DOWN_MARKER, UP_MARKER)
    journal: Journal | None = None  # earlier observations are read from it, new ones added
    down_confirm_seconds: float = 3.0  # PINGs are retried this long before "down"
    api_catch_up_seconds: float = 30.0  # the API may take this long to see Redis again
    sentinel: SentinelAdmin | None = None  # redis.sentinel: the Sentinel path
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    utcnow: Callable[[], datetime] = lambda: datetime.now(UTC)  # ages of stored messages
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
    """Messages of the last minutes not delivered, split by what they wait for: a device
    that has connected since (deliverable, not delivered: the relay's problem, WARNING)
    or a device offline since (not a Redis problem). The runbook's own count, of
    message-device rows, is shown beside the toolkit's count of messages."""
    minutes = thresholds.undelivered_window_minutes
    name = f"undelivered messages ({minutes:g} min)"
    if db is None:
        return Finding(name, Status.UNKNOWN, None, "no PostgreSQL configured (postgres.url)")
    w = db.recent_window(minutes)
    pending = w.stored - w.delivered
    return Finding(
        name,
        Status.WARNING if w.deliverable else Status.OK,
        w.deliverable,
        f"{w.deliverable} message(s) of the last {minutes:g} min not delivered though a "
        f"recipient device was seen since; {w.waiting_offline} wait for devices not seen "
        f"since it was stored ({pending} messages undelivered in all; the runbook's query counts "
        f"{w.pending_rows} message-device rows)",
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


def _service_view(findings: Sequence[Finding]) -> tuple[bool, bool]:
    """(the service says Redis is down, the service says Redis is healthy)."""
    statuses = [f for f in findings if f.name.startswith("api redis_status")]
    lag = [f for f in findings if f.name == "sse heartbeat relay_lag" and f.value is not None]
    down = any(f.value == "unavailable" for f in statuses) or any(f.value for f in lag)
    healthy = bool(statuses) and all(f.value == "ok" for f in statuses) and not down
    return down, healthy


def reconcile(findings: list[Finding]) -> list[Finding]:
    """A failed PING from here is an outage only when the service agrees: otherwise it is
    UNKNOWN (e2ee-ops cannot reach Redis, which says nothing about Redis)."""
    down, healthy = _service_view(findings)
    out = []
    for f in findings:
        if f.name == "redis ping" and f.status is Status.CRITICAL and not down:
            reason = f.summary.removeprefix("redis PING failed: ")
            said = (
                "the API reports it healthy (redis_status=ok)"
                if healthy
                else "no API instance says how Redis is"
            )
            f = Finding(
                f.name, Status.UNKNOWN, f.value, f"cannot reach Redis from here ({reason}); {said}"
            )
        out.append(f)
    return out


def redis_down(findings: Sequence[Finding]) -> bool | None:
    """The verdict of a detection run: True (the service says Redis is down), False
    (the service says healthy and PING answers), None (could not tell)."""
    down, healthy = _service_view(findings)
    if down:
        return True
    ping = [f for f in findings if f.name == "redis ping"]
    if healthy and ping and ping[0].status is Status.OK:
        return False
    return None


def observe(journal: Journal | None, command: str, findings: Sequence[Finding]) -> None:
    """Journal what a check saw of Redis (see `record_observation`)."""
    evidence = [
        f.summary for f in findings if f.name.startswith(("api redis_status", "redis ping"))
    ]
    record_observation(journal, command, redis_down(findings), evidence)


def check_redis(
    t: RedisTargets, *, timeout: float | None = None, command: str = "redis check"
) -> Report:
    findings = reconcile(run_probes(detection_probes(t), timeout=timeout))
    report = Report(title="redis check", findings=findings)
    down = redis_down(findings)
    ping_ok = any(f.name == "redis ping" and f.status is Status.OK for f in findings)
    if down and ping_ok:
        report.summary = (
            "the API reports Redis unavailable while Redis answers PING: the relay is "
            "stuck; `e2ee-ops redis recover` restarts the API instances"
        )
    elif down:
        report.summary = (
            "Redis outage: messages are stored but not pushed; run `e2ee-ops redis recover`"
        )
    observe(t.journal, command, findings)
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
    what: str = "it",
    interval: float = POLL_SECONDS,
    every: float = 5.0,
) -> bool:
    """Poll `predicate` until it holds or `deadline_seconds` pass, saying every `every`
    seconds what is awaited and for how long already."""
    started = t.monotonic()
    end = started + deadline_seconds
    said = started
    while True:
        if predicate():
            return True
        now = t.monotonic()
        if now >= end:
            return False
        if now - said >= every:
            said = now
            t.progress(f"waiting for {what}: {now - started:.0f} s of {deadline_seconds:g} s")
        t.sleep(interval)


def _metrics(apis: Sequence[ApiClient]) -> list[dict[str, Any]]:
    """Every reachable instance's /dm/metrics (an unreachable one adds nothing)."""
    answers = []
    for api in apis:
        try:
            answers.append(api.dm_metrics())
        except E2eeOpsError:
            continue
    return answers


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
class RedisState:
    """What several PINGs over a short window and the API together say about Redis."""

    verdict: str  # "up", "down", "stalled", "unreachable from here", "unknown"
    sentence: str
    service_down: bool  # an API instance reports redis_status=unavailable
    service_healthy: bool  # every API instance reports redis_status=ok
    record: ServerRecord


def assess_redis(t: RedisTargets) -> RedisState:
    """PINGs over `down_confirm_seconds` (first: the API's own answer may wait on a
    stalled Redis), then every instance's view of Redis."""
    errors: list[E2eeOpsError] = []
    answered_ms: float | None = None
    end = t.monotonic() + t.down_confirm_seconds
    while True:
        try:
            answered_ms = t.redis.ping()
            break
        except E2eeOpsError as exc:
            errors.append(exc)
        if t.monotonic() >= end:
            break
        t.sleep(1.0)
    answers = _metrics(t.admin_apis)
    statuses = [m.get("redis_status") for m in answers]
    service_down = "unavailable" in statuses
    service_healthy = (
        bool(statuses) and len(statuses) == len(t.admin_apis) and all(s == "ok" for s in statuses)
    )
    record = server_record(answers)
    said = (
        "the API reports Redis unavailable"
        if service_down
        else "the API reports Redis healthy"
        if service_healthy
        else "no API instance says how Redis is"
    )
    if answered_ms is not None:
        sentence = f"Redis answers PING in {answered_ms:.0f} ms; {said}"
        return RedisState("up", sentence, service_down, service_healthy, record)
    tried = f"{len(errors)} PING(s) over {t.down_confirm_seconds:g} s failed ({errors[-1]})"
    if any(isinstance(e, TimedOutError) for e in errors):
        verdict, why = "stalled", f"{tried}: Redis does not answer in time; {said}"
    elif service_healthy:
        verdict, why = "unreachable from here", f"{tried}, but {said}: cannot reach Redis from here"
    elif service_down or all(isinstance(e, UnreachableError) for e in errors):
        # Refused every time and nothing says it is healthy: down.
        verdict, why = "down", f"{tried}; {said}"
    else:
        verdict, why = "unknown", f"{tried} and {said}"
    return RedisState(verdict, why, service_down, service_healthy, record)


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
        sent_at = canary.monotonic()
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

    def record(self) -> dict[str, Any]:
        """Its part of the outage record: stored vs delivered and the canary."""
        return {
            **_delivery_record(self.window),
            "canary_message_id": self.canary.message_id,
            "canary_latency_ms": round(self.canary.latency_ms, 1),
        }


def record_outage(
    plan: Plan,
    run: StepRunner,
    journal: Journal | None,
    record: dict[str, Any],
    *,
    sentence: str = "",
) -> Plan:
    """The outage record into the plan's data and, as the last step, the journal."""
    plan.data["outage"] = record
    if journal is not None:
        journal.append(REDIS_OUTAGE, command="redis recover", data=record)
        run.done(
            f"outage recorded in the journal ({journal.path})"
            + (f": {sentence}" if sentence else "")
        )
    else:
        run.skip("no journal configured")
    return plan


def verify_relay(
    t: RedisTargets,
    run: StepRunner,
    *,
    window_start: datetime | Callable[[], datetime | None] | None,
    settle_seconds: float,
    stuck: str = "",
    api_restarter: Restarter | None = None,
    outage: bool = True,
) -> RelayVerified | str:
    """The runbook's verification once Redis answers again (after a restart or a
    failover), as three steps of `run`: every instance's metrics clear (with
    `api_restarter`, instances still reporting Redis unavailable after
    `t.api_catch_up_seconds` are restarted), a canary arrives over SSE, and what was
    stored since `window_start` (a time, or a function giving it once the metrics are
    clear; None: unknown) is delivered or waits for offline devices; without an `outage`
    there is nothing to compare.
    Returns what was measured, or the failed step's outcome (`stuck` is added when the
    metrics stay bad)."""
    th = t.thresholds

    def clear(seconds: float) -> bool:
        return _wait_until(
            t,
            seconds,
            lambda: _metrics_clear(t.admin_apis),
            "every API instance to report redis_status=ok",
        )

    api_note = ""
    if api_restarter is None or api_restarter.spec is None:
        if not clear(th.recover_deadline_seconds):
            return (
                "/dm/metrics still shows redis unavailable or relay_lag after "
                f"{th.recover_deadline_seconds:g} s{stuck}; restart the API instances "
                "(configure services.api.restart to let recover do it)"
            )
    elif not clear(min(t.api_catch_up_seconds, th.recover_deadline_seconds)):
        try:
            api_restarter.restart()
        except E2eeOpsError as exc:
            return f"restarting the API instances failed: {exc}"
        api_note = " after restarting the API instances (they reported Redis unavailable)"
        if not clear(th.recover_deadline_seconds):
            return (
                "/dm/metrics still shows redis unavailable or relay_lag after restarting the "
                f"API instances and {th.recover_deadline_seconds:g} s; check the API's log"
            )
    run.done("every API instance reports redis_status=ok and relay_lag=false" + api_note)

    if t.canary is None:
        return "no canary accounts are configured (tokens.canary_a/b, canary.*)"
    try:
        canary = send_canary(t.canary, deadline_seconds=t.canary.delivery_timeout_seconds)
    except E2eeOpsError as exc:
        return f"canary not delivered: {exc}; check the API's log and SSE proxy"
    slow = canary.latency_ms > th.delivery_p99_ms
    run.done(
        f"canary message {canary.message_id} arrived over SSE in {canary.latency_ms:.0f} ms"
        + (f" (over {th.delivery_p99_ms:g} ms)" if slow else ""),
        Status.WARNING if slow else Status.OK,
    )

    if not outage:
        run.skip("skipped: no outage (nothing was down), so no outage window to compare")
        return RelayVerified(canary, None)
    start = window_start() if callable(window_start) else window_start
    delivery = _settled_window(t, start, settle_seconds)
    status, sentence = _delivery_sentence(delivery, start)
    run.done(sentence, status)
    return RelayVerified(canary, delivery)


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")


def recovery_plan(t: RedisTargets, *, force: bool) -> Plan:
    restart = (
        t.restarter.describe()
        if t.restarter and t.restarter.spec
        else "(no restart method configured)"
    )
    api_restart = (
        t.api_restarter.describe()
        if t.api_restarter and t.api_restarter.spec
        else "(no restart method configured for services.api)"
    )
    th = t.thresholds
    steps = [
        Step(
            f"decide whether Redis is down: PINGs over {t.down_confirm_seconds:g} s and the "
            "API's redis_status; a stalled Redis is waited for up to "
            f"{th.redis_down_seconds:g} s; one the API reports healthy is not restarted"
            + (" (--force: restart anyway)" if force else "")
        ),
        Step(f"restart Redis only if it is down: {restart}"),
        Step(f"wait for PING (deadline {th.recover_deadline_seconds:g} s)"),
        Step(
            "watch /dm/metrics until redis_status is ok and relay_lag is false; if the API "
            f"still reports Redis unavailable after {t.api_catch_up_seconds:g} s while Redis "
            f"answers PING, restart the API instances: {api_restart}"
        ),
        Step(
            "send a canary message from canary A to canary B and see it arrive over SSE "
            f"(latency threshold {th.delivery_p99_ms:g} ms)"
        ),
        Step(
            "compare messages stored vs delivered for the outage window: deliverable but "
            "not delivered vs waiting for offline devices"
        ),
        Step(
            "record the outage in the journal: start and end, each with its evidence (the "
            "server's relay record, the service log, earlier checks, --since), or unknown"
        ),
    ]
    return Plan(title="redis recover", steps=steps)


IN_FLIGHT_SECONDS = 5.0  # a message this young may still be on its way

NEXT_STEP = (
    "check the Redis host (service status, its log, disk and memory), then run "
    "`e2ee-ops redis check` and `e2ee-ops redis recover --execute` again"
)


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
    journal = journal or t.journal
    detected_at = datetime.now(UTC)

    def fail(outcome: str, status: Status = Status.CRITICAL) -> Plan:
        plan.summary = outcome
        return run.fail(outcome, status=status)

    state = assess_redis(t)
    if state.verdict == "stalled":
        # Slow is not down: wait for it, up to the runbook's "unavailable > 60 s".
        t.progress(f"{state.sentence}; waiting up to {th.redis_down_seconds:g} s for it")
        stalled_at = t.monotonic()
        if _wait_until(t, th.redis_down_seconds, lambda: _redis_up(t.redis), "Redis to answer"):
            waited = t.monotonic() - stalled_at
            state = assess_redis(t)
            state = replace(
                state,
                sentence=f"Redis was slow to answer for {waited:.0f} s and answers again; "
                + state.sentence,
            )
        else:
            state = assess_redis(t)
            if state.verdict == "stalled":
                state = replace(
                    state,
                    verdict="unreachable from here" if state.service_healthy else "down",
                    sentence=f"Redis did not answer for {th.redis_down_seconds:g} s; "
                    + state.sentence,
                )
    restart_redis = state.verdict == "down" or force
    if state.verdict in ("unreachable from here", "unknown") and not force:
        run.done(state.sentence, Status.UNKNOWN)
        return fail(
            "not restarting Redis: "
            + (
                "the API reports it healthy, so check redis.url and the network from here"
                if state.verdict == "unreachable from here"
                else "nothing shows it is down; use --force to restart it anyway"
            ),
            Status.UNKNOWN,
        )
    run.done(state.sentence)
    outage = state.verdict == "down" or state.service_down or since is not None

    if restart_redis:
        if t.restarter is None or t.restarter.spec is None:
            return fail("no restart method is configured for redis (services.redis.restart)")
        try:
            result = t.restarter.restart()
        except E2eeOpsError as exc:
            return fail(f"restart failed: {exc}; {NEXT_STEP}")
        run.done(f"restarted Redis in {result.seconds:.1f} s")
    else:
        run.skip("skipped: Redis answers PING (use --force to restart anyway)")

    if not _wait_until(
        t, th.recover_deadline_seconds, lambda: _redis_up(t.redis), "Redis to answer PING"
    ):
        return fail(
            f"Redis did not answer PING within {th.recover_deadline_seconds:g} s; {NEXT_STEP}"
        )
    run.done("Redis answers PING")

    window: OutageWindow | None = None

    def start_of_window() -> datetime | None:
        nonlocal window
        window = outage_window(
            t,
            since=since,
            at_detection=state.record,
            detected_at=detected_at,
            fallback_end=Instant(
                datetime.now(UTC),
                "e2ee-ops: every API instance reported redis_status=ok (at the latest)",
            ),
        )
        return window.start.at

    verified = verify_relay(
        t,
        run,
        window_start=start_of_window,
        settle_seconds=settle_seconds,
        api_restarter=t.api_restarter,
        outage=outage,
    )
    if isinstance(verified, str):
        return fail(verified)
    if window is None:
        run.skip("skipped: no outage, no record")
        plan.summary = "no outage: Redis and the API are healthy and a canary went through"
        return plan
    record: dict[str, Any] = {
        # The outage: from losing Redis to the service having it again, each end with
        # the evidence that dates it, or None and "unknown".
        "start": window.start.as_dict()["at"],
        "start_source": window.start.source,
        "redis_back_at": window.end.as_dict()["at"],
        "redis_back_source": window.end.source,
        "duration_seconds": window.duration_seconds,
        "duration": window.as_dict()["duration"],
        # The recovery: detected, then verified (canary, stored vs delivered) at `end`.
        "detected_at": detected_at.isoformat(),
        "end": datetime.now(UTC).isoformat(),
        "verdict": state.verdict,
        "redis_restarted": restart_redis,
        **verified.record(),
    }
    plan.summary = window.sentence()
    return record_outage(plan, run, journal, record, sentence=window.sentence())


def outage_window(
    t: RedisTargets,
    *,
    since: datetime | None,
    at_detection: ServerRecord,
    detected_at: datetime,
    fallback_end: Instant | None,
) -> OutageWindow:
    """The outage's start and end from the evidence there is, each naming its source."""
    after = server_record(_metrics(t.admin_apis))
    # A completed window is this outage's only when it ended after it was detected.
    recent = detected_at - timedelta(seconds=t.down_confirm_seconds)
    server_start = at_detection.down_since
    server_end = None
    if after.last_regained and after.last_regained.at:
        if after.last_regained.at >= recent:
            server_start = server_start or after.last_lost
            server_end = after.last_regained
    log_start = log_end = None
    if t.service_log is not None:
        try:
            lines = t.service_log.matching(t.log_markers)
        except E2eeOpsError as exc:
            t.progress(f"the service log gave no evidence: {exc}")
        else:
            found = log_window(
                lines,
                where=t.service_log.describe(),
                down=t.log_markers[0],
                up=t.log_markers[1],
            )
            ended = found.regained.at if found and found.regained else None
            if found is not None and (ended is None or ended >= recent):
                log_start, log_end = found.lost, found.regained
    journal_start = journal_end = None
    if t.journal is not None:
        journal_start, journal_end = journal_window(t.journal.entries())
    # journal_window dates an end only after a start; `first` skips what has no time.
    given = Instant(since, "--since (given by the operator)")
    return OutageWindow(
        start=first(given, server_start, log_start, journal_start),
        end=first(server_end, log_end, journal_end, fallback_end),
    )


def _settled_window(
    t: RedisTargets, start: datetime | None, settle_seconds: float
) -> DeliveryWindow | None:
    """Stored vs delivered from the outage's start until now, given clients
    `settle_seconds` to catch up; None without a database or a known start."""
    if t.db is None or start is None:
        return None
    db = t.db

    def probe() -> DeliveryWindow:
        return db.delivery_window(start, t.utcnow() + timedelta(seconds=1))

    def pending(w: DeliveryWindow) -> set[int]:
        return {u.message_id for u in w.undelivered}

    def in_flight(w: DeliveryWindow) -> bool:
        now = t.utcnow()
        return any((now - u.created_at).total_seconds() < IN_FLIGHT_SECONDS for u in w.undelivered)

    # Wait while something could still arrive: a message for a device seen since, one
    # stored moments ago, or pending messages that change between probes. Messages that
    # only wait, unchanged, for devices not seen since are offline phones: no reason to wait.
    delivery, before = probe(), None
    deadline = t.monotonic() + settle_seconds
    while (
        not delivery.all_delivered
        and (delivery.deliverable or in_flight(delivery) or pending(delivery) != before)
        and t.monotonic() < deadline
    ):
        before = pending(delivery)
        t.sleep(POLL_SECONDS)
        delivery = probe()
    return delivery


def _delivery_sentence(
    delivery: DeliveryWindow | None, start: datetime | None
) -> tuple[Status, str]:
    if delivery is None:
        why = (
            "the outage start is unknown (give --since)"
            if start is None
            else ("no PostgreSQL configured")
        )
        return Status.UNKNOWN, f"stored vs delivered not compared: {why}"
    since = f"since {delivery.start:%H:%M:%S}" if delivery.start else ""
    counts = (
        f"(counting messages; the runbook's query counts message-device rows: "
        f"{delivery.pending_rows} undelivered)"
    )
    if delivery.all_delivered:
        return Status.OK, f"all {delivery.stored} message(s) stored {since} were delivered"
    offline = (
        f"{delivery.waiting_offline} wait for devices not seen since they were stored "
        "(offline phones, not a Redis problem)"
    )
    if not delivery.deliverable:
        return Status.OK, (
            f"{delivery.delivered} of {delivery.stored} message(s) stored {since} delivered; "
            f"{offline} {counts}"
        )
    ids = ", ".join(str(u.message_id) for u in delivery.undelivered if u.deliverable)
    return Status.WARNING, (
        f"{delivery.deliverable} of {delivery.stored} message(s) stored {since} are not "
        f"delivered though a recipient device was seen since (ids {ids}); {offline} {counts}"
    )


def _delivery_record(delivery: DeliveryWindow | None) -> dict[str, Any]:
    if delivery is None:
        return {
            "stored": None,
            "delivered": None,
            "stored_not_delivered": None,
            "deliverable_not_delivered": None,
            "waiting_offline": None,
            "runbook_pending_rows": None,
            "all_delivered": None,
            "undelivered": [],
        }
    return {
        "stored": delivery.stored,
        "delivered": delivery.delivered,
        "stored_not_delivered": delivery.stored - delivery.delivered,
        "deliverable_not_delivered": delivery.deliverable,
        "waiting_offline": delivery.waiting_offline,
        "runbook_pending_rows": delivery.pending_rows,
        "all_delivered": delivery.all_delivered,
        "undelivered": [
            {
                "message_id": u.message_id,
                "created_at": u.created_at.isoformat(),
                "devices_pending": u.devices_pending,
                "deliverable": u.deliverable,
            }
            for u in delivery.undelivered
        ],
    }
