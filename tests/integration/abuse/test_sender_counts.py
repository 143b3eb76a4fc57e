"""The per-sender rollup (dm_sender_counts) that `abuse top-senders` reads stays exact:
for any window, its counts equal counting dm_messages, through inserts, updates,
cascaded deletes, rolled-back sends and truncation."""

from __future__ import annotations

import psycopg
import pytest

from bench.seed_scale import seed
from e2ee_ops.adapters.abuse_db import SENDERS_IN_WINDOW_SQL
from e2ee_ops.dburl import libpq_url
from e2ee_ops.reference.bootstrap import downgrade, migrate

RAW_SQL = (
    "SELECT sender_user_id, count(*) FROM dm_messages "
    "WHERE created_at > now() - make_interval(secs => %(window_seconds)s) "
    "GROUP BY sender_user_id"
)
# Whole buckets, a partial first bucket, a window shorter than one bucket, a day.
WINDOWS = (90.0, 600.0, 3600.0, 3 * 3600.0 + 17.0, 86400.0)


@pytest.fixture(scope="module")
def url(make_database) -> str:  # type: ignore[no-untyped-def]
    url: str = make_database("sender_counts")
    migrate(url)
    return url


@pytest.fixture(scope="module")
def conn(url: str):  # type: ignore[no-untyped-def]
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        seed(conn, devices=300, messages=5_000)
        yield conn


def _assert_exact(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
    for window in WINDOWS:
        params = {"window_seconds": window}
        ours = dict(conn.execute(SENDERS_IN_WINDOW_SQL, params).fetchall())
        raw = dict(conn.execute(RAW_SQL, params).fetchall())
        assert ours == raw, window
    assert ours  # the day window holds messages: the comparison was not vacuous


def test_rollup_matches_the_messages_after_bulk_insert(conn) -> None:  # type: ignore[no-untyped-def]
    _assert_exact(conn)


def test_rollup_follows_updates_deletes_and_rollbacks(conn) -> None:  # type: ignore[no-untyped-def]
    # A message moved into another bucket and to another sender.
    conn.execute(
        "UPDATE dm_messages SET created_at = created_at - interval '47 minutes', "
        "sender_user_id = 1 + sender_user_id % 7 WHERE id % 11 = 0"
    )
    # A conversation deleted: its messages go by cascade.
    conn.execute(
        "DELETE FROM dm_conversations WHERE conversation_id IN "
        "(SELECT conversation_id FROM dm_messages ORDER BY id LIMIT 3)"
    )
    # A send rolled back takes its count with it.
    with pytest.raises(RuntimeError), conn.transaction():
        conn.execute(
            "INSERT INTO dm_messages (conversation_id, sender_user_id, sender_device_id, "
            "client_message_id) SELECT conversation_id, created_by, gen_random_uuid(), "
            "'rolled-back' FROM dm_conversations LIMIT 1"
        )
        raise RuntimeError("abort")
    _assert_exact(conn)


def test_upgrade_counts_the_messages_already_stored(conn, url: str) -> None:  # type: ignore[no-untyped-def]
    downgrade(url, "0006_stuck_indexes")
    migrate(url)
    _assert_exact(conn)


def test_truncate_empties_the_rollup(conn) -> None:  # type: ignore[no-untyped-def]
    conn.execute("TRUNCATE dm_messages CASCADE")
    assert conn.execute("SELECT count(*) FROM dm_sender_counts").fetchone() == (0,)
    for window in WINDOWS:
        assert conn.execute(SENDERS_IN_WINDOW_SQL, {"window_seconds": window}).fetchall() == []
