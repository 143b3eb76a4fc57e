"""Every figure of the runbook, at, just below and just above, with the exact status.

The cases are generated from `BOUNDARIES`, and `test_every_threshold_has_boundary_cases`
fails when a field is added to `Thresholds` without boundaries here (or a reason why it
has none in `NO_BOUNDARY`). The figure tested is the field's default, the runbook's own.

Where a figure is compared with rows (prekey pools, key and last-seen ages, abuse rates,
the undelivered window), the rows are real, in a PostgreSQL database of this module, and
the toolkit's own query and verdict decide. Ages are set against a pinned "now" read from
the database, so "exactly 90 days old" is exact. `alerts check` runs over HTTP against the
reference server's real `/metrics` where the server derives the figure from rows (pools,
identity changes); the figures no row can pin exactly (ages measured by the server, rates,
latencies, lag) are given as the `/metrics` samples `alerts check` evaluates.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import psycopg
import pytest

from e2ee_ops.adapters.abuse_db import AbuseDatabase
from e2ee_ops.adapters.api import ApiClient
from e2ee_ops.adapters.devices_db import DevicesDatabase
from e2ee_ops.adapters.postgres import OpsDatabase
from e2ee_ops.config import Thresholds
from e2ee_ops.dburl import libpq_url
from e2ee_ops.procedures.abuse import top_senders
from e2ee_ops.procedures.alerts import check_alerts, evaluate_samples
from e2ee_ops.procedures.devices import find_stuck_devices, stuck_options
from e2ee_ops.procedures.redis_outage import undelivered_finding
from e2ee_ops.reference.bootstrap import migrate
from e2ee_ops.schema import fields_of
from e2ee_ops.status import Status

OK, WARNING, CRITICAL = Status.OK, Status.WARNING, Status.CRITICAL
THRESHOLD_NAMES = [f.name for f in fields_of(Thresholds)]
POSITIONS = ("below", "at", "above")
RUNBOOK = Thresholds()


@dataclass(frozen=True)
class Boundary:
    field: str  # a Thresholds field; its default is the figure
    where: str  # which evaluation compares it with data (a key of EVALUATORS)
    step: float  # how far below and above the figure the other two cases sit
    statuses: tuple[Status, Status, Status]  # below, at, above

    def value(self, position: str) -> float:
        figure = float(getattr(RUNBOOK, self.field))
        return figure + (POSITIONS.index(position) - 1) * self.step


HOUR = 1 / 24
ABUSE_RATES = ("messages", "fanout", "new_conversations", "rate_limited")
BOUNDARIES = [
    # Stuck devices: `devices stuck` (its SQL lists, its verdict classifies).
    Boundary("otpk_critical", "devices stuck", 1, (CRITICAL, WARNING, WARNING)),
    Boundary("otpk_warning", "devices stuck", 1, (WARNING, OK, OK)),
    Boundary("signed_prekey_max_age_days", "devices stuck", HOUR, (OK, OK, WARNING)),
    Boundary("device_inactive_days", "devices stuck", HOUR, (OK, OK, WARNING)),
    # `alerts check` against the reference server's real /metrics over HTTP, where the
    # server derives the figure from rows: pools, and identity changes in 24 h.
    Boundary("otpk_critical", "alerts check (server)", 1, (CRITICAL, WARNING, WARNING)),
    Boundary("otpk_warning", "alerts check (server)", 1, (WARNING, OK, OK)),
    Boundary("identity_changes_per_day", "alerts check (server)", 1, (OK, OK, CRITICAL)),
    # The same figures, and those no row can pin (ages, rates, latencies), as the samples
    # of /metrics that `alerts check` evaluates.
    Boundary("otpk_critical", "alerts check", 1, (CRITICAL, WARNING, WARNING)),
    Boundary("otpk_warning", "alerts check", 1, (WARNING, OK, OK)),
    Boundary("signed_prekey_max_age_days", "alerts check", HOUR, (OK, OK, WARNING)),
    Boundary("identity_changes_per_day", "alerts check", 1, (OK, OK, CRITICAL)),
    Boundary("sse_failure_rate", "alerts check", 0.01, (OK, OK, CRITICAL)),
    Boundary("delivery_p99_ms", "alerts check", 10, (OK, OK, WARNING)),
    Boundary("pubsub_lag_seconds", "alerts check", 0.1, (OK, OK, WARNING)),
    # Redis down, but for how long: under the figure it warns, past it it pages.
    Boundary("redis_down_seconds", "alerts check", 1, (WARNING, WARNING, CRITICAL)),
    # `redis check`: a message stored just inside the window and not delivered warns.
    Boundary("undelivered_window_minutes", "redis check", 0.5, (WARNING, OK, OK)),
    # `abuse top-senders --window 1h`: per sender, each rate on its own.
    *(
        Boundary(f"abuse_{rate}_per_hour_{level}", "abuse top-senders", 1, (OK, OK, status))
        for rate in ABUSE_RATES
        for level, status in (("warning", WARNING), ("critical", CRITICAL))
    ),
    # `abuse top-senders --window 5m`: the hourly rates scaled down are tiny, so the
    # minimum count decides.
    *(
        Boundary(f"abuse_{rate}_min", "abuse top-senders (5m)", 1, (OK, OK, WARNING))
        for rate in ABUSE_RATES
    ),
]
NO_BOUNDARY = {
    "recover_deadline_seconds": "a time budget for `redis recover`, compared with no data",
}

CASES = [
    pytest.param(b, position, id=f"{b.field}-{b.where.replace(' ', '-')}-{position}")
    for b in BOUNDARIES
    for position in POSITIONS
]


def test_every_threshold_has_boundary_cases() -> None:
    bounded = {b.field for b in BOUNDARIES}
    assert bounded.isdisjoint(NO_BOUNDARY)
    assert bounded | set(NO_BOUNDARY) == set(THRESHOLD_NAMES)


def test_the_runbook_figures_are_the_defaults() -> None:
    figures = {
        "otpk_critical": 5,
        "otpk_warning": 10,
        "signed_prekey_max_age_days": 90,
        "identity_changes_per_day": 2,
        "redis_down_seconds": 60,
        "sse_failure_rate": 0.10,
        "delivery_p99_ms": 500,
        "pubsub_lag_seconds": 2,
        "undelivered_window_minutes": 5,
    }
    assert {k: getattr(RUNBOOK, k) for k in figures} == figures


# ---- the data: one database for this module, one device or sender per case --------------


def _name(b: Boundary, position: str) -> str:
    return f"{b.field}-{position}"


@dataclass
class World:
    url: str
    now: datetime  # the pinned "now" every age was set against
    empty_url: str  # a database of its own for the undelivered window


def _seed_devices(conn: psycopg.Connection[Any], now: datetime) -> None:
    owner = conn.execute(
        "INSERT INTO users (username) VALUES ('device-owner') RETURNING account_id"
    ).fetchone()[0]  # type: ignore[index]
    for b in BOUNDARIES:
        if b.where != "devices stuck":
            continue
        for position in POSITIONS:
            value = b.value(position)
            prekeys, spk_age, seen_age = 50, 0.0, 0.0
            if b.field.startswith("otpk"):
                prekeys = int(value)
            elif b.field == "signed_prekey_max_age_days":
                spk_age = value
            else:
                seen_age = value
            device = conn.execute(
                "INSERT INTO e2ee_devices (user_id, device_name, identity_key, last_seen_at) "
                "VALUES (%s, %s, '\\x00', %s) RETURNING device_id",
                (owner, _name(b, position), now - timedelta(days=seen_age)),
            ).fetchone()[0]  # type: ignore[index]
            conn.execute(
                "INSERT INTO e2ee_key_bundles (device_id, signed_prekey_id, signed_prekey_public,"
                " signed_prekey_signature, signed_prekey_uploaded_at, prekeys_remaining) "
                "VALUES (%s, 1, '\\x00', '\\x00', %s, %s)",
                (device, now - timedelta(days=spk_age), prekeys),
            )


def _user(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute(
        "INSERT INTO users (username) VALUES (%s) RETURNING account_id", (name,)
    ).fetchone()
    return int(row[0])  # type: ignore[index]


def _conversation(conn: psycopg.Connection[Any], creator: int, peer: int) -> int:
    row = conn.execute(
        "INSERT INTO dm_conversations (pair_key, created_by, created_at) "
        "VALUES (%s, %s, now() - interval '1 minute') RETURNING conversation_id",
        (uuid.uuid4().hex, creator),
    ).fetchone()
    conversation = int(row[0])  # type: ignore[index]
    conn.execute(
        "INSERT INTO dm_conversation_members (conversation_id, user_id) VALUES (%s, %s), (%s, %s)",
        (conversation, creator, conversation, peer),
    )
    return conversation


def _messages(conn: psycopg.Connection[Any], conversation: int, sender: int, count: int) -> None:
    conn.execute(
        "INSERT INTO dm_messages (conversation_id, sender_user_id, sender_device_id, "
        "client_message_id, created_at) "
        "SELECT %s, %s, gen_random_uuid(), gen_random_uuid()::text, now() - interval '1 minute' "
        "FROM generate_series(1, %s) AS n",
        (conversation, sender, count),
    )


def _seed_senders(conn: psycopg.Connection[Any]) -> None:
    peers = [_user(conn, f"peer-{n}") for n in range(60)]
    for b in BOUNDARIES:
        if not b.where.startswith("abuse top-senders"):
            continue
        for position in POSITIONS:
            count = int(b.value(position))
            sender = _user(conn, _name(b, position))
            if "_messages_" in b.field:  # that many messages to one recipient
                conv = _conversation(conn, peers[0], sender)
                _messages(conn, conv, sender, count)
            elif "_fanout_" in b.field:  # one message each to that many recipients
                for peer in peers[:count]:
                    _messages(conn, _conversation(conn, peer, sender), sender, 1)
            elif "_new_conversations_" in b.field:  # that many conversations opened
                for peer in peers[:count]:
                    _conversation(conn, sender, peer)
            else:  # that many 429s
                conn.execute(
                    "INSERT INTO dm_rate_limit_events (user_id, occurred_at) "
                    "SELECT %s, now() - interval '1 minute' FROM generate_series(1, %s)",
                    (sender, count),
                )


@pytest.fixture(scope="module")
def world(make_database: Callable[[str], str]) -> Iterator[World]:
    url = make_database(f"bounds_{uuid.uuid4().hex[:10]}")
    migrate(url)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        _seed_devices(conn, now)
        _seed_senders(conn)
    empty = make_database(f"bounds_{uuid.uuid4().hex[:10]}")
    migrate(empty)
    yield World(url, now, empty)


# ---- the evaluations ----------------------------------------------------------------------


class PinnedClockDevices(DevicesDatabase):
    """The real devices adapter with the "now" its cutoffs are computed from pinned."""

    def __init__(self, db: OpsDatabase, now: datetime) -> None:
        super().__init__(db)
        self._now = now

    def now(self) -> datetime:
        return self._now

    def query_clock(self) -> datetime | None:
        return self._now


@cache
def _stuck(url: str, now: datetime) -> dict[str, Status]:
    options = stuck_options(RUNBOOK, limit=1000)
    report = find_stuck_devices(db=PinnedClockDevices(OpsDatabase(url), now), options=options)
    return {d["device_name"]: Status(d["status"]) for d in report.data["devices"]}


def devices_stuck(world: World, b: Boundary, position: str, _: pytest.FixtureRequest) -> Status:
    """The status `devices stuck` gives the case's device; a device it does not list is OK,
    and one it lists is never OK (the query and the verdict agree on who is stuck)."""
    listed = _stuck(world.url, world.now)
    assert OK not in listed.values(), listed
    return listed.get(_name(b, position), OK)


def abuse_top_senders(
    world: World, b: Boundary, position: str, _: pytest.FixtureRequest, window: float = 3600
) -> Status:
    """The case's sender, with every other abuse rate out of reach so only this one speaks
    (for a minimum count: its measure's own rates stay, scaled to the window; the
    minimum counts keep their defaults)."""
    [measure] = [r for r in ABUSE_RATES if f"abuse_{r}_" in b.field]
    floor = b.field.endswith("_min")
    others = {
        f: 1e9
        for f in THRESHOLD_NAMES
        if "_per_hour_" in f and f != b.field and not (floor and f"abuse_{measure}_" in f)
    }
    report = top_senders(
        db=AbuseDatabase(OpsDatabase(world.url)),
        thresholds=Thresholds(**others),
        window_seconds=window,
        limit=1000,
    )
    senders = {s["username"]: Status(s["status"]) for s in report.data["senders"]}
    return senders.get(_name(b, position), OK)


def _samples(field: str, value: float) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The /metrics samples that put the field's measure at `value`, all else healthy."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {
        "e2ee_redis_up": [({}, 1)],
        "e2ee_otpk_devices_active": [({}, 3)],
        "e2ee_otpk_remaining_min": [({}, 50)],
        "e2ee_identity_changes_max_per_user_24h": [({}, 0)],
        "e2ee_sse_connects_total": [({}, 1000)],
        "e2ee_sse_failures_total": [({}, 0)],
        "e2ee_signed_prekey_age_max_seconds": [({}, 86400)],
        "e2ee_pubsub_lag_seconds": [({}, 0.01)],
        "e2ee_delivery_latency_seconds_bucket": [({"le": "+Inf"}, 0)],
    }
    one = {
        "otpk_critical": "e2ee_otpk_remaining_min",
        "otpk_warning": "e2ee_otpk_remaining_min",
        "identity_changes_per_day": "e2ee_identity_changes_max_per_user_24h",
        "pubsub_lag_seconds": "e2ee_pubsub_lag_seconds",
    }
    if field in one:
        samples[one[field]] = [({}, value)]
    elif field == "signed_prekey_max_age_days":
        # The server exports seconds; the threshold is in days.
        samples["e2ee_signed_prekey_age_max_seconds"] = [({}, value * 86400)]
    elif field == "sse_failure_rate":
        samples["e2ee_sse_failures_total"] = [({}, round(value * 1000))]
    elif field == "delivery_p99_ms":
        # 99 of 100 deliveries within `value` ms, the last within twice that: the p99 is
        # exactly `value`, as histogram_quantile interpolates it.
        seconds = value / 1000.0
        samples["e2ee_delivery_latency_seconds_bucket"] = [
            ({"le": repr(seconds)}, 99),
            ({"le": repr(2 * seconds)}, 100),
            ({"le": "+Inf"}, 100),
        ]
    elif field == "redis_down_seconds":
        samples["e2ee_redis_up"] = [({}, 0)]
    else:
        raise AssertionError(f"no /metrics sample for {field}")
    return samples


def alerts_check(world: World, b: Boundary, position: str, _: pytest.FixtureRequest) -> Status:
    """The status `alerts check` gives the finding this figure decides."""
    value = b.value(position)
    findings = evaluate_samples(
        _samples(b.field, value), RUNBOOK, host="api", redis_down_for=lambda: (value, "a test")
    )
    statuses = [f.status for f in findings]
    # Everything else is healthy, so the worst finding is the one under test.
    assert sorted(statuses, key=lambda s: s.severity)[:-1] == [OK] * (len(statuses) - 1)
    return Status.worst(statuses)


def alerts_check_on_the_server(
    world: World, b: Boundary, position: str, request: pytest.FixtureRequest
) -> Status:
    """`alerts check` over HTTP against the session's reference server, on rows made for
    this case alone: one active device with that pool, or one user with that many identity
    key changes in the last 24 hours."""
    url = request.getfixturevalue("clean_db")
    server = request.getfixturevalue("reference_server")
    count = int(b.value(position))
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        owner = _user(conn, f"owner-{uuid.uuid4().hex[:8]}")
        device = conn.execute(
            "INSERT INTO e2ee_devices (user_id, device_name, identity_key) "
            "VALUES (%s, 'phone', '\\x00') RETURNING device_id",
            (owner,),
        ).fetchone()[0]  # type: ignore[index]
        if b.field.startswith("otpk"):
            conn.execute(
                "INSERT INTO e2ee_key_bundles (device_id, signed_prekey_id, signed_prekey_public,"
                " signed_prekey_signature, prekeys_remaining) VALUES (%s, 1, '\\x00', '\\x00', %s)",
                (device, count),
            )
        else:
            conn.execute(
                "INSERT INTO e2ee_identity_events (user_id, device_id, old_fingerprint,"
                " new_fingerprint, occurred_at) "
                "SELECT %s, %s, 'old', 'new', now() - interval '1 hour' "
                "FROM generate_series(1, %s)",
                (owner, device, count),
            )
    prefix = "otpk pool min" if b.field.startswith("otpk") else "identity changes per user"
    with ApiClient(server.url, timeout=10) as api:
        report = check_alerts(apis=[api], thresholds=RUNBOOK, sample_interval=0)
    [finding] = [f for f in report.findings if f.name.startswith(prefix)]
    assert finding.value == count
    return finding.status


def redis_check(world: World, b: Boundary, position: str, _: pytest.FixtureRequest) -> Status:
    """`redis check`'s undelivered finding with one message of the given age not delivered
    to a device seen since (deliverable, not delivered).

    Its query compares with the database's now(), which only moves on: a message stored
    exactly one window before its insert is outside the window by the time it is read."""
    age = b.value(position)
    with psycopg.connect(libpq_url(world.empty_url), autocommit=True) as conn:
        conn.execute("DELETE FROM dm_messages")
        sender = _user(conn, f"sender-{uuid.uuid4().hex[:8]}")
        peer = _user(conn, f"peer-{uuid.uuid4().hex[:8]}")
        conv = _conversation(conn, sender, peer)
        message = conn.execute(
            "INSERT INTO dm_messages (conversation_id, sender_user_id, sender_device_id, "
            "client_message_id, created_at) "
            "VALUES (%s, %s, gen_random_uuid(), 'm', now() - make_interval(secs => %s)) "
            "RETURNING id",
            (conv, sender, age * 60.0),
        ).fetchone()[0]  # type: ignore[index]
        device = conn.execute(  # seen now: after the message was stored
            "INSERT INTO e2ee_devices (user_id, device_name, identity_key) "
            "VALUES (%s, 'phone', '\\x00') RETURNING device_id",
            (peer,),
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO dm_delivery (message_id, device_id, recipient_user_id) "
            "VALUES (%s, %s, %s)",
            (message, device, peer),
        )
    finding = undelivered_finding(OpsDatabase(world.empty_url), RUNBOOK)
    assert finding.value == (1 if finding.status is WARNING else 0)
    return finding.status


# Each takes the case and the test's fixture request (for fixtures only it needs).
EVALUATORS: dict[str, Callable[[World, Boundary, str, pytest.FixtureRequest], Status]] = {
    "devices stuck": devices_stuck,
    "alerts check": alerts_check,
    "alerts check (server)": alerts_check_on_the_server,
    "abuse top-senders": abuse_top_senders,
    "abuse top-senders (5m)": lambda w, b, p, r: abuse_top_senders(w, b, p, r, window=300),
    "redis check": redis_check,
}


@pytest.mark.parametrize(("boundary", "position"), CASES)
def test_boundary(
    world: World, boundary: Boundary, position: str, request: pytest.FixtureRequest
) -> None:
    expected = boundary.statuses[POSITIONS.index(position)]
    assert EVALUATORS[boundary.where](world, boundary, position, request) is expected


def test_stuck_devices_count_only_pools_under_the_critical_figure(world: World) -> None:
    """The report's critical count (the SQL's own FILTER) agrees with the verdicts."""
    options = stuck_options(RUNBOOK, limit=1000)
    report = find_stuck_devices(
        db=PinnedClockDevices(OpsDatabase(world.url), world.now), options=options
    )
    names = {d["device_name"] for d in report.data["devices"] if d["status"] == "CRITICAL"}
    assert names == {"otpk_critical-below"}
    assert report.data["critical"] == 1
    assert report.data["total"] == len(report.data["devices"]) == 6
    assert report.data["thresholds"] == {
        "otpk_critical": 5,
        "otpk_warning": 10,
        "signed_prekey_max_age_days": 90,
        "device_inactive_days": 30,
    }
