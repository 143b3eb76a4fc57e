"""Runbook: Redis Outage Procedures, the Sentinel path.

Under Sentinel, "restart Redis" means: confirm the sentinels failed over (or trigger
the failover when they did not within down-after plus a margin), check the relay
followed the new primary, and bring the failed node back as a replica.

Detection (`sentinel_findings`) asks every sentinel on its own: the primary a quorum
of them names, `SENTINEL CKQUORUM`, the replicas with their link status and lag, and
a failover in progress. Recovery (`recover_sentinel`) is the runbook's recovery in
that order, each step verified; the outage record carries both the unavailability
window (from the API instances' own relay records) and the failover time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from e2ee_ops.errors import E2eeOpsError
from e2ee_ops.procedures.redis_outage import (
    RedisTargets,
    _wait_until,
    record_outage,
    verify_relay,
)
from e2ee_ops.status import Finding, Plan, Status, Step, StepRunner

if TYPE_CHECKING:
    from e2ee_ops.adapters.api import ApiClient
    from e2ee_ops.adapters.sentinel import SentinelAdmin, SentinelView
    from e2ee_ops.journal import Journal

# How long past down-after-milliseconds the sentinels get to fail over on their own
# before `redis recover` asks for SENTINEL FAILOVER.
FAILOVER_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class Topology:
    """The sentinels' answers put together: the primary a quorum names, and how sure."""

    views: list[SentinelView]
    primary: str | None  # named by at least `quorum` reachable sentinels
    quorum: int | None
    agreeing: int

    @property
    def reachable(self) -> list[SentinelView]:
        return [v for v in self.views if v.error is None]

    @property
    def lead(self) -> SentinelView | None:
        """The first reachable sentinel naming the agreed primary."""
        return next((v for v in self.reachable if v.primary == self.primary), None)

    @property
    def quorum_lost(self) -> bool:
        reachable = self.reachable
        if not reachable:
            return False  # nothing answered: unknown, not lost
        return not any(v.quorum_ok for v in reachable) or (
            self.quorum is not None and len(reachable) < self.quorum
        )

    @property
    def primary_down(self) -> bool:
        return any(v.primary_down for v in self.reachable if v.primary == self.primary)

    @property
    def failover_in_progress(self) -> bool:
        return any(v.failover_in_progress for v in self.reachable)

    @property
    def down_after_seconds(self) -> float:
        lead = self.lead
        ms = lead.down_after_ms if lead and lead.down_after_ms is not None else 30000
        return ms / 1000.0

    def down_replicas(self) -> list[str]:
        lead = self.lead
        return [r.address for r in lead.replicas if r.down] if lead else []


def read_topology(sentinel: SentinelAdmin) -> Topology:
    return topology_of(sentinel.views())


def topology_of(views: list[SentinelView]) -> Topology:
    """The primary named by at least a quorum of the sentinels that answered, or None."""
    reachable = [v for v in views if v.error is None]
    named = Counter(v.primary for v in reachable if v.primary)
    primary, agreeing = named.most_common(1)[0] if named else (None, 0)
    quorum = next((v.quorum for v in reachable if v.quorum is not None), None)
    if quorum is not None and agreeing < quorum:
        primary = None
    return Topology(views, primary, quorum, agreeing)


# ---- detection --------------------------------------------------------------------------


def sentinel_findings(sentinel: SentinelAdmin) -> list[Finding]:
    topo = read_topology(sentinel)
    return [
        _quorum_finding(sentinel, topo),
        _primary_finding(sentinel, topo),
        _replicas_finding(sentinel, topo),
    ]


def _quorum_finding(sentinel: SentinelAdmin, topo: Topology) -> Finding:
    name = "sentinel quorum"
    reachable = topo.reachable
    unreachable = [v.sentinel for v in topo.views if v.error is not None]
    value = {
        "reachable": len(reachable),
        "configured": len(topo.views),
        "quorum": topo.quorum,
        "ckquorum": reachable[0].ckquorum if reachable else None,
        "unreachable": unreachable,
    }
    if not reachable:
        return Finding(
            name,
            Status.UNKNOWN,
            value,
            f"no sentinel of {', '.join(sentinel.hosts)} answered; cannot tell the topology",
        )
    if topo.quorum_lost:
        return Finding(
            name,
            Status.CRITICAL,
            value,
            f"quorum lost: {len(reachable)} of {len(topo.views)} sentinels answer, "
            f"CKQUORUM says {reachable[0].ckquorum!r}; no failover can happen "
            "(the toolkit will not attempt one); bring the sentinels back",
        )
    if unreachable:
        return Finding(
            name,
            Status.WARNING,
            value,
            f"{len(reachable)} of {len(topo.views)} sentinels answer "
            f"(not {', '.join(unreachable)}); quorum still reachable: "
            f"CKQUORUM says {reachable[0].ckquorum!r}",
        )
    return Finding(name, Status.OK, value, f"SENTINEL CKQUORUM says {reachable[0].ckquorum!r}")


def _primary_finding(sentinel: SentinelAdmin, topo: Topology) -> Finding:
    name = "sentinel primary"
    reachable = topo.reachable
    value: dict[str, Any] = {
        "primary": topo.primary,
        "named_by": topo.agreeing,
        "of": len(reachable),
        "failover_in_progress": topo.failover_in_progress,
    }
    if not reachable:
        return Finding(name, Status.UNKNOWN, value, "no sentinel answered")
    if topo.primary is None:
        names = sorted({str(v.primary) for v in reachable})
        return Finding(
            name,
            Status.UNKNOWN if topo.quorum_lost else Status.WARNING,
            value,
            f"no quorum of sentinels names one primary (they name {', '.join(names)})",
        )
    evidence = f"named by {topo.agreeing} of {len(reachable)} sentinels"
    if topo.failover_in_progress:
        return Finding(
            name,
            Status.WARNING,
            value,
            f"failover in progress (primary {topo.primary}, {evidence})",
        )
    if topo.primary_down:
        return Finding(
            name,
            Status.CRITICAL,
            value,
            f"primary {topo.primary} is down ({evidence} flag it down) and the sentinels have "
            "not failed over: messages are stored but not pushed; run `e2ee-ops redis recover`",
        )
    try:
        role = sentinel.role(topo.primary)
    except E2eeOpsError as exc:
        return Finding(
            name,
            Status.CRITICAL,
            value,
            f"primary {topo.primary} ({evidence}) does not answer ROLE: {exc}",
        )
    value["role"] = role.role
    if role.role != "master":
        return Finding(
            name,
            Status.WARNING,
            value,
            f"{topo.primary} ({evidence}) answers ROLE {role.role}: a switch is under way",
        )
    return Finding(name, Status.OK, value, f"primary {topo.primary}, {evidence}, ROLE master")


def _replicas_finding(sentinel: SentinelAdmin, topo: Topology) -> Finding:
    name = "redis replicas"
    lead = topo.lead
    if lead is None or topo.primary is None:
        return Finding(name, Status.UNKNOWN, None, "no agreed primary, so no replica list")
    try:
        lags: dict[str, int] | None = sentinel.replica_lag(topo.primary)
    except E2eeOpsError:
        lags = None
    rows = [
        {
            "replica": r.address,
            "flags": ",".join(r.flags),
            "link": r.link_status,
            "lag_seconds": lags.get(r.address) if lags is not None else None,
        }
        for r in lead.replicas
    ]
    down = [r.address for r in lead.replicas if r.down]
    broken = [r for r in lead.replicas if not r.down and r.link_status != "ok"]
    healthy = len(lead.replicas) - len(down) - len(broken)
    where = f"SENTINEL REPLICAS on {lead.sentinel}"
    if down or broken:
        parts = [f"{a} down" for a in down] + [f"{r.address} link {r.link_status}" for r in broken]
        return Finding(
            name,
            Status.WARNING,
            rows,
            f"degraded: {healthy} healthy replica(s) of {len(lead.replicas)} ({'; '.join(parts)}; "
            f"{where}); bring it back with `e2ee-ops redis recover`",
        )
    if not lead.replicas:
        return Finding(
            name, Status.WARNING, rows, f"no replica ({where}): losing the primary is an outage"
        )
    lag_text = (
        ", ".join(f"{r['replica']} lag {r['lag_seconds']} s" for r in rows)
        if lags is not None
        else "lag unknown (primary's INFO replication did not answer)"
    )
    return Finding(name, Status.OK, rows, f"{healthy} replica(s), link ok ({where}); {lag_text}")


# ---- recovery ---------------------------------------------------------------------------


def sentinel_recovery_plan(t: RedisTargets, *, margin_seconds: float) -> Plan:
    assert t.sentinel is not None
    service = t.sentinel.service
    restart = (
        t.restarter.describe()
        if t.restarter and t.restarter.spec
        else "(no restart method configured)"
    )
    th = t.thresholds
    return Plan(
        title="redis recover (sentinel)",
        steps=[
            Step(
                "ask every sentinel: the primary a quorum names, CKQUORUM; stop if quorum is lost"
            ),
            Step(
                f"if the primary is down and no failover happened within down-after + "
                f"{margin_seconds:g} s: SENTINEL FAILOVER {service}"
            ),
            Step(
                "verify the new primary answers ROLE master "
                f"(deadline {th.recover_deadline_seconds:g} s)"
            ),
            Step("watch /dm/metrics until redis_status is ok and relay_lag is false"),
            Step("send a canary message from canary A to canary B and see it arrive over SSE"),
            Step(
                "compare messages stored vs delivered since the outage began; list any undelivered"
            ),
            Step(f"restart the failed node: {restart}"),
            Step("verify it rejoined as a replica of the new primary (ROLE)"),
            Step("record the outage (unavailability window, failover time) in the journal"),
        ],
    )


def recover_sentinel(
    t: RedisTargets,
    *,
    execute: bool,
    since: datetime | None = None,
    journal: Journal | None = None,
    settle_seconds: float = 15.0,
    margin_seconds: float = FAILOVER_MARGIN_SECONDS,
) -> Plan:
    plan = sentinel_recovery_plan(t, margin_seconds=margin_seconds)
    if not execute:
        return plan
    assert t.sentinel is not None
    sentinel = t.sentinel
    run = StepRunner(plan, t.progress)
    th = t.thresholds
    detected_at = datetime.now(UTC)

    def fail(outcome: str) -> Plan:
        return run.fail(outcome, rest="not run: an earlier verification failed")

    topo = read_topology(sentinel)
    if not topo.reachable:
        return fail(f"no sentinel answered ({', '.join(sentinel.hosts)}); nothing was changed")
    if topo.quorum_lost:
        return fail(
            f"quorum lost ({len(topo.reachable)} of {len(topo.views)} sentinels answer): "
            "no failover attempted; bring the sentinels back first"
        )
    old_primary = topo.primary
    failed_nodes = set(topo.down_replicas())
    run.done(f"primary {old_primary} named by {topo.agreeing} of {len(topo.reachable)} sentinels")

    # 2. failover: wait for the sentinels, then ask for it.
    failover: dict[str, Any] = {"triggered": False}
    if _primary_answers(sentinel, old_primary):
        run.skip(f"skipped: primary {old_primary} answers ROLE master; no failover needed")
    else:
        wait = topo.down_after_seconds + margin_seconds
        settled: list[str] = []  # "back": the primary answers again; "moved": a failover

        def primary_settled() -> bool:
            if _primary_answers(sentinel, old_primary):
                settled.append("back")
            elif _moved_and_answers(sentinel, old_primary):
                settled.append("moved")
            return bool(settled)

        _wait_until(t, wait, primary_settled)
        if settled == ["back"]:
            run.skip(
                f"skipped: primary {old_primary} answers ROLE master again (within {wait:g} s); "
                "no failover needed"
            )
        elif settled == ["moved"]:
            run.skip(f"skipped: the sentinels failed over by themselves (within {wait:g} s)")
        else:
            lead = read_topology(sentinel).lead
            if lead is None:
                return fail("no sentinel names a primary any more; nothing was changed")
            try:
                sentinel.failover(lead.sentinel)
            except E2eeOpsError as exc:
                return fail(f"SENTINEL FAILOVER {sentinel.service} failed: {exc}")
            failover["triggered"] = True
            failover["requested_at"] = datetime.now(UTC).isoformat()
            run.done(
                f"no failover within {wait:g} s: SENTINEL FAILOVER {sentinel.service} "
                f"sent to {lead.sentinel}"
            )

    # 3. the new primary answers.
    if not _wait_until(
        t,
        th.recover_deadline_seconds,
        lambda: _primary_answers(sentinel, read_topology(sentinel).primary),
    ):
        return fail(f"no primary answered ROLE master within {th.recover_deadline_seconds:g} s")
    now_topo = read_topology(sentinel)
    primary = now_topo.primary
    promoted = primary != old_primary
    failover.update(_failover_time(now_topo))
    if promoted and old_primary is not None:  # None: the sentinels did not agree on one
        failed_nodes.add(old_primary)
    failed_nodes.discard(str(primary))
    run.done(
        f"primary {primary} answers ROLE master"
        + (f" (was {old_primary}; failed over)" if promoted else "")
    )

    # 4-6. the service follows, exactly as after a restart.
    window_start, start_source = _unavailability_start(t.admin_apis, since, detected_at)
    verified = verify_relay(
        t,
        run,
        window_start=window_start,
        settle_seconds=settle_seconds,
        stuck=": the relay did not follow the new primary",
    )
    if isinstance(verified, str):
        return fail(verified)

    # 7-8. the failed node comes back as a replica.
    rejoined: list[str] = []
    if not failed_nodes:
        run.skip("skipped: no node is down")
        run.skip("skipped: no node to rejoin")
    else:
        if t.restarter is None or t.restarter.spec is None:
            return fail(
                f"{', '.join(sorted(failed_nodes))} down and no restart method is configured "
                "for redis (services.redis.restart)"
            )
        try:
            result = t.restarter.restart()
        except E2eeOpsError as exc:
            return fail(f"restart failed: {exc}")
        run.done(
            f"restarted the failed node(s) in {result.seconds:.1f} s: "
            + "; then ".join(f"`{c}`" for c in result.commands)
        )
        for node in sorted(failed_nodes):
            if not _wait_until(t, th.recover_deadline_seconds, _rejoined(sentinel, node, primary)):
                return fail(
                    f"{node} did not rejoin as a replica of {primary} within "
                    f"{th.recover_deadline_seconds:g} s (ROLE)"
                )
            rejoined.append(node)
        run.done(
            f"{', '.join(rejoined)} rejoined as replica of {primary} "
            "(ROLE: slave, connected; the sentinels list it up, link ok)"
        )

    unavailable = _unavailability_record(t.admin_apis)
    if unavailable["from"] and failover.get("primary_since"):
        lost = datetime.fromisoformat(unavailable["from"])
        since_ = datetime.fromisoformat(failover["primary_since"])
        if since_ >= lost:
            # From the relay losing Redis to the new primary taking the role.
            failover["seconds_from_loss"] = round((since_ - lost).total_seconds(), 3)
    record = {
        "topology": "sentinel",
        "service": sentinel.service,
        "detected_at": detected_at.isoformat(),
        "start": window_start.isoformat(),
        "start_source": start_source,
        "end": datetime.now(UTC).isoformat(),
        "unavailability": unavailable,
        "primary_at_start": old_primary,
        "primary": primary,
        "failover": failover,
        "rejoined_as_replica": rejoined,
        # The relay's own unavailability, lost to regained (the postmortem's duration).
        "duration_seconds": unavailable.get("seconds"),
        **verified.record(),
    }
    return record_outage(plan, run, journal, record)


def _primary_answers(sentinel: SentinelAdmin, address: str | None) -> bool:
    if address is None:
        return False
    try:
        return sentinel.role(address).role == "master"
    except E2eeOpsError:
        return False


def _moved_and_answers(sentinel: SentinelAdmin, old: str | None) -> bool:
    primary = read_topology(sentinel).primary
    return primary not in (None, old) and _primary_answers(sentinel, primary)


def _replica_of(sentinel: SentinelAdmin, node: str, primary: str | None) -> bool:
    """The node says it replicates `primary` (ROLE), and the sentinels list it as a
    replica that is up with its link ok (else `redis check` would still say degraded)."""
    try:
        role = sentinel.role(node)
    except E2eeOpsError:
        return False
    if not (role.role == "slave" and role.primary == primary and role.link == "connected"):
        return False
    lead = read_topology(sentinel).lead
    return lead is not None and any(
        r.address == node and not r.down and r.link_status == "ok" for r in lead.replicas
    )


def _rejoined(sentinel: SentinelAdmin, node: str, primary: str | None) -> Callable[[], bool]:
    return lambda: _replica_of(sentinel, node, primary)


def _failover_time(topo: Topology) -> dict[str, Any]:
    """When the current primary took the role (after a failover: when it completed),
    from the sentinel's own clock."""
    lead = topo.lead
    if lead is None or lead.role_reported_ms is None:
        return {"primary_since": None, "primary_since_source": "unknown"}
    at = datetime.now(UTC) - timedelta(milliseconds=lead.role_reported_ms)
    return {
        "primary_since": at.isoformat(),
        "primary_since_source": f"SENTINEL MASTER role-reported-time on {lead.sentinel}",
    }


def _outage_windows(apis: Sequence[ApiClient]) -> list[dict[str, Any]]:
    for api in apis:
        try:
            rows = api.dm_metrics().get("redis_outages_by_instance") or []
        except E2eeOpsError:
            continue
        return [r for r in rows if isinstance(r, dict)]
    return []


def _unavailability_record(apis: Sequence[ApiClient]) -> dict[str, Any]:
    """The fleet's unavailability window from each instance's own relay record."""
    windows = [r["last_redis_outage"] for r in _outage_windows(apis) if r.get("last_redis_outage")]
    if not windows:
        return {
            "from": None,
            "to": None,
            "seconds": None,
            "source": "unknown (no instance recorded an outage)",
        }
    lost, regained = min(w["lost_at"] for w in windows), max(w["regained_at"] for w in windows)
    seconds = (datetime.fromisoformat(regained) - datetime.fromisoformat(lost)).total_seconds()
    return {
        "from": lost,
        "to": regained,
        "seconds": round(seconds, 3),
        "seconds_by_instance": [w["duration_seconds"] for w in windows],
        "source": "the API instances' relay outage records (/dm/metrics redis_outages_by_instance)",
    }


def _unavailability_start(
    apis: Sequence[ApiClient], since: datetime | None, now: datetime
) -> tuple[datetime, str]:
    if since is not None:
        return since, "--since given by the operator"
    starts = []
    for row in _outage_windows(apis):
        # An outage still open on an instance, or its last one that closed.
        last = row.get("last_redis_outage") or {}
        starts += [s for s in (row.get("redis_unavailable_since"), last.get("lost_at")) if s]
    parsed = [datetime.fromisoformat(s) for s in starts]
    recent = [p for p in parsed if now - p < timedelta(hours=1)]
    if not recent:
        return now, "detection by redis recover (no earlier evidence)"
    return min(recent), "the API instances' relay outage records (/dm/metrics)"
