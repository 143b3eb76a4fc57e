"""The runbook's question, who sent the most messages in the window, answered from the
heads of the rollup's buckets (0008_sender_counts_ranked) when the bounds prove it and
from every sender otherwise: either way exactly the list that counting dm_messages
gives (most messages first, ties by account id), through bursts, flat traffic, the
window's edges, deletes, rolled-back and concurrent sends."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from e2ee_ops.adapters.abuse_db import (
    HEADS,
    MESSAGES,
    ROLLUP,
    TopByMessages,
    top_by_messages,
)
from e2ee_ops.dburl import libpq_url

RAW_TOP_SQL = (
    "SELECT sender_user_id, count(*) FROM dm_messages "
    "WHERE created_at > now() - make_interval(secs => %s) "
    "GROUP BY sender_user_id ORDER BY count(*) DESC, sender_user_id LIMIT %s"
)
Conn = psycopg.Connection[Any]


def _users(conn: Conn, count: int, prefix: str) -> list[int]:
    """`count` users, each with a conversation of their own to write in."""
    rows = conn.execute(
        "WITH u AS (INSERT INTO users (username) SELECT %s || g FROM generate_series(1, %s) g "
        "RETURNING account_id) "
        "INSERT INTO dm_conversations (pair_key, created_by) "
        "SELECT 'c' || account_id, account_id FROM u RETURNING created_by",
        (prefix, count),
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def _send(conn: Conn, senders: list[int], each: int, spread: str = "1 hour") -> None:
    """`each` messages from every one of `senders`, spread over the last `spread`."""
    conn.execute(
        "INSERT INTO dm_messages (conversation_id, sender_user_id, sender_device_id, "
        "client_message_id, created_at) "
        "SELECT c.conversation_id, c.created_by, gen_random_uuid(), gen_random_uuid()::text, "
        "now() - random() * %s::interval "
        "FROM dm_conversations c CROSS JOIN generate_series(1, %s) "
        "WHERE c.created_by = ANY(%s)",
        (spread, each, senders),
    )


def _top(conn: Conn, window: float, limit: int) -> TopByMessages:
    """The adapter's answer, checked against counting dm_messages right after (nothing is
    written in between), and so is the answer with each source of the every-sender count
    imposed."""
    found = top_by_messages(conn, window_seconds=window, limit=limit)
    raw = [(int(s), int(n)) for s, n in conn.execute(RAW_TOP_SQL, (window, limit))]
    assert found.senders == raw, (window, limit, found.source)
    for source in (ROLLUP, MESSAGES):
        imposed = top_by_messages(conn, window_seconds=window, limit=limit, count_source=source)
        assert imposed.senders == raw, (window, limit, source)
        assert imposed.source == (HEADS if found.bounded else source)
    return found


def _flush_statistics(conn: Conn) -> None:
    """This session's pending table statistics reach the shared ones before the next
    statement (PostgreSQL flushes them as the session goes idle, when forced)."""
    conn.execute("SELECT pg_stat_force_next_flush()")


@pytest.fixture
def conn(clean_db: str):  # type: ignore[no-untyped-def]
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as conn:
        yield conn


def test_a_burst_over_a_long_tail_is_proved_from_the_bucket_heads(conn: Conn) -> None:
    # 2,000 senders of one message each: every five-minute bucket holds more senders than
    # its head lists, so a sender left out may still have one message per bucket.
    _send(conn, _users(conn, 2000, "tail"), 1)
    burst = _users(conn, 5, "burst")
    for n, sender in enumerate(burst):
        _send(conn, [sender], 100 + 10 * n)
    found = _top(conn, 3600, 5)
    assert found.bounded is True
    assert [s for s, _ in found.senders] == burst[::-1]
    assert _top(conn, 3600, 1).bounded is True
    # A sixth sender would come from the tail, which the heads cannot tell apart.
    assert _top(conn, 3600, 10).bounded is False


def test_flat_traffic_falls_back_to_counting_every_sender(conn: Conn) -> None:
    _send(conn, _users(conn, 2000, "flat"), 3)
    assert _top(conn, 3600, 5).bounded is False
    assert _top(conn, 86400, 10).bounded is False


def test_flat_traffic_is_counted_without_reading_the_bucket_heads(conn: Conn) -> None:
    # Every bucket's largest counts are about its 50th: no `limit` senders can stand out
    # enough for a proof, so the heads are not read for one.
    _send(conn, _users(conn, 2000, "flat"), 3)
    assert _top(conn, 3600, 5).heads_read is False
    assert _top(conn, 86400, 10).heads_read is False
    # A burst over the same traffic stands out: read and proved.
    burst = _users(conn, 5, "burst")
    for n, sender in enumerate(burst):
        _send(conn, [sender], 100 + 10 * n)
    found = _top(conn, 3600, 5)
    assert (found.heads_read, found.bounded) == (True, True)


def test_flat_traffic_is_counted_from_dm_messages_once_vacuumed_and_unchanged(
    conn: Conn,
) -> None:
    flat = _users(conn, 2000, "flat")
    _send(conn, flat, 3)
    _flush_statistics(conn)
    assert _top(conn, 3600, 5).source == ROLLUP  # inserted since the last vacuum
    conn.execute("VACUUM dm_messages")
    assert _top(conn, 3600, 5).source == MESSAGES
    assert _top(conn, 86400, 10).source == MESSAGES
    # One more message: its page is no longer all-visible, the rollup counts again.
    _send(conn, flat[:1], 1)
    _flush_statistics(conn)
    assert _top(conn, 3600, 5).source == ROLLUP
    conn.execute("VACUUM dm_messages")
    # A deleted message leaves a dead row behind until the next vacuum.
    conn.execute(
        "DELETE FROM dm_messages WHERE id = (SELECT max(id) FROM dm_messages "
        "WHERE sender_user_id = %s)",
        (flat[0],),
    )
    _flush_statistics(conn)
    assert _top(conn, 3600, 5).source == ROLLUP


def test_the_window_edges_count_as_the_runbooks_query_does(conn: Conn) -> None:
    [edge, near, future, old] = _users(conn, 4, "edge")
    _send(conn, [near], 3)
    # One transaction: now() is one instant for the inserts and both answers.
    with conn.transaction():
        aligned = conn.execute(
            "SELECT extract(epoch FROM now() - date_bin('5 minutes', now(), "
            "TIMESTAMPTZ '2000-01-01 00:00:00+00')) + 3600"
        ).fetchone()
        assert aligned is not None
        for window in (3600.0, 90.0, float(aligned[0])):
            at = [
                "now() - make_interval(secs => %(w)s)",  # the window's start: outside
                "now() - make_interval(secs => %(w)s) + interval '1 microsecond'",
                "date_bin('5 minutes', now() - make_interval(secs => %(w)s), "
                "TIMESTAMPTZ '2000-01-01 00:00:00+00') + interval '5 minutes'",
                "now()",
            ]
            for when in at:
                conn.execute(
                    "INSERT INTO dm_messages (conversation_id, sender_user_id, "
                    "sender_device_id, client_message_id, created_at) "
                    f"SELECT conversation_id, created_by, gen_random_uuid(), "
                    f"gen_random_uuid()::text, {when} FROM dm_conversations "
                    "WHERE created_by = %(u)s",
                    {"w": window, "u": edge},
                )
        conn.execute(
            "UPDATE dm_messages SET created_at = now() + interval '10 minutes' "
            "WHERE id = (SELECT min(id) FROM dm_messages WHERE sender_user_id = %s)",
            (near,),
        )
        _send(conn, [future], 2, spread="-7 minutes")  # dated ahead of the clock
        _send(conn, [old], 5)
        conn.execute(
            "UPDATE dm_messages SET created_at = now() - interval '2 hours' "
            "WHERE sender_user_id = %s",
            (old,),
        )
        for window in (3600.0, 90.0, float(aligned[0]), 300.0, 86400.0):
            for limit in (1, 2, 10):
                assert _top(conn, window, limit).bounded is True


def test_deletes_and_rolled_back_sends_leave_the_answer_exact(conn: Conn) -> None:
    _send(conn, _users(conn, 2000, "tail"), 1)
    burst = _users(conn, 3, "burst")
    for n, sender in enumerate(burst):
        _send(conn, [sender], 200 - 50 * n)
    assert [s for s, _ in _top(conn, 3600, 2).senders] == burst[:2]
    # The top sender's conversation goes, and its messages with it (a cascade).
    conn.execute("DELETE FROM dm_conversations WHERE created_by = %s", (burst[0],))
    with pytest.raises(RuntimeError), conn.transaction():
        _send(conn, [burst[2]], 500)
        raise RuntimeError("rolled back")
    found = _top(conn, 3600, 2)
    assert found.bounded is True
    assert [s for s, _ in found.senders] == burst[1:]


def test_concurrent_sends_are_all_counted(clean_db: str, conn: Conn) -> None:
    senders = _users(conn, 6, "busy")
    _send(conn, _users(conn, 2000, "tail"), 1)
    errors: list[BaseException] = []

    def sender(offset: int) -> None:
        try:
            with psycopg.connect(libpq_url(clean_db), autocommit=True) as own:
                for n in range(40):
                    # Overlapping senders, so transactions meet on the same rollup rows;
                    # every fifth one is rolled back.
                    who = senders[(offset + n) % len(senders) // 2]
                    try:
                        with own.transaction():
                            _send(own, [who], 1 + n % 3, spread="1 second")
                            if n % 5 == 4:
                                raise RuntimeError("rolled back")
                    except RuntimeError:
                        pass
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    found = _top(conn, 3600, 3)
    assert found.bounded is True
    assert sorted(s for s, _ in found.senders) == senders[:3]


def test_messages_before_the_window_in_its_first_bucket_do_not_rank_a_sender(
    conn: Conn,
) -> None:
    [early, steady] = _users(conn, 2, "first-bucket")
    with conn.transaction():  # one now() for the inserts and the answer
        # 100 messages in the window's first bucket but before the window starts (its
        # rollup row counts them), one inside; the steady sender's 50 are all inside.
        for sender, count, when in (
            (
                early,
                100,
                "date_bin('5 minutes', now() - interval '1 hour', "
                "TIMESTAMPTZ '2000-01-01 00:00:00+00')",
            ),
            (early, 1, "now()"),
            (steady, 50, "now() - interval '30 minutes'"),
        ):
            conn.execute(
                "INSERT INTO dm_messages (conversation_id, sender_user_id, sender_device_id, "
                f"client_message_id, created_at) SELECT c.conversation_id, c.created_by, "
                f"gen_random_uuid(), gen_random_uuid()::text, {when} "
                "FROM dm_conversations c CROSS JOIN generate_series(1, %s) "
                "WHERE c.created_by = %s",
                (count, sender),
            )
        found = _top(conn, 3600, 1)
    assert found.senders == [(steady, 50)]
    assert found.bounded is True
