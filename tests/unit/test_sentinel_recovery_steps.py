"""`redis recover` under Sentinel, step by step: what each step says, when it stops, whom
it asks to fail over, which node it restarts and waits for, and the outage record. The
sentinels answer from a script on a clock the test moves (tests/support/sentinels.py);
the relay's own verification (metrics, canary, stored vs delivered) is covered by the
Redis outage tests and, where a step needs it to pass, stands in here with a recorder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from e2ee_ops.adapters.restarter import RestartResult
from e2ee_ops.adapters.sentinel import SentinelView
from e2ee_ops.config import Thresholds
from e2ee_ops.errors import ActionFailed, E2eeOpsError, UnreachableError
from e2ee_ops.journal import REDIS_OUTAGE, Journal
from e2ee_ops.procedures import redis_sentinel
from e2ee_ops.procedures.redis_outage import CanaryResult, RedisTargets, RelayVerified
from e2ee_ops.procedures.redis_sentinel import (
    _failover_time,
    _replica_of,
    _unavailability_record,
    _unavailability_start,
    recover_sentinel,
    topology_of,
)
from e2ee_ops.status import Plan, Status, StepRunner
from tests.support.clock import stop_clock
from tests.support.sentinels import (
    HOSTS,
    NOQUORUM,
    P1,
    P2,
    P3,
    Sentinels,
    down,
    gone,
    master,
    replica_of,
    up,
    view,
)

NOT_RUN = "not run: an earlier verification failed"
DEADLINE = 20.0
NOW = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)


class Clock:
    """monotonic and sleep for RedisTargets: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """An API instance's /dm/metrics: an answer, or an error."""

    def __init__(self, answer: dict[str, Any] | E2eeOpsError) -> None:
        self.answer = answer

    def dm_metrics(self) -> dict[str, Any]:
        if isinstance(self.answer, E2eeOpsError):
            raise self.answer
        return self.answer


@dataclass
class Restarts:
    """The configured restart method: counts restarts, can fail, can bring a node back."""

    spec: object | None = "systemctl"
    error: E2eeOpsError | None = None
    then: Callable[[], None] = lambda: None
    calls: int = 0

    def describe(self) -> str:
        return "systemctl restart redis-server"

    def restart(self) -> RestartResult:
        self.calls += 1
        if self.error is not None:
            raise self.error
        self.then()
        return RestartResult(
            "redis", ["systemctl", "restart", "redis-server"], 0, 1.26, "", ("a", "b")
        )


@dataclass
class Relay:
    """Stands in for verify_relay: records how it was asked, then passes or fails."""

    failure: str | None = None
    asked: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, t: RedisTargets, run: StepRunner, **kwargs: Any) -> RelayVerified | str:
        self.asked.append(kwargs)
        if self.failure is not None:
            return self.failure
        for outcome in ("metrics clear", "canary arrived", "all delivered"):
            run.done(outcome)
        return RelayVerified(CanaryResult(7, 12.34), None)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The procedure's wall clock stopped at NOW."""
    stop_clock(monkeypatch, redis_sentinel, NOW)


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Relay:
    stand_in = Relay()
    monkeypatch.setattr(redis_sentinel, "verify_relay", stand_in)
    return stand_in


def targets(
    sentinels: Sentinels,
    *,
    clock: Clock | None = None,
    apis: list[Api] | None = None,
    restarter: Restarts | None = None,
    progress: list[str] | None = None,
) -> RedisTargets:
    clock = clock or Clock()
    said = progress if progress is not None else []
    return RedisTargets(
        admin_apis=apis or [],  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        db=None,
        canary=None,
        thresholds=Thresholds(recover_deadline_seconds=DEADLINE),
        restarter=restarter,  # type: ignore[arg-type]
        sentinel=sentinels,  # type: ignore[arg-type]
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        progress=said.append,
    )


def outcomes(plan: Plan) -> list[str | None]:
    return [s.outcome for s in plan.steps]


def stopped_at(plan: Plan, index: int, outcome: str) -> None:
    """Step `index` failed with `outcome`; every later step did not run."""
    assert plan.steps[index].status is Status.CRITICAL
    assert plan.steps[index].outcome == outcome
    assert outcomes(plan)[index + 1 :] == [NOT_RUN] * (len(plan.steps) - index - 1)
    assert plan.status is Status.CRITICAL


def three(primary: str = P1, **values: object) -> list[SentinelView]:
    return [view(h, primary, **values) for h in HOSTS]


# ---- the plan ---------------------------------------------------------------------------


def test_the_plan_names_the_service_the_margin_the_deadline_and_the_restart() -> None:
    t = targets(Sentinels([three()]), restarter=Restarts())
    plan = recover_sentinel(t, execute=False)
    assert plan.title == "redis recover (sentinel)"
    assert not plan.executed
    assert [s.description for s in plan.steps] == [
        "ask every sentinel: the primary a quorum names, CKQUORUM; stop if quorum is lost",
        "if the primary is down and no failover happened within down-after + 5 s: "
        "SENTINEL FAILOVER e2ee",
        "verify the new primary answers ROLE master (deadline 20 s)",
        "watch /dm/metrics until redis_status is ok and relay_lag is false",
        "send a canary message from canary A to canary B and see it arrive over SSE",
        "compare messages stored vs delivered since the outage began; list any undelivered",
        "restart the failed node: systemctl restart redis-server",
        "verify it rejoined as a replica of the new primary (ROLE)",
        "record the outage (unavailability window, failover time) in the journal",
    ]
    assert [s.outcome for s in plan.steps] == [None] * 9


@pytest.mark.parametrize("restarter", [None, Restarts(spec=None)])
def test_the_plan_says_when_no_restart_method_is_configured(restarter: Restarts | None) -> None:
    t = targets(Sentinels([three()]), restarter=restarter)
    plan = recover_sentinel(t, execute=False, margin_seconds=2.5)
    assert plan.steps[1].description.endswith("down-after + 2.5 s: SENTINEL FAILOVER e2ee")
    assert plan.steps[6].description == "restart the failed node: (no restart method configured)"


# ---- stops before anything changes ------------------------------------------------------


def test_no_sentinel_answering_changes_nothing() -> None:
    sentinels = Sentinels([[gone(h) for h in HOSTS]])
    plan = recover_sentinel(targets(sentinels), execute=True)
    stopped_at(plan, 0, "no sentinel answered (s1:26379, s2:26379, s3:26379); nothing was changed")
    assert sentinels.failovers == [] and sentinels.role_asked == []


def test_quorum_lost_attempts_no_failover() -> None:
    sentinels = Sentinels([[view("s1:26379", ckquorum=NOQUORUM), gone("s2"), gone("s3")]])
    plan = recover_sentinel(targets(sentinels), execute=True)
    stopped_at(
        plan,
        0,
        "quorum lost (1 of 3 sentinels answer): no failover attempted; "
        "bring the sentinels back first",
    )
    assert sentinels.failovers == []


# ---- the failover -----------------------------------------------------------------------


def primary_dies(
    clock: Clock, *, after: float | None, lead_reports_ms: int | None = None
) -> Sentinels:
    """P1 does not answer; the sentinels (down-after 2 s) promote P2 by themselves
    `after` seconds into the wait (never, when None), or when asked to; they list P1 up
    once it answers ROLE as a replica."""
    state = {"primary": P1}

    def views() -> list[SentinelView]:
        if after is not None and clock.now >= after:
            state["primary"] = P2
        if state["primary"] == P1:
            return [gone("s1:26379")] + [
                view(h, P1, flags=["s_down", "master"], down_after_ms=2000, replicas=[up(P2)])
                for h in HOSTS[1:]
            ]
        back = getattr(sentinels.roles.get(P1), "role", None) == "slave"
        replicas = [up(P1) if back else down(P1)]
        return [gone("s1:26379")] + [
            view(h, P2, replicas=replicas, role_reported_ms=lead_reports_ms) for h in HOSTS[1:]
        ]

    sentinels = Sentinels(views, roles={P2: master(P2)})

    def promote() -> None:
        state["primary"] = P2

    sentinels.on_failover = promote
    return sentinels


def comes_back_as_replica(sentinels: Sentinels, node: str, primary: str) -> Callable[[], None]:
    def back() -> None:
        sentinels.roles[node] = replica_of(node, primary)

    return back


def test_sentinels_that_fail_over_by_themselves_are_not_asked_to(relay: Relay) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=3.0)
    restarter = Restarts(then=comes_back_as_replica(sentinels, P1, P2))
    said: list[str] = []
    t = targets(sentinels, clock=clock, restarter=restarter, progress=said)
    plan = recover_sentinel(t, execute=True)
    assert sentinels.failovers == []
    assert outcomes(plan)[:3] == [
        f"primary {P1} named by 2 of 2 sentinels",
        "skipped: the sentinels failed over by themselves (within 7 s)",
        f"primary {P2} answers ROLE master (was {P1}; failed over)",
    ]
    assert outcomes(plan)[6:8] == [
        "restarted the failed node(s) in 1.3 s: `a`; then `b`",
        f"{P1} rejoined as replica of {P2} "
        "(ROLE: slave, connected; the sentinels list it up, link ok)",
    ]
    assert restarter.calls == 1
    assert plan.steps[1].executed is False and plan.steps[1].status is Status.OK
    assert plan.status is Status.OK
    assert said[:2] == [
        f"OK: primary {P1} named by 2 of 2 sentinels",
        f"OK: primary {P2} answers ROLE master (was {P1}; failed over)",
    ]
    outage = plan.data["outage"]
    assert outage["primary_at_start"] == P1 and outage["primary"] == P2
    assert outage["failover"] == {
        "triggered": False,
        "primary_since": None,
        "primary_since_source": "unknown",
    }
    assert outage["rejoined_as_replica"] == [P1]


def test_no_failover_within_down_after_and_the_margin_asks_the_lead_sentinel(
    relay: Relay, frozen: None
) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=None, lead_reports_ms=4877)
    sentinels.roles[P1] = UnreachableError("no ROLE", host="10.0.0.1")
    restarter = Restarts(then=comes_back_as_replica(sentinels, P1, P2))
    lost = NOW - timedelta(minutes=10, microseconds=-400)
    apis = [Api(metrics_with_outage(lost, lost + timedelta(seconds=30)))]
    plan = recover_sentinel(targets(sentinels, clock=clock, apis=apis, restarter=restarter),
                            execute=True)  # fmt: skip
    assert sentinels.failovers == ["s2:26379"]  # s1 does not answer: the lead is s2
    # down-after 2 s + the default margin of 5 s
    assert outcomes(plan)[1] == "no failover within 7 s: SENTINEL FAILOVER e2ee sent to s2:26379"
    assert plan.steps[1].executed is True
    assert plan.data["outage"]["failover"] == {
        "triggered": True,
        "requested_at": "2026-11-29T01:00:00+00:00",
        "primary_since": "2026-11-29T00:59:55.123000+00:00",
        "primary_since_source": "SENTINEL MASTER role-reported-time on s2:26379",
        # From the relay losing Redis (10 min ago) to P2 taking the role (4.877 s ago):
        # 595.1226 s, to the millisecond.
        "seconds_from_loss": 595.123,
    }
    assert plan.data["outage"]["detected_at"] == "2026-11-29T01:00:00+00:00"
    assert plan.data["outage"]["end"] == "2026-11-29T01:00:00+00:00"
    assert plan.status is Status.OK


@pytest.mark.parametrize(
    ("reported_ms", "outage"),
    [(20 * 60 * 1000, True), (4000, False)],
    ids=["role-taken-before-the-outage", "no-outage-recorded"],
)
def test_no_failover_time_without_a_loss_before_the_promotion(
    relay: Relay, frozen: None, reported_ms: int, outage: bool
) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=1.0, lead_reports_ms=reported_ms)
    restarter = Restarts(then=comes_back_as_replica(sentinels, P1, P2))
    lost = NOW - timedelta(minutes=10)
    apis = [Api(metrics_with_outage(lost, lost + timedelta(seconds=30)) if outage else {})]
    t = targets(sentinels, clock=clock, apis=apis, restarter=restarter)
    failover = recover_sentinel(t, execute=True).data["outage"]["failover"]
    assert failover == {
        "triggered": False,
        "primary_since": (NOW - timedelta(milliseconds=reported_ms)).isoformat(),
        "primary_since_source": "SENTINEL MASTER role-reported-time on s2:26379",
    }


def test_a_failed_failover_request_stops_with_the_reason(relay: Relay) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=None)
    sentinels.failover_error = ActionFailed("NOGOODSLAVE No suitable replica to promote")
    plan = recover_sentinel(targets(sentinels, clock=clock), execute=True, margin_seconds=1.0)
    assert clock.now == pytest.approx(3.0)
    stopped_at(
        plan,
        1,
        "SENTINEL FAILOVER e2ee failed: NOGOODSLAVE No suitable replica to promote",
    )
    assert relay.asked == []


def test_sentinels_that_lose_the_primary_while_waiting_are_not_asked(relay: Relay) -> None:
    clock = Clock()

    def views() -> list[SentinelView]:
        if clock.now < 1.0:
            return three(flags=["s_down", "master"], down_after_ms=0)
        return [view("s1", P1), view("s2", P2), view("s3", P3)]

    sentinels = Sentinels(views, roles={})
    plan = recover_sentinel(targets(sentinels, clock=clock), execute=True, margin_seconds=1.0)
    stopped_at(plan, 1, "no sentinel names a primary any more; nothing was changed")
    assert sentinels.failovers == []


def test_no_primary_answering_within_the_deadline_stops(relay: Relay) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=None)
    sentinels.roles.clear()  # P2 never answers ROLE master
    plan = recover_sentinel(targets(sentinels, clock=clock), execute=True, margin_seconds=0.0)
    stopped_at(plan, 2, "no primary answered ROLE master within 20 s")
    assert sentinels.failovers == ["s2:26379"]
    assert relay.asked == []


# ---- the relay follows ------------------------------------------------------------------


def test_metrics_that_stay_bad_mean_the_relay_did_not_follow_the_new_primary() -> None:
    sentinels = Sentinels([three()])
    apis = [Api({"redis_status": "unavailable", "relay_lag": True})]
    plan = recover_sentinel(targets(sentinels, apis=apis), execute=True)
    assert outcomes(plan)[1:3] == [
        f"skipped: primary {P1} answers ROLE master; no failover needed",
        f"primary {P1} answers ROLE master",
    ]
    stopped_at(
        plan,
        3,
        "/dm/metrics still shows redis unavailable or relay_lag after 20 s: the relay did not "
        "follow the new primary; restart the API instances (configure services.api.restart "
        "to let recover do it)",
    )


def test_the_relay_is_verified_from_the_operator_s_since(relay: Relay) -> None:
    since = NOW - timedelta(minutes=3)
    plan = recover_sentinel(targets(Sentinels([three()])), execute=True, since=since)
    assert relay.asked == [
        {
            "window_start": since,
            "settle_seconds": 15.0,
            "stuck": ": the relay did not follow the new primary",
        }
    ]
    assert plan.data["outage"]["start"] == since.isoformat()
    assert plan.data["outage"]["start_source"] == "--since given by the operator"


def test_a_failed_relay_verification_stops_there(relay: Relay) -> None:
    relay.failure = "canary not delivered: timed out"
    plan = recover_sentinel(targets(Sentinels([three()])), execute=True, settle_seconds=2.0)
    assert relay.asked[0]["settle_seconds"] == 2.0
    stopped_at(plan, 3, "canary not delivered: timed out")


# ---- the failed node rejoins ------------------------------------------------------------


def test_nothing_down_restarts_nothing(relay: Relay, tmp_path: Path) -> None:
    restarter = Restarts()
    journal = Journal(tmp_path / "journal.jsonl", actor="me")
    t = targets(Sentinels([three()]), restarter=restarter)
    plan = recover_sentinel(t, execute=True, journal=journal)
    assert outcomes(plan)[6:] == [
        "skipped: no node is down",
        "skipped: no node to rejoin",
        f"outage recorded in the journal ({tmp_path / 'journal.jsonl'})",
    ]
    assert restarter.calls == 0
    assert [e.data for e in journal.entries(kind=REDIS_OUTAGE)] == [plan.data["outage"]]
    assert plan.status is Status.OK


def test_a_down_replica_is_restarted_and_waited_for_without_a_failover(relay: Relay) -> None:
    sentinels = Sentinels([three(replicas=[down(P3), down(P2)])])
    sentinels.roles[P2] = UnreachableError("down", host="10.0.0.2")

    def back() -> None:
        sentinels.roles[P2] = replica_of(P2, P1)
        sentinels.roles[P3] = replica_of(P3, P1)
        sentinels.script = [three(replicas=[up(P2), up(P3)])]

    restarter = Restarts(then=back)
    plan = recover_sentinel(targets(sentinels, restarter=restarter), execute=True)
    assert outcomes(plan)[1] == f"skipped: primary {P1} answers ROLE master; no failover needed"
    assert outcomes(plan)[7] == (
        f"{P2}, {P3} rejoined as replica of {P1} "
        "(ROLE: slave, connected; the sentinels list it up, link ok)"
    )
    assert outcomes(plan)[8] == "no journal configured"
    assert plan.data["outage"]["rejoined_as_replica"] == [P2, P3]
    assert plan.data["outage"]["failover"] == {
        "triggered": False,
        "primary_since": None,
        "primary_since_source": "unknown",
    }


@pytest.mark.parametrize("restarter", [None, Restarts(spec=None)])
def test_a_down_node_without_a_restart_method_stops(
    relay: Relay, restarter: Restarts | None
) -> None:
    sentinels = Sentinels([three(replicas=[down(P3), down(P2)])])
    plan = recover_sentinel(targets(sentinels, restarter=restarter), execute=True)
    stopped_at(
        plan,
        6,
        f"{P2}, {P3} down and no restart method is configured for redis (services.redis.restart)",
    )


def test_a_failed_restart_stops_with_the_reason(relay: Relay) -> None:
    restarter = Restarts(error=ActionFailed("systemctl exited 5: unit redis-server not found"))
    sentinels = Sentinels([three(replicas=[down(P2)])])
    plan = recover_sentinel(targets(sentinels, restarter=restarter), execute=True)
    stopped_at(plan, 6, "restart failed: systemctl exited 5: unit redis-server not found")


def test_a_node_that_never_rejoins_stops_after_the_deadline(relay: Relay) -> None:
    clock = Clock()
    sentinels = Sentinels([three(replicas=[down(P2)])])
    plan = recover_sentinel(targets(sentinels, clock=clock, restarter=Restarts()), execute=True)
    stopped_at(plan, 7, f"{P2} did not rejoin as a replica of {P1} within 20 s (ROLE)")
    assert clock.now == pytest.approx(DEADLINE, abs=0.2)


# ---- what counts as rejoined ------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "listed", "rejoined"),
    [
        (replica_of(P2, P1), up(P2), True),
        (replica_of(P2, P3), up(P2), False),  # follows another primary
        (replica_of(P2, P1, link="sync"), up(P2), False),  # still syncing
        (master(P2), up(P2), False),
        (replica_of(P2, P1), up(P2, link="err"), False),  # the sentinels see a bad link
        (replica_of(P2, P1), down(P2), False),  # the sentinels still flag it down
        (replica_of(P2, P1), up(P3), False),  # the sentinels do not list it
        (None, up(P2), False),  # no ROLE answer
    ],
)
def test_rejoined_means_role_and_the_sentinels_agree(
    role: Any, listed: Any, rejoined: bool
) -> None:
    sentinels = Sentinels([three(replicas=[listed])], roles={P2: role} if role else {})
    assert _replica_of(sentinels, P2, P1) is rejoined  # type: ignore[arg-type]


def test_rejoined_needs_an_agreed_primary() -> None:
    sentinels = Sentinels([[view("s1", P1), view("s2", P3)]], roles={P2: replica_of(P2, P1)})
    assert _replica_of(sentinels, P2, P1) is False  # type: ignore[arg-type]


# ---- the outage record ------------------------------------------------------------------


def metrics_with_outage(lost: datetime, regained: datetime) -> dict[str, Any]:
    return {
        "redis_outages_by_instance": [
            {
                "instance_id": "a",
                "redis_unavailable_since": None,
                "last_redis_outage": {
                    "lost_at": lost.isoformat(),
                    "regained_at": regained.isoformat(),
                    "duration_seconds": (regained - lost).total_seconds(),
                },
            }
        ]
    }


def test_the_record_has_every_figure_with_its_source(relay: Relay, frozen: None) -> None:
    lost = NOW - timedelta(minutes=10)
    apis = [Api(metrics_with_outage(lost, lost + timedelta(seconds=42.5)))]
    plan = recover_sentinel(targets(Sentinels([three()]), apis=apis), execute=True)
    assert plan.data["outage"] == {
        "topology": "sentinel",
        "service": "e2ee",
        "detected_at": "2026-11-29T01:00:00+00:00",
        "end": "2026-11-29T01:00:00+00:00",
        "start": lost.isoformat(),
        "start_source": "the API instances' relay outage records (/dm/metrics)",
        "unavailability": {
            "from": lost.isoformat(),
            "to": (lost + timedelta(seconds=42.5)).isoformat(),
            "seconds": 42.5,
            "seconds_by_instance": [42.5],
            "source": "the API instances' relay outage records "
            "(/dm/metrics redis_outages_by_instance)",
        },
        "primary_at_start": P1,
        "primary": P1,
        "failover": {"triggered": False, "primary_since": None, "primary_since_source": "unknown"},
        "rejoined_as_replica": [],
        "duration_seconds": 42.5,
        "stored": None,
        "delivered": None,
        "stored_not_delivered": None,
        "deliverable_not_delivered": None,
        "waiting_offline": None,
        "runbook_pending_rows": None,
        "all_delivered": None,
        "undelivered": [],
        "canary_message_id": 7,
        "canary_latency_ms": 12.3,
    }
    assert relay.asked[0]["window_start"] == lost


def test_no_instance_recording_an_outage_is_an_unknown_window() -> None:
    apis = [Api(UnreachableError("down", host="api-1")), Api({"redis_status": "ok"})]
    assert _unavailability_record(apis) == {  # type: ignore[arg-type]
        "from": None,
        "to": None,
        "seconds": None,
        "source": "unknown (no instance recorded an outage)",
    }


def test_the_fleet_window_runs_from_the_first_loss_to_the_last_recovery() -> None:
    answer = {
        "redis_outages_by_instance": [
            "junk",
            {"instance_id": "a", "last_redis_outage": None},
            {
                "instance_id": "b",
                "last_redis_outage": {
                    "lost_at": NOW.isoformat(),
                    "regained_at": (NOW + timedelta(seconds=20)).isoformat(),
                    "duration_seconds": 20.0,
                },
            },
            {
                "instance_id": "c",
                "last_redis_outage": {
                    "lost_at": (NOW + timedelta(seconds=1)).isoformat(),
                    "regained_at": (NOW + timedelta(seconds=30.1234)).isoformat(),
                    "duration_seconds": 29.1234,
                },
            },
        ]
    }
    # The first instance that answers speaks for the fleet; a later one is not asked.
    apis = [Api(UnreachableError("down", host="api-1")), Api(answer), Api({})]
    record = _unavailability_record(apis)  # type: ignore[arg-type]
    assert record["from"] == NOW.isoformat()
    assert record["to"] == (NOW + timedelta(seconds=30.1234)).isoformat()
    assert record["seconds"] == 30.123
    assert record["seconds_by_instance"] == [20.0, 29.1234]


def test_the_start_is_the_earliest_recent_loss_or_the_detection() -> None:
    def row(since: datetime | None, lost: datetime | None) -> dict[str, Any]:
        last = {"lost_at": lost.isoformat()} if lost else None
        return {"redis_unavailable_since": since and since.isoformat(), "last_redis_outage": last}

    answer = {
        "redis_outages_by_instance": [
            row(None, NOW - timedelta(minutes=7)),
            row(NOW - timedelta(minutes=9), None),  # still down there
            row(None, NOW - timedelta(hours=1)),  # an hour ago: an earlier outage
            row(None, None),
        ]
    }
    apis: Any = [Api(UnreachableError("down", host="api-1")), Api(answer)]
    assert _unavailability_start(apis, None, NOW) == (
        NOW - timedelta(minutes=9),
        "the API instances' relay outage records (/dm/metrics)",
    )
    closed = [Api({"redis_outages_by_instance": [row(None, NOW - timedelta(minutes=7))]})]
    assert _unavailability_start(closed, None, NOW)[0] == NOW - timedelta(minutes=7)  # type: ignore[arg-type]
    old: Any = [Api({"redis_outages_by_instance": [row(None, NOW - timedelta(hours=1))]})]
    detection = (NOW, "detection by redis recover (no earlier evidence)")
    assert _unavailability_start(old, None, NOW) == detection
    assert _unavailability_start([], None, NOW) == detection
    since = NOW - timedelta(hours=2)
    assert _unavailability_start(apis, since, NOW) == (since, "--since given by the operator")


def test_the_failover_time_is_the_lead_s_report_or_unknown(frozen: None) -> None:
    unknown = {"primary_since": None, "primary_since_source": "unknown"}
    assert _failover_time(topology_of([gone("s1")])) == unknown
    assert _failover_time(topology_of(three(role_reported_ms=None))) == unknown
    assert _failover_time(topology_of([gone("s0"), *three(role_reported_ms=1500)])) == {
        "primary_since": "2026-11-29T00:59:58.500000+00:00",
        "primary_since_source": "SENTINEL MASTER role-reported-time on s1:26379",
    }


def test_sentinels_that_agreed_on_no_primary_at_first_restart_no_unknown_node(
    relay: Relay,
) -> None:
    clock = Clock()

    def views() -> list[SentinelView]:
        if clock.now < 1.0:  # mid-switch: each sentinel names another primary
            return [view("s1", P1), view("s2", P2), view("s3", P3)]
        return three(P2, replicas=[up(P1), up(P3)])

    sentinels = Sentinels(views, roles={P2: master(P2)})
    restarter = Restarts()
    plan = recover_sentinel(targets(sentinels, clock=clock, restarter=restarter), execute=True)
    assert outcomes(plan)[2] == f"primary {P2} answers ROLE master (was None; failed over)"
    assert outcomes(plan)[6:8] == ["skipped: no node is down", "skipped: no node to rejoin"]
    assert restarter.calls == 0
    assert plan.status is Status.OK


def test_a_replica_flagged_down_then_promoted_is_not_awaited_as_a_replica(relay: Relay) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=1.0)
    first = sentinels.script
    assert callable(first)
    # The sentinels' first answer still flags P2 down (a stale view); then they promote it.
    stale = [view(h, P1, replicas=[down(P2)], down_after_ms=2000) for h in HOSTS]
    sentinels.script = lambda: stale if clock.now == 0.0 else first()
    restarter = Restarts(then=comes_back_as_replica(sentinels, P1, P2))
    plan = recover_sentinel(targets(sentinels, clock=clock, restarter=restarter), execute=True)
    assert plan.data["outage"]["rejoined_as_replica"] == [P1]
    assert plan.status is Status.OK


def test_sentinels_disagreeing_after_the_failover_are_no_primary(relay: Relay) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=None)

    def split() -> None:
        sentinels.script = [[view("s1", P1), view("s2", P2), view("s3", P3)]]

    sentinels.on_failover = split
    sentinels.roles.update({P1: master(P1), P3: master(P3)})
    sentinels.roles[P1] = UnreachableError("no ROLE", host="10.0.0.1")
    plan = recover_sentinel(targets(sentinels, clock=clock), execute=True, margin_seconds=0.0)
    stopped_at(plan, 2, "no primary answered ROLE master within 20 s")


def test_a_new_primary_that_does_not_answer_is_no_failover(relay: Relay) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=1.0)
    sentinels.roles.clear()  # the sentinels name P2, but it does not answer ROLE
    plan = recover_sentinel(targets(sentinels, clock=clock), execute=True, margin_seconds=0.0)
    assert outcomes(plan)[1] == "no failover within 2 s: SENTINEL FAILOVER e2ee sent to s2:26379"
    assert sentinels.failovers == ["s2:26379"]


def test_a_primary_taking_the_role_as_the_relay_lost_redis_took_no_time(
    relay: Relay, frozen: None
) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=1.0, lead_reports_ms=600_000)
    restarter = Restarts(then=comes_back_as_replica(sentinels, P1, P2))
    lost = NOW - timedelta(minutes=10)
    apis = [Api(metrics_with_outage(lost, lost + timedelta(seconds=30)))]
    t = targets(sentinels, clock=clock, apis=apis, restarter=restarter)
    assert recover_sentinel(t, execute=True).data["outage"]["failover"]["seconds_from_loss"] == 0.0


def test_a_primary_answering_again_while_waiting_is_not_failed_over(relay: Relay) -> None:
    clock = Clock()
    sentinels = primary_dies(clock, after=None)

    def back() -> None:  # P1 answers again 3 s into the wait; the sentinels still name it
        if clock.now >= 3.0:
            sentinels.roles[P1] = master(P1)

    sentinels.on_view = back
    plan = recover_sentinel(targets(sentinels, clock=clock), execute=True)
    assert sentinels.failovers == []
    assert outcomes(plan)[1:3] == [
        f"skipped: primary {P1} answers ROLE master again (within 7 s); no failover needed",
        f"primary {P1} answers ROLE master",
    ]
    assert plan.data["outage"]["failover"]["triggered"] is False
