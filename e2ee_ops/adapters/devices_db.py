"""Stuck devices in the service's PostgreSQL, and the toolkit's record of reminders sent.

Metadata only: device ids, names, pool sizes, key ages, last-seen times, account ids,
usernames and email addresses. No statement reads a key, a ciphertext or dm_envelopes.

Every query here is index-driven (migration 0004_operator_indexes) so it stays fast
with a million devices; tests/integration/devices/test_explain.py holds it to that.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from e2ee_ops.adapters.postgres import OpsDatabase

# The candidates come from three index scans (UNION) rather than one OR over three
# tables, which PostgreSQL could only answer by reading every device.
STUCK_DEVICES_SQL = """
WITH candidates AS (
    SELECT device_id FROM e2ee_key_bundles WHERE prekeys_remaining < %(warning)s
    UNION
    SELECT device_id FROM e2ee_key_bundles WHERE signed_prekey_uploaded_at < %(spk_cutoff)s
    UNION
    SELECT device_id FROM e2ee_devices WHERE status = 'active' AND last_seen_at < %(seen_cutoff)s
)
SELECT d.device_id, d.user_id, u.username, u.email, d.device_name, kb.prekeys_remaining,
       kb.signed_prekey_uploaded_at, d.last_seen_at,
       count(*) OVER () AS total,
       count(*) FILTER (WHERE kb.prekeys_remaining < %(critical)s) OVER () AS critical_total
FROM candidates c
-- OFFSET 0 keeps these per-candidate primary-key lookups: candidates are few, and a
-- hash join would read every device and every bundle.
CROSS JOIN LATERAL (
    SELECT device_id, user_id, device_name, last_seen_at, status FROM e2ee_devices e
    WHERE e.device_id = c.device_id OFFSET 0
) d
CROSS JOIN LATERAL (
    SELECT prekeys_remaining, signed_prekey_uploaded_at FROM e2ee_key_bundles b
    WHERE b.device_id = c.device_id OFFSET 0
) kb
JOIN users u ON u.account_id = d.user_id
WHERE d.status = 'active'
  AND (%(user_id)s::bigint IS NULL OR d.user_id = %(user_id)s::bigint)
ORDER BY (kb.prekeys_remaining < %(critical)s) DESC, kb.prekeys_remaining,
         kb.signed_prekey_uploaded_at, d.last_seen_at, d.device_id
LIMIT %(limit)s
"""

DEVICES_BY_ID_SQL = """
SELECT d.device_id, d.user_id, u.username, u.email, d.device_name, kb.prekeys_remaining,
       kb.signed_prekey_uploaded_at, d.last_seen_at, d.status
FROM e2ee_devices d
JOIN e2ee_key_bundles kb ON kb.device_id = d.device_id
JOIN users u ON u.account_id = d.user_id
WHERE d.device_id = ANY(%(device_ids)s::uuid[])
"""

NOTIFICATIONS_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS e2ee_ops_notifications (
    id          BIGSERIAL PRIMARY KEY,
    device_id   UUID NOT NULL,
    user_id     BIGINT NOT NULL,
    channel     TEXT NOT NULL,
    severity    TEXT NOT NULL,
    sent_at     TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
NOTIFICATIONS_INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS e2ee_ops_notifications_device_idx "
    "ON e2ee_ops_notifications (device_id, channel, sent_at)"
)
RECENTLY_SENT_SQL = """
SELECT DISTINCT device_id, channel FROM e2ee_ops_notifications
WHERE device_id = ANY(%(device_ids)s::uuid[])
  AND sent_at > now() - make_interval(secs => %(window_seconds)s)
"""
RECORD_SENT_SQL = (
    "INSERT INTO e2ee_ops_notifications (device_id, user_id, channel, severity) "
    "VALUES (%s, %s, %s, %s) RETURNING id"
)
FORGET_SQL = "DELETE FROM e2ee_ops_notifications WHERE id = %s"
# One lock for every `devices stuck --notify` run against this database.
NOTIFY_LOCK_NAME = "devices stuck --notify"


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    user_id: int
    username: str
    email: str | None
    device_name: str
    prekeys_remaining: int
    signed_prekey_uploaded_at: datetime
    last_seen_at: datetime
    status: str = "active"


@dataclass(frozen=True)
class StuckQueryResult:
    rows: list[DeviceRow]
    total: int  # devices matching before --limit
    critical_total: int  # of which under the critical threshold
    now: datetime


def stuck_params(
    *,
    critical: int,
    warning: int,
    spk_cutoff: datetime,
    seen_cutoff: datetime,
    user_id: int | None,
    limit: int,
) -> dict[str, Any]:
    return {
        "critical": critical,
        "warning": warning,
        "spk_cutoff": spk_cutoff,
        "seen_cutoff": seen_cutoff,
        "user_id": user_id,
        "limit": limit,
    }


def _row(r: Sequence[Any], status: str = "active") -> DeviceRow:
    return DeviceRow(
        str(r[0]), int(r[1]), str(r[2]), r[3], str(r[4]), int(r[5]), r[6], r[7], status
    )


class DevicesDatabase:
    """Reads the service's devices; writes only the toolkit's own reminder table."""

    def __init__(self, db: OpsDatabase) -> None:
        self.db = db
        self.host = db.host

    def now(self) -> datetime:
        return self.db.now()

    def stuck_devices(self, params: dict[str, Any]) -> StuckQueryResult:
        with self.db.connect() as conn:
            now = conn.execute("SELECT now()").fetchone()
            rows = conn.execute(STUCK_DEVICES_SQL, params).fetchall()
        assert now is not None
        total = int(rows[0][8]) if rows else 0
        critical_total = int(rows[0][9]) if rows else 0
        return StuckQueryResult([_row(r) for r in rows], total, critical_total, now[0])

    def devices(self, device_ids: Sequence[str]) -> dict[str, DeviceRow]:
        """Current state of the given devices (revoked ones included), by id."""
        with self.db.connect() as conn:
            rows = conn.execute(DEVICES_BY_ID_SQL, {"device_ids": list(device_ids)}).fetchall()
        return {str(r[0]): _row(r, str(r[8])) for r in rows}

    @contextmanager
    def notify_lock(
        self,
        *,
        wait_seconds: float,
        on_wait: Callable[[], None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[ReminderLog]:
        """Hold the notify lock (a session advisory lock) for the block.

        A second run (two cron jobs started at once) waits here until the first has
        recorded what it sent, then finds those devices already reminded.
        """
        with self.db.advisory_lock(
            NOTIFY_LOCK_NAME,
            holder=f"e2ee-ops {NOTIFY_LOCK_NAME} (pid {os.getpid()})",
            wait_seconds=wait_seconds,
            on_wait=lambda _m: on_wait(),
            sleep=sleep,
        ) as conn:
            conn.execute(NOTIFICATIONS_TABLE_SQL)
            conn.execute(NOTIFICATIONS_INDEX_SQL)
            yield ReminderLog(conn)


class ReminderLog:
    """The toolkit's table of reminders sent (e2ee_ops_notifications), under the lock."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._conn = conn

    def recently_sent(self, device_ids: Sequence[str], window_hours: float) -> set[tuple[str, str]]:
        """(device_id, channel) pairs reminded within the window."""
        rows = self._conn.execute(
            RECENTLY_SENT_SQL,
            {"device_ids": list(device_ids), "window_seconds": window_hours * 3600.0},
        ).fetchall()
        return {(str(r[0]), str(r[1])) for r in rows}

    def record(self, device_id: str, user_id: int, channel: str, severity: str) -> int:
        """Record a reminder as sent, before sending it; returns the record's id."""
        row = self._conn.execute(RECORD_SENT_SQL, (device_id, user_id, channel, severity))
        found = row.fetchone()
        assert found is not None
        return int(found[0])

    def forget(self, record_id: int) -> None:
        """Withdraw a record whose reminder certainly did not go out."""
        self._conn.execute(FORGET_SQL, (record_id,))
