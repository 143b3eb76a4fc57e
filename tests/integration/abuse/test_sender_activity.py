"""What the abuse adapter reads for each candidate sender, against real rows: the blocked
flag, messages, distinct recipients, conversations opened and 429s, in the window and
within the candidate limit."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from e2ee_ops.adapters import abuse_db
from e2ee_ops.adapters.abuse_db import AbuseDatabase, SenderActivity, TopByMessages, top_by_messages
from e2ee_ops.adapters.postgres import OpsDatabase
from e2ee_ops.dburl import libpq_url
from tests.integration.test_threshold_boundaries import _conversation, _messages, _user


def _seed(conn: psycopg.Connection[Any]) -> dict[str, int]:
    ids = {name: _user(conn, name) for name in ("mallory", "bob", "peer1", "peer2", "peer3")}
    conn.execute("UPDATE users SET blocked_at = now() WHERE account_id = %s", (ids["mallory"],))
    # mallory opens three conversations and writes 5 messages in two of them.
    _messages(conn, _conversation(conn, ids["mallory"], ids["peer1"]), ids["mallory"], 2)
    _messages(conn, _conversation(conn, ids["mallory"], ids["peer2"]), ids["mallory"], 3)
    _conversation(conn, ids["mallory"], ids["peer3"])
    # Her message in a conversation peer3 opened is older than the window.
    old = _conversation(conn, ids["peer3"], ids["mallory"])
    _messages(conn, old, ids["mallory"], 1)
    conn.execute(
        "UPDATE dm_messages SET created_at = now() - interval '2 hours' WHERE conversation_id = %s",
        (old,),
    )
    conn.execute(
        "INSERT INTO dm_rate_limit_events (user_id) SELECT %s FROM generate_series(1, 4)",
        (ids["mallory"],),
    )
    # bob answers in a conversation peer1 opened.
    _messages(conn, _conversation(conn, ids["peer1"], ids["bob"]), ids["bob"], 1)
    return ids


def _senders(url: str, limit: int) -> list[SenderActivity]:
    found = AbuseDatabase(OpsDatabase(url)).top_senders(window_seconds=3600, limit=limit)
    return sorted(found, key=lambda s: s.user_id)


def test_each_candidate_with_its_counts(clean_db: str) -> None:
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as conn:
        ids = _seed(conn)
    assert _senders(clean_db, 10) == [
        SenderActivity(ids["mallory"], "mallory", True, 5, 2, 3, 4),
        SenderActivity(ids["bob"], "bob", False, 1, 1, 0, 0),
        # Candidates for the conversations they opened, without a message.
        SenderActivity(ids["peer1"], "peer1", False, 0, 0, 1, 0),
        SenderActivity(ids["peer3"], "peer3", False, 0, 0, 1, 0),
    ]


def test_the_limit_bounds_each_candidate_list(clean_db: str) -> None:
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as conn:
        ids = _seed(conn)
    # mallory heads all three lists: most messages, most conversations, most 429s.
    assert [s.user_id for s in _senders(clean_db, 1)] == [ids["mallory"]]


class SendsBetweenStatements:
    """A connection on which, after each statement, `sender` sends another message."""

    def __init__(self, conn: psycopg.Connection[Any], other: psycopg.Connection[Any], sender: int):
        self._conn, self._other, self._sender = conn, other, sender
        self._conversation = _conversation(other, sender, _user(other, "peer4"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        cursor = self._conn.execute(*args, **kwargs)
        _messages(self._other, self._conversation, self._sender, 1)
        return cursor


def test_the_ranking_and_the_counts_shown_are_of_one_instant(
    clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranked: list[TopByMessages] = []

    def recording(*args: Any, **kwargs: Any) -> TopByMessages:
        ranked.append(top_by_messages(*args, **kwargs))
        return ranked[-1]

    monkeypatch.setattr(abuse_db, "top_by_messages", recording)
    with (
        psycopg.connect(libpq_url(clean_db), autocommit=True) as conn,
        psycopg.connect(libpq_url(clean_db), autocommit=True) as other,
    ):
        ids = _seed(conn)
        racing = SendsBetweenStatements(conn, other, ids["mallory"])
        found = abuse_db.sender_activity(racing, window_seconds=3600, limit=2)  # type: ignore[arg-type]
        total = other.execute(
            "SELECT count(*) FROM dm_messages WHERE sender_user_id = %s "
            "AND created_at > now() - interval '1 hour'",
            (ids["mallory"],),
        ).fetchone()
    [top] = ranked
    shown = {s.user_id: s.messages for s in found if s.messages}
    # mallory kept sending while the command read; it shows her as it ranked her.
    assert shown == dict(top.senders)
    assert total is not None and total[0] > shown[ids["mallory"]]
