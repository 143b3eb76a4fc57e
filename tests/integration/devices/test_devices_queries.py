"""What the devices adapter reads and writes, against real rows: the stuck query's rows,
totals and clock, the current state of given devices (revoked ones included), and the
reminder log's records, window and withdrawals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from e2ee_ops.adapters.devices_db import DeviceRow, DevicesDatabase, stuck_params
from e2ee_ops.adapters.postgres import OpsDatabase
from e2ee_ops.dburl import libpq_url
from tests.integration.test_threshold_boundaries import PinnedClockDevices, _user


@dataclass
class Seeded:
    url: str
    now: datetime
    users: dict[str, int]
    devices: dict[str, DeviceRow]


def _device(
    conn: psycopg.Connection[Any],
    *,
    user_id: int,
    username: str,
    email: str | None,
    name: str,
    prekeys: int,
    spk_at: datetime,
    seen_at: datetime,
) -> DeviceRow:
    row = conn.execute(
        "INSERT INTO e2ee_devices (user_id, device_name, identity_key, last_seen_at) "
        "VALUES (%s, %s, '\\x00', %s) RETURNING device_id",
        (user_id, name, seen_at),
    ).fetchone()
    assert row is not None
    conn.execute(
        "INSERT INTO e2ee_key_bundles (device_id, signed_prekey_id, signed_prekey_public,"
        " signed_prekey_signature, signed_prekey_uploaded_at, prekeys_remaining) "
        "VALUES (%s, 1, '\\x00', '\\x00', %s, %s)",
        (row[0], spk_at, prekeys),
    )
    return DeviceRow(str(row[0]), user_id, username, email, name, prekeys, spk_at, seen_at)


@pytest.fixture
def seeded(clean_db: str) -> Seeded:
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as conn:
        # The toolkit's own reminder table is not the service's: emptied here.
        conn.execute("DROP TABLE IF EXISTS e2ee_ops_notifications")
        # The pinned "now": an hour ago, so a query that ignores it measures from later.
        now = conn.execute("SELECT now() - interval '1 hour'").fetchone()[0]  # type: ignore[index]
        users = {name: _user(conn, name) for name in ("alice", "bob")}
        conn.execute(
            "UPDATE users SET email = 'alice@example.com' WHERE account_id = %s", (users["alice"],)
        )

        def device(owner: str, name: str, prekeys: int, spk_days: float, seen_days: float):  # type: ignore[no-untyped-def]
            return _device(
                conn,
                user_id=users[owner],
                username=owner,
                email="alice@example.com" if owner == "alice" else None,
                name=name,
                prekeys=prekeys,
                spk_at=now - timedelta(days=spk_days),
                seen_at=now - timedelta(days=seen_days, hours=1),
            )

        devices = {
            "phone": device("alice", "phone", 2, 1, 0),
            "tablet": device("bob", "tablet", 7, 2, 1),
            "laptop": device("alice", "laptop", 40, 100, 0),
            # Stale for a query measured an hour after the pinned instant, not before.
            "watch": device("bob", "watch", 40, 90 - 0.5 / 24, 0),
            "old": device("bob", "old", 0, 1, 0),
        }
        conn.execute(
            "UPDATE e2ee_devices SET status = 'revoked' WHERE device_id = %s",
            (devices["old"].device_id,),
        )
    return Seeded(clean_db, now, users, devices)


def _params(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "critical": 5,
        "warning": 10,
        "spk_max_age_seconds": 90 * 86400.0,
        "inactive_seconds": 30 * 86400.0,
        "user_id": None,
        "limit": 10,
    }
    return stuck_params(**{**base, **changes})


def test_the_stuck_rows_totals_and_clock(seeded: Seeded) -> None:
    db = PinnedClockDevices(OpsDatabase(seeded.url), seeded.now)
    result = db.stuck_devices(_params())
    d = seeded.devices
    assert result.rows == [d["phone"], d["tablet"], d["laptop"]]
    assert [r.status for r in result.rows] == ["active"] * 3
    assert (result.total, result.critical_total, result.now) == (3, 1, seeded.now)


def test_the_stuck_query_filters_and_limits(seeded: Seeded) -> None:
    db = PinnedClockDevices(OpsDatabase(seeded.url), seeded.now)
    d = seeded.devices
    only_bob = db.stuck_devices(_params(user_id=seeded.users["bob"]))
    assert (only_bob.rows, only_bob.total, only_bob.critical_total) == ([d["tablet"]], 1, 0)
    first = db.stuck_devices(_params(limit=1))
    assert (first.rows, first.total) == ([d["phone"]], 3)
    pools = db.stuck_devices(_params(spk_max_age_seconds=None, inactive_seconds=None))
    assert pools.rows == [d["phone"], d["tablet"]]


def test_nothing_stuck_is_one_row_of_totals(seeded: Seeded) -> None:
    db = PinnedClockDevices(OpsDatabase(seeded.url), seeded.now)
    result = db.stuck_devices(_params(critical=0, warning=0, spk_max_age_seconds=None))
    assert (result.rows, result.total, result.critical_total) == ([], 0, 0)


def test_the_database_clock_by_default(seeded: Seeded) -> None:
    result = DevicesDatabase(OpsDatabase(seeded.url)).stuck_devices(_params())
    assert result.now > seeded.now
    assert seeded.devices["watch"] in result.rows and result.total == 4


def test_current_state_of_given_devices(seeded: Seeded) -> None:
    d = seeded.devices
    db = DevicesDatabase(OpsDatabase(seeded.url))
    asked = [d["phone"].device_id, d["old"].device_id, "00000000-0000-0000-0000-000000000000"]
    assert db.devices(asked) == {
        d["phone"].device_id: d["phone"],
        d["old"].device_id: DeviceRow(**{**d["old"].__dict__, "status": "revoked"}),
    }


def test_reminders_recorded_found_in_their_window_and_withdrawn(seeded: Seeded) -> None:
    d = seeded.devices
    phone, tablet = d["phone"].device_id, d["tablet"].device_id
    db = DevicesDatabase(OpsDatabase(seeded.url))
    with db.notify_lock(wait_seconds=5) as log:
        first = log.record(phone, seeded.users["alice"], "push", "CRITICAL")
        second = log.record(tablet, seeded.users["bob"], "email", "WARNING")
        assert log.recently_sent([phone, tablet], 2.0) == {(phone, "push"), (tablet, "email")}
        assert log.recently_sent([tablet], 2.0) == {(tablet, "email")}
    with psycopg.connect(libpq_url(seeded.url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, device_id::text, user_id, channel, severity FROM e2ee_ops_notifications "
            "ORDER BY id"
        ).fetchall()
        assert rows == [
            (first, phone, seeded.users["alice"], "push", "CRITICAL"),
            (second, tablet, seeded.users["bob"], "email", "WARNING"),
        ]
        # Just inside a 2-hour window, and just outside it.
        conn.execute(
            "UPDATE e2ee_ops_notifications SET sent_at = now() - interval '2 hours' "
            "+ interval '1 second' WHERE id = %s",
            (first,),
        )
        conn.execute(
            "UPDATE e2ee_ops_notifications SET sent_at = now() - interval '2 hours 1 second' "
            "WHERE id = %s",
            (second,),
        )
    with db.notify_lock(wait_seconds=5) as log:
        assert log.recently_sent([phone, tablet], 2.0) == {(phone, "push")}
        log.forget(first)
        assert log.recently_sent([phone, tablet], 2.0) == set()
