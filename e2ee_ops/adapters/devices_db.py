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

# Limit-first: the shown rows are the head of one ordered walk of the pool index
# (0006_stuck_indexes: pool size, then signed-prekey age), joined to their device and
# user until `limit` active ones are found; the counts come from index-only scans, with
# devices that are not active left out through their own small index. Stale signed
# prekeys and inactive devices (never in a pool under the warning threshold: those
# are already counted) are read only when their cutoff is given.
# The head of one source (the pools, or the other reasons), worst first, with the
# device row fetched for these entries only; `limit` of them at most. OFFSET 0 keeps
# those primary-key lookups: a hash join would read every device.
_HEAD_SQL = """(
    SELECT d.device_id, d.user_id, d.device_name, c.prekeys_remaining,
           c.signed_prekey_uploaded_at, d.last_seen_at
    FROM {source} c
    CROSS JOIN LATERAL (
        SELECT e.device_id, e.user_id, e.device_name, e.last_seen_at, e.status
        FROM e2ee_devices e WHERE e.device_id = c.device_id OFFSET 0
    ) d
    WHERE d.status = 'active'
    ORDER BY c.prekeys_remaining, c.signed_prekey_uploaded_at, d.last_seen_at, d.device_id
    LIMIT %(limit)s
)"""
# The instant ages are measured from: the database's clock unless one is pinned.
_AT = "COALESCE(%(at)s::timestamptz, now())"
# --user: one hashed set of that user's devices, probed by every source.
_OF_USER = """(%(user_id)s::bigint IS NULL OR {0}.device_id IN (
        SELECT o.device_id FROM e2ee_devices o WHERE o.user_id = %(user_id)s::bigint))"""
_ORDER = "s.prekeys_remaining, s.signed_prekey_uploaded_at, s.last_seen_at, s.device_id"
STUCK_DEVICES_SQL = f"""
WITH pools AS NOT MATERIALIZED (
    SELECT kb.device_id, kb.prekeys_remaining, kb.signed_prekey_uploaded_at
    FROM e2ee_key_bundles kb
    WHERE kb.prekeys_remaining < %(warning)s AND {_OF_USER.format("kb")}
), stale AS NOT MATERIALIZED (
    SELECT kb.device_id FROM e2ee_key_bundles kb
    WHERE %(spk_max_age_seconds)s::float8 IS NOT NULL
      AND kb.signed_prekey_uploaded_at
          < {_AT} - make_interval(secs => %(spk_max_age_seconds)s::float8)
      AND {_OF_USER.format("kb")}
), inactive AS NOT MATERIALIZED (
    SELECT d.device_id FROM e2ee_devices d
    WHERE %(inactive_seconds)s::float8 IS NOT NULL AND d.status = 'active'
      AND d.last_seen_at < {_AT} - make_interval(secs => %(inactive_seconds)s::float8)
      AND {_OF_USER.format("d")}
), totals AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE c.critical) AS critical_total,
           count(*) FILTER (WHERE c.pool) AS pools_total
    FROM (
        SELECT a.device_id, bool_or(a.critical) AS critical, bool_or(a.pool) AS pool
        FROM (
            SELECT device_id, prekeys_remaining < %(critical)s AS critical, true AS pool
            FROM pools
            UNION ALL SELECT device_id, false, false FROM stale
            UNION ALL SELECT device_id, false, false FROM inactive
        ) a
        WHERE NOT EXISTS (
            SELECT FROM e2ee_devices r
            WHERE r.device_id = a.device_id AND r.status <> 'active'
        )
        GROUP BY a.device_id
    ) c
), others AS NOT MATERIALIZED (
    -- Read only when the pools do not fill the page.
    -- OFFSET 0 keeps the per-device primary-key lookups: a hash join would read every
    -- bundle.
    SELECT kb.device_id, kb.prekeys_remaining, kb.signed_prekey_uploaded_at
    FROM (SELECT device_id FROM stale UNION SELECT device_id FROM inactive) o
    CROSS JOIN LATERAL (
        SELECT b.device_id, b.prekeys_remaining, b.signed_prekey_uploaded_at
        FROM e2ee_key_bundles b WHERE b.device_id = o.device_id OFFSET 0
    ) kb
    WHERE kb.prekeys_remaining >= %(warning)s
      AND (SELECT pools_total FROM totals) < %(limit)s
), shown AS (
    SELECT * FROM (
        {_HEAD_SQL.format(source="pools")}
        UNION ALL
        {_HEAD_SQL.format(source="others")}
    ) s
    ORDER BY {_ORDER}
    LIMIT %(limit)s
)
SELECT s.device_id, s.user_id, u.username, u.email, s.device_name, s.prekeys_remaining,
       s.signed_prekey_uploaded_at, s.last_seen_at, t.total, t.critical_total, {_AT}
FROM totals t
LEFT JOIN (shown s JOIN users u ON u.account_id = s.user_id) ON true
ORDER BY {_ORDER}
"""

# Before STUCK_DEVICES_SQL, in its session: no parallel workers. The planner picks them
# for the totals once the bundles outgrow min_parallel_table_scan_size (about 100k
# devices), and starting them cost more than the whole serial query (10.5 ms against
# 3.4 ms at 100k devices, where the runbook's own query takes 7.3 ms).
STUCK_SESSION_SQL = "SET max_parallel_workers_per_gather = 0"

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
    spk_max_age_seconds: float | None,
    inactive_seconds: float | None,
    user_id: int | None,
    limit: int,
) -> dict[str, Any]:
    return {
        "critical": critical,
        "warning": warning,
        "spk_max_age_seconds": spk_max_age_seconds,
        "inactive_seconds": inactive_seconds,
        "user_id": user_id,
        "limit": limit,
        "at": None,  # the database's now(); `stuck_devices` sets its query_clock()
    }


def _row(r: Sequence[Any], status: str = "active") -> DeviceRow:
    return DeviceRow(
        str(r[0]), int(r[1]), str(r[2]), r[3], str(r[4]), int(r[5]), r[6], r[7], status
    )


class DevicesDatabase:
    """Reads the service's devices; writes only the toolkit's own reminder table."""

    def __init__(self, db: OpsDatabase) -> None:
        self.db = db

    def now(self) -> datetime:
        return self.db.now()

    def query_clock(self) -> datetime | None:
        """The instant `stuck_devices` measures ages from; None: the database's now()."""
        return None

    def stuck_devices(self, params: dict[str, Any]) -> StuckQueryResult:
        with self.db.connect() as conn:
            conn.execute(STUCK_SESSION_SQL)
            rows = conn.execute(STUCK_DEVICES_SQL, {**params, "at": self.query_clock()}).fetchall()
        # One row at least (the totals), with no device when nothing is stuck.
        first = rows[0]
        shown = [_row(r) for r in rows if r[0] is not None]
        return StuckQueryResult(shown, int(first[8]), int(first[9]), first[10])

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
