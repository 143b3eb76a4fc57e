"""How the sentinels' answers add up: the primary a quorum names, quorum lost, a
failover in progress, down replicas (pure: views as the adapter returns them)."""

from __future__ import annotations

from e2ee_ops.adapters.sentinel import ReplicaState, SentinelView
from e2ee_ops.procedures.redis_sentinel import topology_of

OK = "OK 3 usable Sentinels. Quorum and failover authorization can be reached"
NOQUORUM = "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the majority"


def view(name: str, primary: str = "10.0.0.1:6379", **values: object) -> SentinelView:
    defaults: dict[str, object] = {"flags": ["master"], "quorum": 2, "ckquorum": OK}
    return SentinelView(name, primary=primary, **{**defaults, **values})  # type: ignore[arg-type]


def test_the_primary_is_the_one_a_quorum_names() -> None:
    topo = topology_of([view("s1"), view("s2"), view("s3", primary="10.0.0.2:6379")])
    assert topo.primary == "10.0.0.1:6379" and topo.agreeing == 2
    assert not topo.quorum_lost


def test_no_quorum_naming_one_primary_means_no_primary() -> None:
    topo = topology_of(
        [view("s1"), view("s2", primary="10.0.0.2:6379"), SentinelView("s3", error="unreachable")]
    )
    assert topo.primary is None


def test_quorum_is_lost_when_ckquorum_says_so_or_too_few_answer() -> None:
    two_gone = [
        view("s1", ckquorum=NOQUORUM),
        *(SentinelView(s, error="unreachable") for s in "ab"),
    ]
    assert topology_of(two_gone).quorum_lost
    assert topology_of(two_gone).primary is None
    one_gone = [view("s1"), view("s2"), SentinelView("s3", error="unreachable")]
    assert not topology_of(one_gone).quorum_lost


def test_nothing_answering_is_unknown_not_lost() -> None:
    topo = topology_of([SentinelView("s1", error="unreachable")])
    assert not topo.quorum_lost and topo.primary is None and topo.reachable == []


def test_primary_down_failover_in_progress_and_down_replicas() -> None:
    replicas = [
        ReplicaState("10.0.0.2:6379", ["slave"], "ok", 100),
        ReplicaState("10.0.0.3:6379", ["s_down", "slave", "disconnected"], "err", 0),
    ]
    topo = topology_of([view("s1", flags=["s_down", "master"], replicas=replicas), view("s2")])
    assert topo.primary_down
    assert topo.down_replicas() == ["10.0.0.3:6379"]
    moving = topology_of([view("s1", flags=["master", "failover_in_progress"]), view("s2")])
    assert moving.failover_in_progress and not moving.primary_down


def test_down_after_comes_from_the_sentinels() -> None:
    assert topology_of([view("s1", down_after_ms=1500), view("s2")]).down_after_seconds == 1.5
