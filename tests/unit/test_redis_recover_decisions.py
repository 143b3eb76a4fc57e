"""`redis recover`'s decisions from scripted API, Redis, SSE and database answers on a fake
clock: whether Redis is down, stalled or unreachable from here, whether it is restarted,
each step's exact outcome and status, the canary against the runbook's 500 ms, stored vs
delivered, and the outage record with the evidence of each end."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from e2ee_ops.adapters.postgres import DeliveryWindow, UndeliveredMessage
from e2ee_ops.config import Thresholds
from e2ee_ops.errors import (
    ActionFailed,
    AuthError,
    ServiceError,
    TimedOutError,
    UnreachableError,
    UsageError,
    VerificationFailed,
)
from e2ee_ops.journal import REDIS_OBSERVATION, REDIS_OUTAGE, Journal
from e2ee_ops.procedures.outage_evidence import Instant, ServerRecord
from e2ee_ops.procedures.redis_outage import (
    NEXT_STEP,
    CanaryResult,
    RelayVerified,
    _delivery_record,
    _delivery_sentence,
    _metrics,
    _metrics_clear,
    _settled_window,
    _wait_until,
    assess_redis,
    outage_window,
    record_outage,
    recover_redis,
    recovery_plan,
    send_canary,
    verify_relay,
)
from e2ee_ops.status import Plan, Status, Step, StepRunner
from tests.support.redis_fakes import (
    DOWN,
    HEALTHY,
    Clock,
    FakeApi,
    FakeDb,
    FakeLog,
    FakeRedis,
    FakeRestarter,
    FakeStream,
    Script,
    canary,
    targets,
)

OK, WARNING, CRITICAL, UNKNOWN = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN
REFUSED = UnreachableError("connection refused", host="redis")
SLOW = TimedOutError("PING timed out after 1 s", host="redis")
T0 = datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)


def outcomes(plan: Plan) -> list[tuple[Status | None, str | None]]:
    return [(s.status, s.outcome) for s in plan.steps]


# ---- waiting ----------------------------------------------------------------------------


def test_a_wait_says_every_five_seconds_what_it_awaits_and_gives_up_at_its_deadline() -> None:
    clock = Clock()
    t = targets(clock)
    assert not _wait_until(t, 12, lambda: False, "Godot", interval=2.5)
    assert t.extra["progress"] == [
        "waiting for Godot: 5 s of 12 s",
        "waiting for Godot: 10 s of 12 s",
    ]
    assert (clock.sleeps, clock.now) == ([2.5] * 5, 1012.5)


def test_a_wait_gives_up_exactly_at_its_deadline_and_names_it_by_default() -> None:
    clock = Clock()
    t = targets(clock)
    assert not _wait_until(t, 10, lambda: False, interval=2.5)
    assert (clock.sleeps, t.extra["progress"]) == ([2.5] * 4, ["waiting for it: 5 s of 10 s"])


def test_a_wait_ends_as_soon_as_the_condition_holds() -> None:
    clock = Clock()
    answers = Script([False, False, True])
    assert _wait_until(targets(clock), 60, answers)
    assert clock.sleeps == [0.1, 0.1]


def test_metrics_of_the_reachable_instances_and_clear_only_when_all_are() -> None:
    down = FakeApi("b", [ServiceError("HTTP 502")])
    assert _metrics([FakeApi("a"), down, FakeApi("c", [DOWN])]) == [HEALTHY, DOWN]  # type: ignore[list-item]
    assert _metrics_clear([FakeApi("a"), FakeApi("c")])  # type: ignore[list-item]
    assert not _metrics_clear([FakeApi("a"), down])  # type: ignore[list-item]
    assert not _metrics_clear([FakeApi("a", [{"redis_status": "ok", "relay_lag": True}])])  # type: ignore[list-item]
    assert not _metrics_clear([FakeApi("a", [{"redis_status": "degraded"}]), FakeApi("c")])  # type: ignore[list-item]


# ---- is Redis down? ---------------------------------------------------------------------


def test_a_redis_that_answers_is_up() -> None:
    clock = Clock()
    state = assess_redis(targets(clock, redis=FakeRedis([2.6])))
    assert (state.verdict, state.sentence) == (
        "up",
        "Redis answers PING in 3 ms; the API reports Redis healthy",
    )
    assert (state.service_down, state.service_healthy, clock.sleeps) == (False, True, [])


def test_refused_pings_are_retried_for_the_confirm_window_and_the_api_confirms_down() -> None:
    clock = Clock()
    redis = FakeRedis([REFUSED])
    t = targets(clock, apis=[FakeApi("a", [DOWN])], redis=redis, down_confirm_seconds=3.0)
    state = assess_redis(t)
    assert (state.verdict, state.sentence) == (
        "down",
        "4 PING(s) over 3 s failed (connection refused); the API reports Redis unavailable",
    )
    assert (redis.pings.calls, clock.sleeps) == (4, [1.0, 1.0, 1.0])
    assert (state.service_down, state.service_healthy) == (True, False)


def test_refused_pings_while_the_api_is_healthy_are_unreachable_from_here() -> None:
    t = targets(Clock(), redis=FakeRedis([REFUSED]), down_confirm_seconds=0.5)
    state = assess_redis(t)
    assert (state.verdict, state.sentence) == (
        "unreachable from here",
        "2 PING(s) over 0.5 s failed (connection refused), but the API reports Redis healthy: "
        "cannot reach Redis from here",
    )


def test_pings_that_time_out_are_a_stall() -> None:
    t = targets(Clock(), redis=FakeRedis([REFUSED, SLOW]), down_confirm_seconds=1)
    state = assess_redis(t)
    assert (state.verdict, state.sentence) == (
        "stalled",
        "2 PING(s) over 1 s failed (PING timed out after 1 s): Redis does not answer in time; "
        "the API reports Redis healthy",
    )


def test_refused_pings_and_no_instance_answering_is_down() -> None:
    api = FakeApi("a", [ServiceError("HTTP 502")])
    state = assess_redis(targets(Clock(), apis=[api], redis=FakeRedis([REFUSED])))
    assert (state.verdict, state.sentence) == (
        "down",
        "4 PING(s) over 3 s failed (connection refused); no API instance says how Redis is",
    )


def test_other_ping_failures_with_no_instance_answering_cannot_tell() -> None:
    api = FakeApi("a", [ServiceError("HTTP 502")])
    pings = FakeRedis([REFUSED, AuthError("NOAUTH"), AuthError("WRONGPASS")])
    state = assess_redis(targets(Clock(), apis=[api], redis=pings, down_confirm_seconds=2))
    assert (state.verdict, state.sentence) == (
        "unknown",
        "3 PING(s) over 2 s failed (WRONGPASS) and no API instance says how Redis is",
    )


def test_healthy_means_every_instance_answers_ok() -> None:
    half = [FakeApi("a"), FakeApi("b", [ServiceError("HTTP 502")])]
    state = assess_redis(targets(Clock(), apis=half, redis=FakeRedis([REFUSED])))
    assert (state.verdict, state.service_healthy) == ("down", False)
    odd = [FakeApi("a"), FakeApi("b", [{"relay_lag": False}])]
    assert assess_redis(targets(Clock(), apis=odd)).sentence == (
        "Redis answers PING in 2 ms; no API instance says how Redis is"
    )


def test_the_state_carries_the_servers_relay_record() -> None:
    api = FakeApi("a", [{**DOWN, "redis_unavailable_since": T0.isoformat()}])
    state = assess_redis(targets(Clock(), apis=[api]))
    assert state.record.down_since == Instant(
        T0, "/dm/metrics redis_unavailable_since (an instance)"
    )


# ---- the canary ---------------------------------------------------------------------------


def test_the_canary_is_sent_to_every_device_seen_arriving_and_everything_received_acked() -> None:
    clock = Clock()
    devices = [
        {"device_id": "d1", "bundle_version": 3},
        {"device_id": "d2", "bundle_version": 5},
    ]
    stream = FakeStream(clock, latency_ms=250.0, also=[9, 3, 9])
    c, a, b, _ = canary(clock, stream, timeout=4.0, devices=devices, message_id=11)
    result = send_canary(c, deadline_seconds=4.0)
    assert result == CanaryResult(11, 250.0)
    assert b.calls == [("open_stream", ("dev-b", 9.0)), ("ack", ("dev-b", [3, 9, 11]))]
    assert [name for name, _ in a.calls] == ["create_conversation", "user_devices", "send_message"]
    assert a.calls[0][1] == a.calls[1][1] == "acct-b"
    conversation, sender_device, client_id, envelopes = a.calls[2][1]
    assert (conversation, sender_device, client_id[:7], len(client_id)) == (
        "42",
        "dev-a",
        "canary-",
        39,
    )
    assert [(e["device_id"], e["bundle_version"]) for e in envelopes] == [("d1", 3), ("d2", 5)]
    # 32 random bytes each: opaque, and no two alike.
    assert [len(base64.b64decode(e["ciphertext"])) for e in envelopes] == [32, 32]
    assert envelopes[0]["ciphertext"] != envelopes[1]["ciphertext"]
    assert stream.waits == [4.0, 4.0]


def test_the_canary_latency_is_its_own_arrival_not_the_first_message_nor_one_without_id() -> None:
    clock = Clock()
    stream = FakeStream(clock, latency_ms=250.0, also=[None, 4])
    c, *_ = canary(clock, stream, message_id=1)
    assert send_canary(c, deadline_seconds=4.0) == CanaryResult(1, 250.0)


def test_a_stream_that_never_opens_fails_with_its_own_error_or_says_so() -> None:
    clock = Clock()
    c, _, _, _ = canary(clock, FakeStream(clock, opens=False))
    with pytest.raises(VerificationFailed, match="^the canary stream never opened$"):
        send_canary(c, deadline_seconds=1)
    broken = FakeStream(clock, opens=False, error=ActionFailed("HTTP 401 on the stream"))
    c, a, _, _ = canary(clock, broken)
    with pytest.raises(ActionFailed, match="^HTTP 401 on the stream$"):
        send_canary(c, deadline_seconds=1)
    assert a.calls == []


def test_a_receiver_without_devices_gets_no_canary() -> None:
    c, a, _, _ = canary(Clock(), devices=[])
    with pytest.raises(VerificationFailed, match="^the canary receiver has no active device$"):
        send_canary(c, deadline_seconds=1)
    assert [name for name, _ in a.calls] == ["create_conversation", "user_devices"]


def test_a_canary_that_does_not_arrive_fails_with_the_stream_error_unless_a_timeout() -> None:
    clock = Clock()
    c, _, b, _ = canary(clock, FakeStream(clock, arrives=False))
    with pytest.raises(
        VerificationFailed, match="^canary message 7 did not arrive over SSE within 2.5 s$"
    ):
        send_canary(c, deadline_seconds=2.5)
    timed_out = FakeStream(clock, arrives=False, error=TimeoutError("read timed out"))
    c, _, b, _ = canary(clock, timed_out)
    with pytest.raises(VerificationFailed, match="did not arrive over SSE within 2.5 s$"):
        send_canary(c, deadline_seconds=2.5)
    cut = FakeStream(clock, arrives=False, error=ActionFailed("stream cut by the proxy"))
    c, _, b, _ = canary(clock, cut)
    with pytest.raises(ActionFailed, match="^stream cut by the proxy$"):
        send_canary(c, deadline_seconds=2.5)
    assert [name for name, _ in b.calls] == ["open_stream"]


# ---- verification once Redis answers ----------------------------------------------------


def _verify(
    t: Any, *, window_start: Any = None, api_restarter: Any = None, **kw: Any
) -> tuple[RelayVerified | str, Plan]:
    plan = Plan("verify", [Step("metrics"), Step("canary"), Step("stored vs delivered")])
    run = StepRunner(plan)
    verified = verify_relay(
        t,
        run,
        window_start=window_start,
        settle_seconds=1.0,
        api_restarter=api_restarter,
        **kw,
    )
    return verified, plan


@pytest.mark.parametrize(
    ("latency_ms", "status", "note"),
    [(499.0, OK, ""), (500.0, OK, ""), (501.0, WARNING, " (over 500 ms)")],
)
def test_the_canary_warns_only_above_the_runbook_delivery_p99(
    latency_ms: float, status: Status, note: str
) -> None:
    clock = Clock()
    c, *_ = canary(clock, FakeStream(clock, latency_ms=latency_ms))
    verified, plan = _verify(targets(clock, canary=c))
    assert isinstance(verified, RelayVerified)
    assert outcomes(plan)[1] == (
        status,
        f"canary message 7 arrived over SSE in {latency_ms:.0f} ms{note}",
    )


def test_without_an_outage_window_stored_vs_delivered_is_skipped() -> None:
    clock = Clock()
    c, *_ = canary(clock)
    verified, plan = _verify(targets(clock, canary=c), window_start=T0, outage=False)
    assert verified == RelayVerified(CanaryResult(7, 125.0), None)
    assert outcomes(plan) == [
        (OK, "every API instance reports redis_status=ok and relay_lag=false"),
        (OK, "canary message 7 arrived over SSE in 125 ms"),
        (OK, "skipped: no outage (nothing was down), so no outage window to compare"),
    ]
    assert [s.executed for s in plan.steps] == [True, True, False]


def test_an_unknown_outage_start_is_not_compared() -> None:
    clock = Clock()
    c, *_ = canary(clock)
    verified, plan = _verify(targets(clock, canary=c, db=FakeDb()), window_start=None)
    assert isinstance(verified, RelayVerified) and verified.window is None
    assert outcomes(plan)[2] == (
        UNKNOWN,
        "stored vs delivered not compared: the outage start is unknown (give --since)",
    )


@pytest.mark.parametrize("start", [T0, lambda: T0], ids=["time", "function"])
def test_a_known_start_compares_stored_and_delivered_since_then(start: Any) -> None:
    clock = Clock()
    c, *_ = canary(clock)
    db = FakeDb(windows=[DeliveryWindow(None, None, 4, 4, 0, 0, [])])
    verified, plan = _verify(targets(clock, canary=c, db=db), window_start=start)
    assert isinstance(verified, RelayVerified) and verified.window is not None
    assert outcomes(plan)[2] == (OK, "all 4 message(s) stored since 03:00:00 were delivered")
    assert verified.record() == {
        **_delivery_record(verified.window),
        "canary_message_id": 7,
        "canary_latency_ms": 125.0,
    }


def test_a_known_start_without_a_database_is_not_compared() -> None:
    clock = Clock()
    c, *_ = canary(clock)
    _, plan = _verify(targets(clock, canary=c), window_start=T0)
    assert outcomes(plan)[2] == (
        UNKNOWN,
        "stored vs delivered not compared: no PostgreSQL configured",
    )


def test_metrics_that_stay_bad_without_an_api_restart_method_fail_with_what_to_do() -> None:
    clock = Clock()
    t = targets(
        clock, apis=[FakeApi("a", [DOWN])], thresholds=Thresholds(recover_deadline_seconds=8)
    )
    verified, plan = _verify(t, stuck="; the relay is stuck")
    assert verified == (
        "/dm/metrics still shows redis unavailable or relay_lag after 8 s; the relay is stuck; "
        "restart the API instances (configure services.api.restart to let recover do it)"
    )
    assert clock.now == pytest.approx(1008.0, abs=0.11)
    verified, _ = _verify(targets(Clock(), apis=[FakeApi("a", [DOWN])]))
    assert verified == (
        "/dm/metrics still shows redis unavailable or relay_lag after 300 s; "
        "restart the API instances (configure services.api.restart to let recover do it)"
    )
    assert t.extra["progress"][0] == (
        "waiting for every API instance to report redis_status=ok: 5 s of 8 s"
    )


def test_an_unconfigured_api_restarter_is_not_used() -> None:
    clock = Clock()
    api = FakeApi("a", [DOWN])
    restarter = FakeRestarter(
        spec=None, on_restart=lambda: setattr(api, "metrics", Script([HEALTHY]))
    )
    t = targets(clock, apis=[api], thresholds=Thresholds(recover_deadline_seconds=2))
    verified, _ = _verify(t, api_restarter=restarter)
    assert isinstance(verified, str) and restarter.restarts == 0


def test_instances_still_reporting_redis_unavailable_are_restarted_after_the_catch_up() -> None:
    clock = Clock()
    api = FakeApi("a", [DOWN])
    restarter = FakeRestarter(on_restart=lambda: setattr(api, "metrics", Script([HEALTHY])))
    c, *_ = canary(clock)
    t = targets(clock, apis=[api], canary=c, api_catch_up_seconds=4.0)
    verified, plan = _verify(t, window_start=lambda: None, api_restarter=restarter)
    assert isinstance(verified, RelayVerified) and restarter.restarts == 1
    assert clock.now == pytest.approx(1004.0, abs=0.11)
    assert outcomes(plan)[0] == (
        OK,
        "every API instance reports redis_status=ok and relay_lag=false after restarting "
        "the API instances (they reported Redis unavailable)",
    )


def test_the_catch_up_is_bounded_by_the_recover_deadline() -> None:
    clock = Clock()
    api = FakeApi("a", [DOWN])
    restarter = FakeRestarter(on_restart=lambda: setattr(api, "metrics", Script([HEALTHY])))
    c, *_ = canary(clock)
    t = targets(
        clock,
        apis=[api],
        canary=c,
        api_catch_up_seconds=30.0,
        thresholds=Thresholds(recover_deadline_seconds=3),
    )
    _verify(t, window_start=lambda: None, api_restarter=restarter)
    assert clock.now == pytest.approx(1003.0, abs=0.11)


def test_a_failed_api_restart_and_metrics_bad_after_it_fail_the_step() -> None:
    clock = Clock()
    failing = FakeRestarter(error=ActionFailed("kubectl rollout restart failed"))
    t = targets(clock, apis=[FakeApi("a", [DOWN])], api_catch_up_seconds=1.0)
    verified, _ = _verify(t, api_restarter=failing)
    assert verified == "restarting the API instances failed: kubectl rollout restart failed"
    t = targets(
        Clock(),
        apis=[FakeApi("a", [DOWN])],
        api_catch_up_seconds=1.0,
        thresholds=Thresholds(recover_deadline_seconds=7),
    )
    verified, _ = _verify(t, api_restarter=FakeRestarter())
    assert verified == (
        "/dm/metrics still shows redis unavailable or relay_lag after restarting the API "
        "instances and 7 s; check the API's log"
    )


def test_no_canary_or_a_lost_canary_fails_verification() -> None:
    verified, _ = _verify(targets(Clock()))
    assert verified == "no canary accounts are configured (tokens.canary_a/b, canary.*)"
    clock = Clock()
    c, *_ = canary(clock, FakeStream(clock, arrives=False), timeout=6.0)
    verified, _ = _verify(targets(clock, canary=c))
    assert verified == (
        "canary not delivered: canary message 7 did not arrive over SSE within 6 s; "
        "check the API's log and SSE proxy"
    )


# ---- stored vs delivered ----------------------------------------------------------------


NOW = T0 + timedelta(minutes=10)  # the wall clock of the stored-vs-delivered tests


def _undelivered(message_id: int, age: float, seen: int) -> UndeliveredMessage:
    return UndeliveredMessage(message_id, NOW - timedelta(seconds=age), 2, seen)


def test_the_window_is_read_again_until_deliverable_messages_arrive() -> None:
    clock = Clock()
    late = DeliveryWindow(T0, None, 3, 2, 1, 1, [_undelivered(5, 60, 1)])
    done = DeliveryWindow(T0, None, 3, 3, 0, 0, [])
    db = FakeDb(windows=[late, late, done])
    settled = _settled_window(targets(clock, db=db, utcnow=lambda: NOW), T0, 10.0)
    assert settled is not None and (settled.delivered, settled.start) == (3, T0)
    assert clock.sleeps == [0.1, 0.1]
    # Up to a second past now, so that a message stored this instant is counted.
    assert db.asked == [("delivery_window", T0, NOW + timedelta(seconds=1))] * 3


def test_messages_waiting_unchanged_for_offline_devices_are_not_waited_for() -> None:
    clock = Clock()
    offline = DeliveryWindow(T0, None, 3, 2, 0, 1, [_undelivered(5, 60, 0)])
    db = FakeDb(windows=[offline])
    settled = _settled_window(targets(clock, db=db, utcnow=lambda: NOW), T0, 10.0)
    assert settled is not None and settled.undelivered == offline.undelivered
    assert len(db.asked) == 2


def test_a_message_in_flight_is_waited_for_until_the_settle_time() -> None:
    young = DeliveryWindow(T0, None, 1, 0, 0, 1, [_undelivered(5, 0, 0)])
    db = FakeDb(windows=[young])
    clock = Clock(0.0)  # five 0.1 s polls add up to exactly 0.5
    settled = _settled_window(targets(clock, db=db, utcnow=lambda: NOW), T0, 0.5)
    assert settled is not None and settled.undelivered == young.undelivered
    assert clock.sleeps == [0.1] * 5


@pytest.mark.parametrize(("age", "looks"), [(4.999, 6), (5.0, 2)])
def test_a_message_is_in_flight_for_five_seconds(age: float, looks: int) -> None:
    clock = Clock(0.0)
    waiting = DeliveryWindow(T0, None, 1, 0, 0, 1, [UndeliveredMessage(5, T0, 2, 0)])
    db = FakeDb(windows=[waiting])
    t = targets(clock, db=db, utcnow=lambda: T0 + timedelta(seconds=age))
    _settled_window(t, T0, 0.5)  # five 0.1 s polls while in flight
    assert len(db.asked) == looks
    assert db.asked[0][2] == T0 + timedelta(seconds=age + 1)


def test_no_database_or_no_start_reads_nothing() -> None:
    assert _settled_window(targets(Clock()), T0, 1.0) is None
    db = FakeDb()
    assert _settled_window(targets(Clock(), db=db), None, 1.0) is None
    assert db.asked == []


def test_delivery_sentences() -> None:
    assert _delivery_sentence(None, T0) == (
        UNKNOWN,
        "stored vs delivered not compared: no PostgreSQL configured",
    )
    assert _delivery_sentence(DeliveryWindow(None, None, 2, 2, 0, 0, []), None) == (
        OK,
        "all 2 message(s) stored  were delivered",
    )
    counts = "(counting messages; the runbook's query counts message-device rows: 4 undelivered)"
    offline = (
        "wait for devices not seen since they were stored (offline phones, not a Redis problem)"
    )
    assert _delivery_sentence(DeliveryWindow(T0, None, 5, 3, 0, 4, []), T0) == (
        OK,
        f"3 of 5 message(s) stored since 03:00:00 delivered; 2 {offline} {counts}",
    )
    pending = [_undelivered(8, 60, 1), _undelivered(9, 60, 0), _undelivered(10, 60, 2)]
    assert _delivery_sentence(DeliveryWindow(T0, None, 6, 3, 2, 4, pending), T0) == (
        WARNING,
        "2 of 6 message(s) stored since 03:00:00 are not delivered though a recipient device "
        f"was seen since (ids 8, 10); 1 {offline} {counts}",
    )


def test_the_delivery_record() -> None:
    at = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    window = DeliveryWindow(T0, None, 6, 3, 1, 4, [UndeliveredMessage(8, at, 2, 1)])
    assert _delivery_record(window) == {
        "stored": 6,
        "delivered": 3,
        "stored_not_delivered": 3,
        "deliverable_not_delivered": 1,
        "waiting_offline": 2,
        "runbook_pending_rows": 4,
        "all_delivered": False,
        "undelivered": [
            {
                "message_id": 8,
                "created_at": "2026-11-29T02:00:00+00:00",
                "devices_pending": 2,
                "deliverable": True,
            }
        ],
    }
    assert _delivery_record(None) == {
        "stored": None,
        "delivered": None,
        "stored_not_delivered": None,
        "deliverable_not_delivered": None,
        "waiting_offline": None,
        "runbook_pending_rows": None,
        "all_delivered": None,
        "undelivered": [],
    }


def test_the_relay_record_rounds_the_canary_latency() -> None:
    assert RelayVerified(CanaryResult(4, 123.456), None).record() == {
        **_delivery_record(None),
        "canary_message_id": 4,
        "canary_latency_ms": 123.5,
    }


# ---- the outage record ------------------------------------------------------------------


def test_the_record_goes_to_the_plan_and_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    plan = Plan("p", [Step("record")])
    record_outage(plan, StepRunner(plan), journal, {"start": None}, sentence="outage from x")
    assert plan.data == {"outage": {"start": None}}
    assert [(e.kind, e.command, e.data) for e in journal.entries()] == [
        (REDIS_OUTAGE, "redis recover", {"start": None})
    ]
    assert outcomes(plan) == [
        (OK, f"outage recorded in the journal ({journal.path}): outage from x")
    ]
    plan = Plan("p", [Step("record")])
    record_outage(plan, StepRunner(plan), journal, {})
    assert outcomes(plan) == [(OK, f"outage recorded in the journal ({journal.path})")]
    plan = Plan("p", [Step("record")])
    record_outage(plan, StepRunner(plan), None, {"start": None})
    assert (outcomes(plan), plan.data) == (
        [(OK, "no journal configured")],
        {"outage": {"start": None}},
    )


NONE = ServerRecord(None, None, None)


def _evidence(t: Any, **kw: Any) -> Any:
    kw.setdefault("since", None)
    kw.setdefault("at_detection", NONE)
    kw.setdefault("detected_at", T0)
    kw.setdefault("fallback_end", None)
    return outage_window(t, **kw)


def _lines(*pairs: tuple[datetime, str]) -> list[str]:
    return [f"{at.isoformat()} api[1]: {text}" for at, text in pairs]


def test_the_operator_given_start_wins_and_the_fallback_end_is_last() -> None:
    end = Instant(T0, "e2ee-ops: now")
    window = _evidence(targets(Clock()), since=T0 - timedelta(minutes=5), fallback_end=end)
    assert window.start == Instant(T0 - timedelta(minutes=5), "--since (given by the operator)")
    assert window.end == end
    assert _evidence(targets(Clock())).start.at is None


def test_the_servers_completed_window_dates_an_outage_that_ended_after_detection() -> None:
    lost, regained = T0 - timedelta(seconds=50), T0 - timedelta(seconds=2)
    api = FakeApi(
        "a",
        [
            {
                **HEALTHY,
                "last_redis_outage": {
                    "lost_at": lost.isoformat(),
                    "regained_at": regained.isoformat(),
                },
            }
        ],
    )
    window = _evidence(targets(Clock(), apis=[api], down_confirm_seconds=3.0))
    assert (window.start.at, window.end.at) == (lost, regained)
    # Regained exactly at detection minus the confirm window still counts.
    window = _evidence(targets(Clock(), apis=[api], down_confirm_seconds=2.0))
    assert (window.start.at, window.end.at) == (lost, regained)
    assert window.start.source == "/dm/metrics last_redis_outage.lost_at (an instance)"
    # Ended before detection (minus the confirm window): an earlier outage, not this one.
    window = _evidence(targets(Clock(), apis=[api], down_confirm_seconds=1.0))
    assert (window.start.at, window.end.at) == (None, None)
    # The instance's own "down since" at detection is the better start.
    since = Instant(lost - timedelta(seconds=5), "at detection")
    window = _evidence(targets(Clock(), apis=[api]), at_detection=ServerRecord(since, None, None))
    assert (window.start, window.end.at) == (since, regained)


def test_the_service_log_dates_an_outage_that_ended_after_detection() -> None:
    lost, back = T0 - timedelta(seconds=40), T0 - timedelta(seconds=1)
    log = FakeLog(_lines((lost, "Redis unavailable: refused"), (back, "Redis available again")))
    t = targets(Clock(), service_log=log)
    window = _evidence(t)
    assert (window.start.at, window.end.at) == (lost, back)
    assert window.start.source == "service log api.log: first 'Redis unavailable' line"
    assert log.asked == [("Redis unavailable", "Redis available again")]
    at_the_edge = _evidence(targets(Clock(), service_log=log, down_confirm_seconds=1.0))
    assert (at_the_edge.start.at, at_the_edge.end.at) == (lost, back)
    old = FakeLog(
        _lines((lost, "Redis unavailable"), (T0 - timedelta(seconds=4), "Redis available again"))
    )
    assert _evidence(targets(Clock(), service_log=old)).start.at is None
    ongoing = FakeLog(_lines((lost, "relay: REDIS DOWN")))
    t = targets(Clock(), service_log=ongoing, log_markers=("redis down", "redis up"))
    window = _evidence(t)
    assert (window.start.at, window.end.at) == (lost, None)
    # The configured markers date both ends.
    custom = FakeLog(_lines((lost, "relay: REDIS DOWN"), (back, "relay: redis up")))
    t = targets(Clock(), service_log=custom, log_markers=("redis down", "redis up"))
    window = _evidence(t)
    assert (window.start.at, window.end.at) == (lost, back)


def test_an_unreadable_service_log_is_no_evidence_and_says_so() -> None:
    t = targets(Clock(), service_log=FakeLog(ServiceError("cannot read the service log x")))
    assert _evidence(t).start.at is None
    assert t.extra["progress"] == [
        "the service log gave no evidence: cannot read the service log x"
    ]


def test_the_journal_dates_start_and_end_from_earlier_checks(tmp_path: Path) -> None:
    stamps = iter([T0 - timedelta(seconds=30), T0 - timedelta(seconds=10)])
    journal = Journal(tmp_path / "j.jsonl", clock=lambda: next(stamps))
    journal.append(REDIS_OBSERVATION, command="redis check", data={"down": True})
    journal.append(REDIS_OBSERVATION, command="redis watch", data={"down": False})
    window = _evidence(targets(Clock(), journal=journal), fallback_end=Instant(T0, "now"))
    assert (window.start.at, window.end.at) == (
        T0 - timedelta(seconds=30),
        T0 - timedelta(seconds=10),
    )
    assert window.end.source == "journal: seen healthy again by `redis watch`"


def test_the_journal_end_without_its_start_is_not_used(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", clock=lambda: T0)
    journal.append(REDIS_OBSERVATION, command="redis check", data={"down": False})
    end = Instant(T0, "now")
    assert _evidence(targets(Clock(), journal=journal), fallback_end=end).end == end


# ---- the plan ----------------------------------------------------------------------------


def test_the_plan_names_the_restart_methods_and_the_runbook_figures() -> None:
    t = targets(
        Clock(),
        restarter=FakeRestarter("systemctl restart redis"),
        api_restarter=FakeRestarter("systemctl restart api"),
        down_confirm_seconds=2.5,
        api_catch_up_seconds=20,
    )
    assert [s.description for s in recovery_plan(t, force=True).steps] == [
        "decide whether Redis is down: PINGs over 2.5 s and the API's redis_status; a stalled "
        "Redis is waited for up to 60 s; one the API reports healthy is not restarted "
        "(--force: restart anyway)",
        "restart Redis only if it is down: run `systemctl restart redis`",
        "wait for PING (deadline 300 s)",
        "watch /dm/metrics until redis_status is ok and relay_lag is false; if the API still "
        "reports Redis unavailable after 20 s while Redis answers PING, restart the API "
        "instances: run `systemctl restart api`",
        "send a canary message from canary A to canary B and see it arrive over SSE (latency "
        "threshold 500 ms)",
        "compare messages stored vs delivered for the outage window: deliverable but not "
        "delivered vs waiting for offline devices",
        "record the outage in the journal: start and end, each with its evidence (the server's "
        "relay record, the service log, earlier checks, --since), or unknown",
    ]
    bare = recovery_plan(targets(Clock(), restarter=FakeRestarter(None)), force=False)
    assert bare.steps[0].description.endswith("one the API reports healthy is not restarted")
    assert bare.steps[1].description == (
        "restart Redis only if it is down: (no restart method configured)"
    )
    assert bare.steps[3].description.endswith(
        "restart the API instances: (no restart method configured for services.api)"
    )
    assert (bare.title, bare.executed) == ("redis recover", False)


def test_without_execute_nothing_is_asked() -> None:
    redis = FakeRedis([REFUSED])
    plan = recover_redis(targets(Clock(), redis=redis, restarter=FakeRestarter()), execute=False)
    assert (plan.executed, redis.pings.calls) == (False, 0)
    forced = recover_redis(targets(Clock(), redis=redis), execute=False, force=True)
    assert forced.steps[0].description.endswith(" (--force: restart anyway)")


def test_under_sentinel_recovery_is_the_sentinels_with_every_option_passed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from e2ee_ops.procedures import redis_sentinel

    calls: list[tuple[Any, dict[str, Any]]] = []
    answer = Plan("redis recover (sentinel)")
    monkeypatch.setattr(
        redis_sentinel, "recover_sentinel", lambda t, **kw: calls.append((t, kw)) or answer
    )
    t = targets(Clock(), sentinel=object())
    journal = Journal(Path("unused.jsonl"))
    plan = recover_redis(t, execute=True, since=T0, journal=journal, settle_seconds=2.5)
    assert plan is answer
    assert calls == [(t, {"execute": True, "since": T0, "journal": journal, "settle_seconds": 2.5})]


def test_force_under_sentinel_is_refused() -> None:
    with pytest.raises(UsageError) as raised:
        recover_redis(targets(Clock(), sentinel=object()), execute=False, force=True)
    assert raised.value.message == (
        "--force restarts a lone Redis; under Sentinel a healthy primary is not restarted "
        "(that would only cause a failover)"
    )
    assert raised.value.hint == "drop --force; `redis recover` fails over when the primary is down"


# ---- recovery, end to end over fakes ----------------------------------------------------


class World:
    """A Redis that is down until restarted, an API that reports it, a canary, a journal."""

    def __init__(self, tmp_path: Path, *, redis: list[Any], metrics: list[Any], **kw: Any) -> None:
        self.clock = Clock()
        self.redis = FakeRedis(redis)
        self.api = FakeApi("a", metrics)
        self.journal = Journal(tmp_path / "journal.jsonl")
        self.restarter = FakeRestarter(on_restart=self.back)
        c, *_ = canary(self.clock)
        kw.setdefault("restarter", self.restarter)
        self.t = targets(
            self.clock,
            apis=[self.api],
            redis=self.redis,
            canary=c,
            journal=self.journal,
            thresholds=Thresholds(recover_deadline_seconds=10, redis_down_seconds=20),
            **kw,
        )

    def back(self) -> None:
        self.redis.pings = Script([1.0])
        self.api.metrics = Script([HEALTHY])

    def recover(self, **kw: Any) -> Plan:
        return recover_redis(self.t, execute=True, settle_seconds=0.5, **kw)

    def outages(self) -> list[dict[str, Any]]:
        return [e.data for e in self.journal.entries(kind=REDIS_OUTAGE)]


def test_a_down_redis_is_restarted_verified_and_the_outage_recorded(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[REFUSED], metrics=[DOWN])
    w.t.db = FakeDb(windows=[DeliveryWindow(T0, None, 2, 2, 0, 0, [])])  # type: ignore[assignment]
    since = datetime.now(UTC) - timedelta(minutes=2)
    plan = w.recover(since=since)
    assert outcomes(plan)[:5] == [
        (OK, "4 PING(s) over 3 s failed (connection refused); the API reports Redis unavailable"),
        (OK, "restarted Redis in 2.2 s"),
        (OK, "Redis answers PING"),
        (OK, "every API instance reports redis_status=ok and relay_lag=false"),
        (OK, "canary message 7 arrived over SSE in 125 ms"),
    ]
    assert outcomes(plan)[5] == (
        OK,
        f"all 2 message(s) stored since {since:%H:%M:%S} were delivered",
    )
    [record] = w.outages()
    assert plan.data["outage"] == record
    assert record["start"] == since.isoformat()
    assert record["start_source"] == "--since (given by the operator)"
    assert record["redis_back_source"] == (
        "e2ee-ops: every API instance reported redis_status=ok (at the latest)"
    )
    back = datetime.fromisoformat(record["redis_back_at"])
    assert record["duration_seconds"] == round((back - since).total_seconds(), 1)
    assert record["duration"] == f"{record['duration_seconds']:g} s"
    detected = datetime.fromisoformat(record["detected_at"])
    assert since < detected <= back <= datetime.fromisoformat(record["end"])
    assert (record["verdict"], record["redis_restarted"]) == ("down", True)
    assert (record["stored"], record["canary_message_id"], record["canary_latency_ms"]) == (
        2,
        7,
        125.0,
    )
    assert plan.summary == outcomes(plan)[6][1].split(": ", 1)[1]
    assert plan.summary.startswith(f"outage from {since:%Y-%m-%d %H:%M:%S} UTC (--since")
    assert w.restarter.restarts == 1


def test_a_healthy_redis_is_not_restarted_and_nothing_is_recorded(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[1.0], metrics=[HEALTHY])
    plan = w.recover()
    assert outcomes(plan) == [
        (OK, "Redis answers PING in 1 ms; the API reports Redis healthy"),
        (OK, "skipped: Redis answers PING (use --force to restart anyway)"),
        (OK, "Redis answers PING"),
        (OK, "every API instance reports redis_status=ok and relay_lag=false"),
        (OK, "canary message 7 arrived over SSE in 125 ms"),
        (OK, "skipped: no outage (nothing was down), so no outage window to compare"),
        (OK, "skipped: no outage, no record"),
    ]
    assert plan.summary == "no outage: Redis and the API are healthy and a canary went through"
    assert (w.restarter.restarts, w.outages(), plan.data) == (0, [], {})


def test_each_step_is_reported_as_it_completes(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[REFUSED], metrics=[DOWN])
    w.recover()
    assert "OK: restarted Redis in 2.2 s" in w.t.extra["progress"]


def test_a_refused_redis_no_instance_can_speak_for_is_down_and_recorded(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[REFUSED], metrics=[ServiceError("HTTP 502")])
    plan = w.recover()
    assert outcomes(plan)[:2] == [
        (OK, "4 PING(s) over 3 s failed (connection refused); no API instance says how Redis is"),
        (OK, "restarted Redis in 2.2 s"),
    ]
    assert [(r["verdict"], r["start"]) for r in w.outages()] == [("down", None)]


def test_the_api_instances_are_restarted_with_the_configured_method(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[REFUSED], metrics=[DOWN], api_catch_up_seconds=2.0)
    w.restarter.on_restart = lambda: setattr(w.redis, "pings", Script([1.0]))
    api_restarter = FakeRestarter("systemctl restart api", on_restart=w.back)
    w.t.api_restarter = api_restarter  # type: ignore[assignment]
    plan = w.recover()
    assert api_restarter.restarts == 1
    assert outcomes(plan)[3][1].endswith(
        "after restarting the API instances (they reported Redis unavailable)"
    )  # type: ignore[union-attr]


def test_stored_vs_delivered_settles_for_15_s_by_default(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[REFUSED], metrics=[DOWN])
    stuck = DeliveryWindow(None, None, 1, 0, 1, 1, [_undelivered(5, 60, 1)])
    w.t.db = FakeDb(windows=[stuck])  # type: ignore[assignment]
    recover_redis(w.t, execute=True, since=T0)
    # Every look at the window but the first follows a 0.1 s poll: 15 s of them.
    assert len(w.t.db.asked) - 1 == 150  # type: ignore[union-attr]


def test_force_restarts_a_healthy_redis(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[1.0], metrics=[HEALTHY])
    plan = w.recover(force=True)
    assert outcomes(plan)[1] == (OK, "restarted Redis in 2.2 s")
    assert (w.restarter.restarts, w.outages()) == (1, [])


def test_a_relay_the_api_reports_down_while_redis_answers_is_an_outage(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[1.0], metrics=[DOWN, HEALTHY])
    plan = w.recover()
    assert outcomes(plan)[1][1] == "skipped: Redis answers PING (use --force to restart anyway)"
    [record] = w.outages()
    assert (record["verdict"], record["redis_restarted"], record["start"]) == ("up", False, None)
    assert outcomes(plan)[5] == (
        UNKNOWN,
        "stored vs delivered not compared: the outage start is unknown (give --since)",
    )


def test_redis_unreachable_from_here_is_not_restarted(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[REFUSED], metrics=[HEALTHY])
    plan = w.recover()
    assert plan.summary == (
        "not restarting Redis: the API reports it healthy, so check redis.url and the network "
        "from here"
    )
    assert outcomes(plan)[:2] == [
        (
            UNKNOWN,
            "4 PING(s) over 3 s failed (connection refused), but the API reports Redis healthy: "
            "cannot reach Redis from here",
        ),
        (UNKNOWN, plan.summary),
    ]
    assert [s.outcome for s in plan.steps[2:]] == ["not run: an earlier step failed"] * 5
    assert (plan.status, w.restarter.restarts) == (UNKNOWN, 0)


def test_redis_nobody_can_tell_about_is_not_restarted_without_force(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[AuthError("NOAUTH")], metrics=[ServiceError("HTTP 502")])
    plan = w.recover()
    assert plan.summary == (
        "not restarting Redis: nothing shows it is down; use --force to restart it anyway"
    )
    assert (plan.status, w.restarter.restarts) == (UNKNOWN, 0)
    w = World(tmp_path, redis=[AuthError("NOAUTH")], metrics=[ServiceError("HTTP 502")])
    assert w.recover(force=True).steps[1].outcome == "restarted Redis in 2.2 s"


def test_a_down_redis_without_a_restart_method_fails(tmp_path: Path) -> None:
    for restarter in (None, FakeRestarter(None)):
        w = World(tmp_path, redis=[REFUSED], metrics=[DOWN], restarter=restarter)
        plan = w.recover()
        assert outcomes(plan)[1] == (
            CRITICAL,
            "no restart method is configured for redis (services.redis.restart)",
        )
        assert plan.summary == outcomes(plan)[1][1]


def test_a_failed_restart_says_what_to_check(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[REFUSED], metrics=[DOWN])
    w.t.restarter = FakeRestarter(error=ActionFailed("systemctl exited 5"))  # type: ignore[assignment]
    plan = w.recover()
    assert outcomes(plan)[1] == (CRITICAL, f"restart failed: systemctl exited 5; {NEXT_STEP}")
    assert NEXT_STEP == (
        "check the Redis host (service status, its log, disk and memory), then run "
        "`e2ee-ops redis check` and `e2ee-ops redis recover --execute` again"
    )


def test_a_redis_that_does_not_come_back_fails_at_the_deadline(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[REFUSED], metrics=[DOWN])
    w.restarter.on_restart = lambda: None
    plan = w.recover()
    assert outcomes(plan)[2] == (
        CRITICAL,
        f"Redis did not answer PING within 10 s; {NEXT_STEP}",
    )
    assert "waiting for Redis to answer PING: 5 s of 10 s" in w.t.extra["progress"]


def test_a_stalled_redis_that_answers_within_the_window_is_not_restarted(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[SLOW] * 64 + [1.0], metrics=[HEALTHY])
    plan = w.recover()
    assert outcomes(plan)[0] == (
        OK,
        "Redis was slow to answer for 6 s and answers again; Redis answers PING in 1 ms; "
        "the API reports Redis healthy",
    )
    assert w.t.extra["progress"][0] == (
        "4 PING(s) over 3 s failed (PING timed out after 1 s): Redis does not answer in time; "
        "the API reports Redis healthy; waiting up to 20 s for it"
    )
    assert w.t.extra["progress"][1] == "waiting for Redis to answer: 5 s of 20 s"
    assert w.restarter.restarts == 0


def test_a_stalled_relay_the_api_reports_down_is_recorded_once_redis_answers(
    tmp_path: Path,
) -> None:
    since = {**DOWN, "redis_unavailable_since": T0.isoformat()}
    w = World(tmp_path, redis=[SLOW] * 5 + [1.0], metrics=[since, since, HEALTHY])
    plan = w.recover()
    [record] = w.outages()
    assert (record["verdict"], record["redis_restarted"]) == ("up", False)
    assert (record["start"], record["start_source"]) == (
        T0.isoformat(),
        "/dm/metrics redis_unavailable_since (an instance)",
    )
    assert plan.steps[0].outcome.startswith("Redis was slow to answer for 0 s")  # type: ignore[union-attr]


def test_a_stall_past_the_runbook_window_is_down_unless_the_api_is_healthy(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[SLOW], metrics=[DOWN])
    plan = w.recover()
    assert outcomes(plan)[0] == (
        OK,
        "Redis did not answer for 20 s; 4 PING(s) over 3 s failed (PING timed out after 1 s): "
        "Redis does not answer in time; the API reports Redis unavailable",
    )
    assert w.restarter.restarts == 1
    [record] = w.outages()
    assert record["verdict"] == "down"
    w = World(tmp_path, redis=[SLOW], metrics=[HEALTHY])
    plan = w.recover()
    assert plan.steps[0].status is UNKNOWN
    assert plan.steps[0].outcome.startswith("Redis did not answer for 20 s; ")  # type: ignore[union-attr]
    assert w.restarter.restarts == 0


def test_a_stall_that_turns_into_refusals_is_judged_again(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[SLOW] * 4 + [REFUSED], metrics=[DOWN])
    plan = w.recover()
    assert outcomes(plan)[0] == (
        OK,
        "4 PING(s) over 3 s failed (connection refused); the API reports Redis unavailable",
    )
    assert w.restarter.restarts == 1


def test_a_failed_verification_fails_the_recovery(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[1.0], metrics=[HEALTHY])
    w.t.canary = None
    plan = w.recover()
    assert plan.summary == "no canary accounts are configured (tokens.canary_a/b, canary.*)"
    assert (plan.status, w.outages()) == (CRITICAL, [])


def test_the_recovery_journal_defaults_to_the_targets_and_can_be_given(tmp_path: Path) -> None:
    w = World(tmp_path, redis=[REFUSED], metrics=[DOWN])
    other = Journal(tmp_path / "other.jsonl")
    w.recover(journal=other)
    assert (w.outages(), len(list(other.entries(kind=REDIS_OUTAGE)))) == ([], 1)
