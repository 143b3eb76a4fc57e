"""Abuse bursts in the service's PostgreSQL: who sent how much, to how many, how often refused.

Metadata only: sender ids, usernames, counts and times. Recipients are found through
conversation membership; nothing here reads a ciphertext or touches dm_envelopes.
Index-driven (migration 0004_operator_indexes); tests/integration/devices/test_explain.py
checks the plans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from e2ee_ops.adapters.postgres import OpsDatabase

# The start of the window's first whole bucket of dm_sender_counts (migration
# 0007_sender_counts): whole buckets are read from that rollup, the messages of the
# partial bucket before it from dm_messages, so the counts are exact.
FIRST_WHOLE_BUCKET = (
    "(date_bin('5 minutes', now() - make_interval(secs => %(window_seconds)s), "
    "TIMESTAMPTZ '2000-01-01 00:00:00+00') + interval '5 minutes')"
)

# Messages per sender in the window, exactly what counting dm_messages would give.
SENDERS_IN_WINDOW_SQL = """
SELECT c.sender_user_id, sum(c.messages) AS messages
FROM (
    SELECT sc.sender_user_id, sc.messages FROM dm_sender_counts sc
    WHERE sc.bucket_start >= {first_whole_bucket}
    UNION ALL
    SELECT m.sender_user_id, 1 FROM dm_messages m
    WHERE m.created_at > now() - make_interval(secs => %(window_seconds)s)
      AND m.created_at < {first_whole_bucket}
) c
GROUP BY c.sender_user_id
HAVING sum(c.messages) > 0
""".replace("{first_whole_bucket}", FIRST_WHOLE_BUCKET)

# Candidates: the top senders by messages (the runbook's question, answered from the
# per-sender rollup), plus the top openers of conversations and the most rate-limited
# senders, so a sender who churns conversations or hammers the limit shows up even
# without many stored messages.
# Each count then comes from the index of its own table, for those few senders only;
# fan-out groups a sender's messages by conversation before meeting the members, so a
# spammer's hundred thousand messages become a few hundred conversation rows first.
TOP_SENDERS_SQL = """
WITH by_messages AS (
    SELECT w.sender_user_id AS user_id, w.messages FROM ({senders_in_window}) w
    ORDER BY w.messages DESC
    LIMIT %(limit)s
), by_churn AS (
    SELECT created_by AS user_id FROM dm_conversations
    WHERE created_at > now() - make_interval(secs => %(window_seconds)s)
    GROUP BY created_by ORDER BY count(*) DESC LIMIT %(limit)s
), by_refusals AS (
    SELECT user_id FROM dm_rate_limit_events
    WHERE occurred_at > now() - make_interval(secs => %(window_seconds)s)
    GROUP BY user_id ORDER BY count(*) DESC LIMIT %(limit)s
), candidates AS (
    SELECT user_id FROM by_messages UNION SELECT user_id FROM by_churn
    UNION SELECT user_id FROM by_refusals
), sent AS (
    SELECT m.sender_user_id AS user_id, m.conversation_id, count(*) AS messages
    FROM dm_messages m
    WHERE m.sender_user_id IN (SELECT user_id FROM candidates)
      AND m.created_at > now() - make_interval(secs => %(window_seconds)s)
    GROUP BY m.sender_user_id, m.conversation_id
), per_sender AS (
    SELECT user_id, sum(messages)::bigint AS messages FROM sent GROUP BY user_id
), fan_out AS (
    SELECT s.user_id, count(DISTINCT cm.user_id) AS recipients
    FROM sent s
    JOIN dm_conversation_members cm
      ON cm.conversation_id = s.conversation_id AND cm.user_id <> s.user_id
    GROUP BY s.user_id
)
SELECT c.user_id, u.username, u.blocked_at IS NOT NULL AS blocked,
    COALESCE(ps.messages, 0) AS messages, COALESCE(fo.recipients, 0) AS recipients,
    (SELECT count(*) FROM dm_conversations dc
      WHERE dc.created_by = c.user_id
        AND dc.created_at > now() - make_interval(secs => %(window_seconds)s))
      AS new_conversations,
    (SELECT count(*) FROM dm_rate_limit_events r
      WHERE r.user_id = c.user_id
        AND r.occurred_at > now() - make_interval(secs => %(window_seconds)s)) AS rate_limited
FROM candidates c
JOIN users u ON u.account_id = c.user_id
LEFT JOIN per_sender ps ON ps.user_id = c.user_id
LEFT JOIN fan_out fo ON fo.user_id = c.user_id
""".replace("{senders_in_window}", SENDERS_IN_WINDOW_SQL)


@dataclass(frozen=True)
class SenderActivity:
    user_id: int
    username: str
    blocked: bool
    messages: int
    recipients: int  # distinct recipients: fan-out
    new_conversations: int  # conversations opened: churn
    rate_limited: int  # 429 answers recorded


def top_senders_params(*, window_seconds: float, limit: int) -> dict[str, Any]:
    return {"window_seconds": window_seconds, "limit": limit}


class AbuseDatabase:
    def __init__(self, db: OpsDatabase) -> None:
        self.db = db

    def top_senders(self, *, window_seconds: float, limit: int) -> list[SenderActivity]:
        """Candidate senders of the window with their counts, unsorted (the caller ranks)."""
        params = top_senders_params(window_seconds=window_seconds, limit=limit)
        with self.db.connect() as conn:
            rows = conn.execute(TOP_SENDERS_SQL, params).fetchall()
        return [
            SenderActivity(int(r[0]), str(r[1]), bool(r[2]), *(int(v) for v in r[3:7]))
            for r in rows
        ]
