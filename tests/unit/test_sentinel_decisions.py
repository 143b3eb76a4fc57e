"""What `redis check` concludes from the sentinels' answers, exactly as the on-call
engineer reads it: status, value and sentence of each finding (the sentinels and data
nodes answer through a small stand-in with SentinelAdmin's reads)."""

from __future__ import annotations

import pytest

from e2ee_ops.adapters.sentinel import SentinelView
from e2ee_ops.errors import TimedOutError, UnreachableError
from e2ee_ops.procedures.redis_sentinel import sentinel_findings, topology_of
from e2ee_ops.status import Finding, Status
from tests.support.sentinels import (
    HOSTS,
    NOQUORUM,
    OK,
    P1,
    P2,
    P3,
    Sentinels,
    down,
    gone,
    replica_of,
    up,
    view,
)


def findings(sentinels: Sentinels) -> dict[str, Finding]:
    found = sentinel_findings(sentinels)  # type: ignore[arg-type]
    assert [f.name for f in found] == ["sentinel quorum", "sentinel primary", "redis replicas"]
    return {f.name: f for f in found}


# ---- topology ---------------------------------------------------------------------------


def test_the_lead_is_the_first_reachable_sentinel_naming_the_agreed_primary() -> None:
    topo = topology_of([gone("s0"), view("s1", P2), view("s2"), view("s3")])
    assert topo.primary == P1 and topo.agreeing == 2 and topo.quorum == 2
    assert topo.lead is not None and topo.lead.sentinel == "s2"
    assert [v.sentinel for v in topo.reachable] == ["s1", "s2", "s3"]


def test_exactly_a_quorum_naming_a_primary_is_enough() -> None:
    assert topology_of([view("s1"), view("s2"), view("s3", P2)]).primary == P1
    topo = topology_of([view("s1", quorum=3), view("s2", quorum=3), view("s3", P2, quorum=3)])
    assert topo.primary is None and topo.agreeing == 2 and topo.quorum == 3


def test_the_quorum_comes_from_the_first_sentinel_that_says_it() -> None:
    views = [gone("s0"), view("s1", quorum=None), view("s2", quorum=3), view("s3", quorum=1)]
    assert topology_of(views).quorum == 3


def test_without_a_known_quorum_the_most_named_primary_wins() -> None:
    topo = topology_of(
        [view("s1", quorum=None), view("s2", P2, quorum=None), view("s3", None, quorum=None)]
    )
    assert topo.quorum is None and topo.agreeing == 1 and topo.primary == P1


def test_quorum_is_lost_when_fewer_sentinels_answer_than_the_quorum() -> None:
    two_of_three = [view("s1", quorum=3), view("s2", quorum=3), gone("s3")]
    assert topology_of(two_of_three).quorum_lost
    all_three = [view("s1", quorum=3), view("s2", quorum=3), view("s3", quorum=3)]
    assert not topology_of(all_three).quorum_lost


def test_one_sentinel_able_to_reach_quorum_is_enough() -> None:
    assert not topology_of([view("s1", ckquorum=NOQUORUM), view("s2")]).quorum_lost
    assert not topology_of([view("s1", quorum=None)]).quorum_lost
    assert topology_of([view("s1", quorum=None, ckquorum=None)]).quorum_lost


def test_only_the_sentinels_naming_the_agreed_primary_say_whether_it_is_down() -> None:
    other_down = [view("s1"), view("s2"), view("s3", P2, flags=["s_down", "master"])]
    assert not topology_of(other_down).primary_down
    assert topology_of([view("s1"), view("s2", flags=["o_down", "master"])]).primary_down


def test_an_unreachable_sentinel_says_nothing_about_a_failover() -> None:
    silent = SentinelView("s3", primary=P1, flags=["failover_in_progress"], error="timed out")
    assert not topology_of([view("s1"), view("s2"), silent]).failover_in_progress
    assert topology_of([view("s1"), view("s2", flags=["master", "promoted"])]).failover_in_progress


def test_down_after_is_30_s_unless_the_lead_says_otherwise() -> None:
    assert topology_of([view("s1"), view("s2", down_after_ms=1500)]).down_after_seconds == 30.0
    assert topology_of([view("s1", down_after_ms=1500), view("s2")]).down_after_seconds == 1.5
    assert topology_of([gone("s1")]).down_after_seconds == 30.0


def test_down_replicas_are_the_lead_s_and_none_without_a_lead() -> None:
    views = [view("s1", replicas=[down(P2), up(P3)]), view("s2", replicas=[down(P3)])]
    assert topology_of(views).down_replicas() == [P2]
    assert topology_of([gone("s1")]).down_replicas() == []


# ---- sentinel quorum --------------------------------------------------------------------


def test_no_sentinel_answering_is_unknown_naming_every_sentinel() -> None:
    found = findings(Sentinels([[gone(h) for h in HOSTS]]))
    assert found["sentinel quorum"] == Finding(
        "sentinel quorum",
        Status.UNKNOWN,
        {"reachable": 0, "configured": 3, "quorum": None, "ckquorum": None, "unreachable": HOSTS},
        "no sentinel of s1:26379, s2:26379, s3:26379 answered; cannot tell the topology",
    )
    assert found["sentinel primary"] == Finding(
        "sentinel primary",
        Status.UNKNOWN,
        {"primary": None, "named_by": 0, "of": 0, "failover_in_progress": False},
        "no sentinel answered",
    )
    assert found["redis replicas"] == Finding(
        "redis replicas", Status.UNKNOWN, None, "no agreed primary, so no replica list"
    )


def test_quorum_lost_is_critical_and_says_no_failover_will_be_attempted() -> None:
    sentinels = Sentinels([[view("s1", ckquorum=NOQUORUM), gone("s2"), gone("s3")]])
    found = findings(sentinels)
    assert found["sentinel quorum"] == Finding(
        "sentinel quorum",
        Status.CRITICAL,
        {
            "reachable": 1,
            "configured": 3,
            "quorum": 2,
            "ckquorum": NOQUORUM,
            "unreachable": ["s2", "s3"],
        },
        f"quorum lost: 1 of 3 sentinels answer, CKQUORUM says {NOQUORUM!r}; no failover "
        "can happen (the toolkit will not attempt one); bring the sentinels back",
    )
    # One sentinel naming a primary is no quorum: the primary is unknown, not a warning.
    assert found["sentinel primary"] == Finding(
        "sentinel primary",
        Status.UNKNOWN,
        {"primary": None, "named_by": 1, "of": 1, "failover_in_progress": False},
        f"no quorum of sentinels names one primary (they name {P1})",
    )


def test_a_sentinel_missing_with_quorum_still_reachable_is_a_warning() -> None:
    found = findings(Sentinels([[view("s1"), gone("s2"), view("s3")]]))
    assert found["sentinel quorum"] == Finding(
        "sentinel quorum",
        Status.WARNING,
        {"reachable": 2, "configured": 3, "quorum": 2, "ckquorum": OK, "unreachable": ["s2"]},
        f"2 of 3 sentinels answer (not s2); quorum still reachable: CKQUORUM says {OK!r}",
    )


def test_every_sentinel_answering_is_ok_with_ckquorum_s_words() -> None:
    found = findings(Sentinels([[view("s1"), view("s2"), view("s3")]]))
    assert found["sentinel quorum"] == Finding(
        "sentinel quorum",
        Status.OK,
        {"reachable": 3, "configured": 3, "quorum": 2, "ckquorum": OK, "unreachable": []},
        f"SENTINEL CKQUORUM says {OK!r}",
    )


# ---- sentinel primary -------------------------------------------------------------------


def test_sentinels_disagreeing_without_losing_quorum_is_a_warning_naming_each() -> None:
    found = findings(Sentinels([[view("s1"), view("s2", P2), view("s3", None)]]))
    assert found["sentinel primary"] == Finding(
        "sentinel primary",
        Status.WARNING,
        {"primary": None, "named_by": 1, "of": 3, "failover_in_progress": False},
        f"no quorum of sentinels names one primary (they name {P1}, {P2}, None)",
    )


def test_a_failover_in_progress_is_a_warning_even_with_the_primary_flagged_down() -> None:
    flags = ["o_down", "master", "failover_in_progress"]
    found = findings(Sentinels([[view("s1", flags=flags), view("s2"), view("s3")]]))
    assert found["sentinel primary"] == Finding(
        "sentinel primary",
        Status.WARNING,
        {"primary": P1, "named_by": 3, "of": 3, "failover_in_progress": True},
        f"failover in progress (primary {P1}, named by 3 of 3 sentinels)",
    )


def test_a_primary_flagged_down_without_a_failover_is_critical() -> None:
    flags = ["s_down", "master"]
    found = findings(Sentinels([[view("s1"), view("s2", flags=flags), gone("s3")]]))
    assert found["sentinel primary"] == Finding(
        "sentinel primary",
        Status.CRITICAL,
        {"primary": P1, "named_by": 2, "of": 2, "failover_in_progress": False},
        f"primary {P1} is down (named by 2 of 2 sentinels flag it down) and the sentinels have "
        "not failed over: messages are stored but not pushed; run `e2ee-ops redis recover`",
    )


def test_a_primary_that_does_not_answer_role_is_critical_with_the_reason() -> None:
    sentinels = Sentinels(
        [[view("s1"), view("s2"), view("s3")]],
        roles={P1: TimedOutError("ROLE on 10.0.0.1:6379 timed out after 2 s")},
    )
    found = findings(sentinels)
    assert found["sentinel primary"] == Finding(
        "sentinel primary",
        Status.CRITICAL,
        {"primary": P1, "named_by": 3, "of": 3, "failover_in_progress": False},
        f"primary {P1} (named by 3 of 3 sentinels) does not answer ROLE: "
        "ROLE on 10.0.0.1:6379 timed out after 2 s",
    )
    assert sentinels.role_asked == [P1]


def test_a_primary_answering_as_a_replica_is_a_switch_under_way() -> None:
    sentinels = Sentinels([[view("s1"), view("s2")]], roles={P1: replica_of(P1, P2)})
    assert findings(sentinels)["sentinel primary"] == Finding(
        "sentinel primary",
        Status.WARNING,
        {"primary": P1, "named_by": 2, "of": 2, "failover_in_progress": False, "role": "slave"},
        f"{P1} (named by 2 of 2 sentinels) answers ROLE slave: a switch is under way",
    )


def test_a_primary_answering_master_is_ok() -> None:
    assert findings(Sentinels([[view("s1"), view("s2")]]))["sentinel primary"] == Finding(
        "sentinel primary",
        Status.OK,
        {"primary": P1, "named_by": 2, "of": 2, "failover_in_progress": False, "role": "master"},
        f"primary {P1}, named by 2 of 2 sentinels, ROLE master",
    )


# ---- redis replicas ---------------------------------------------------------------------


def test_healthy_replicas_with_their_lag_from_the_primary() -> None:
    replicas = [up(P2), up(P3)]
    sentinels = Sentinels(
        [[gone("s0"), view("s1", replicas=replicas), view("s2")]], lags={P2: 0, P3: 2}
    )
    assert findings(sentinels)["redis replicas"] == Finding(
        "redis replicas",
        Status.OK,
        [
            {"replica": P2, "flags": "slave", "link": "ok", "lag_seconds": 0},
            {"replica": P3, "flags": "slave", "link": "ok", "lag_seconds": 2},
        ],
        f"2 replica(s), link ok (SENTINEL REPLICAS on s1); {P2} lag 0 s, {P3} lag 2 s",
    )
    assert sentinels.lag_asked == [P1]


def test_a_replica_the_primary_does_not_list_has_no_lag() -> None:
    sentinels = Sentinels([[view("s1"), view("s2")]], lags={P3: 1})
    found = findings(sentinels)["redis replicas"]
    assert found.value == [{"replica": P2, "flags": "slave", "link": "ok", "lag_seconds": None}]
    assert found.summary == f"1 replica(s), link ok (SENTINEL REPLICAS on s1); {P2} lag None s"


def test_lag_unknown_when_the_primary_s_info_does_not_answer() -> None:
    sentinels = Sentinels(
        [[view("s1"), view("s2")]], lags=UnreachableError("no INFO", host="10.0.0.1")
    )
    assert findings(sentinels)["redis replicas"] == Finding(
        "redis replicas",
        Status.OK,
        [{"replica": P2, "flags": "slave", "link": "ok", "lag_seconds": None}],
        "1 replica(s), link ok (SENTINEL REPLICAS on s1); "
        "lag unknown (primary's INFO replication did not answer)",
    )


def test_a_down_replica_and_a_broken_link_are_degraded() -> None:
    replicas = [down(P2), up(P3, link="err"), up("10.0.0.4:6379")]
    sentinels = Sentinels([[view("s1", replicas=replicas), view("s2")]], lags={})
    assert findings(sentinels)["redis replicas"] == Finding(
        "redis replicas",
        Status.WARNING,
        [
            {
                "replica": P2,
                "flags": "s_down,slave,disconnected",
                "link": "err",
                "lag_seconds": None,
            },
            {"replica": P3, "flags": "slave", "link": "err", "lag_seconds": None},
            {"replica": "10.0.0.4:6379", "flags": "slave", "link": "ok", "lag_seconds": None},
        ],
        f"degraded: 1 healthy replica(s) of 3 ({P2} down; {P3} link err; SENTINEL REPLICAS "
        "on s1); bring it back with `e2ee-ops redis recover`",
    )


def test_no_replica_is_a_warning_that_losing_the_primary_is_an_outage() -> None:
    sentinels = Sentinels([[view("s1", replicas=[]), view("s2", replicas=[])]], lags={})
    assert findings(sentinels)["redis replicas"] == Finding(
        "redis replicas",
        Status.WARNING,
        [],
        "no replica (SENTINEL REPLICAS on s1): losing the primary is an outage",
    )


@pytest.mark.parametrize(
    "views",
    [[view("s1"), view("s2", P2)], [view("s1"), view("s2", P2), view("s3", None)]],
    ids=["two-primaries", "one-names-none"],
)
def test_no_replica_list_without_an_agreed_primary(views: list[SentinelView]) -> None:
    sentinels = Sentinels([views])
    assert findings(sentinels)["redis replicas"] == Finding(
        "redis replicas", Status.UNKNOWN, None, "no agreed primary, so no replica list"
    )
    assert sentinels.lag_asked == []


def test_a_down_replica_alone_is_degraded() -> None:
    sentinels = Sentinels([[view("s1", replicas=[down(P2)]), view("s2")]], lags={})
    found = findings(sentinels)["redis replicas"]
    assert (found.status, found.summary) == (
        Status.WARNING,
        f"degraded: 0 healthy replica(s) of 1 ({P2} down; SENTINEL REPLICAS on s1); "
        "bring it back with `e2ee-ops redis recover`",
    )


def test_a_broken_link_alone_is_degraded() -> None:
    replicas = [up(P2, link="err"), up(P3)]
    sentinels = Sentinels([[view("s1", replicas=replicas), view("s2")]], lags={})
    found = findings(sentinels)["redis replicas"]
    assert (found.status, found.summary) == (
        Status.WARNING,
        f"degraded: 1 healthy replica(s) of 2 ({P2} link err; SENTINEL REPLICAS on s1); "
        "bring it back with `e2ee-ops redis recover`",
    )


def test_ckquorum_is_quoted_from_the_first_sentinel_that_answered() -> None:
    own = "OK 2 usable Sentinels. Quorum and failover authorization can be reached"
    found = findings(Sentinels([[gone("s0"), view("s1", ckquorum=own), view("s2"), view("s3")]]))
    assert found["sentinel quorum"].summary == (
        f"3 of 4 sentinels answer (not s0); quorum still reachable: CKQUORUM says {own!r}"
    )
    found = findings(Sentinels([[view("s1", ckquorum=own), view("s2"), view("s3")]]))
    assert found["sentinel quorum"].summary == f"SENTINEL CKQUORUM says {own!r}"


def test_every_missing_sentinel_is_named() -> None:
    views = [view("s1"), gone("s2"), view("s3"), gone("s4"), view("s5")]
    found = findings(Sentinels([views]))["sentinel quorum"]
    assert (found.status, found.summary) == (
        Status.WARNING,
        f"3 of 5 sentinels answer (not s2, s4); quorum still reachable: CKQUORUM says {OK!r}",
    )
