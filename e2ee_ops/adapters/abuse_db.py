"""Abuse bursts in the service's PostgreSQL: who sent how much, to how many, how often refused.

Metadata only: sender ids, usernames, counts and times. Recipients are found through
conversation membership; nothing here reads a ciphertext or touches dm_envelopes.
Index-driven (migrations 0004_operator_indexes, 0007_sender_counts,
0008_sender_counts_ranked); tests/integration/devices/test_explain.py checks the plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from e2ee_ops.adapters.postgres import OpsDatabase

# The window's first bucket of dm_sender_counts (migration 0007_sender_counts), which
# the window's start cuts: its messages after that start are counted in dm_messages.
# Whole buckets, the ones after it, are read from the rollup, so the counts are exact.
PARTIAL_BUCKET = (
    "date_bin('5 minutes', now() - make_interval(secs => %(window_seconds)s), "
    "TIMESTAMPTZ '2000-01-01 00:00:00+00')"
)
FIRST_WHOLE_BUCKET = f"({PARTIAL_BUCKET} + interval '5 minutes')"
# The window's messages in its partial bucket (alias m: dm_messages).
_PARTIAL_MESSAGES = (
    "m.created_at > now() - make_interval(secs => %(window_seconds)s) "
    "AND m.created_at < " + FIRST_WHOLE_BUCKET
)

# Messages per sender in the window, exactly what counting dm_messages would give.
SENDERS_IN_WINDOW_SQL = f"""
SELECT c.sender_user_id, sum(c.messages) AS messages
FROM (
    SELECT sc.sender_user_id, sc.messages FROM dm_sender_counts sc
    WHERE sc.bucket_start >= {FIRST_WHOLE_BUCKET}
    UNION ALL
    SELECT m.sender_user_id, 1 FROM dm_messages m WHERE {_PARTIAL_MESSAGES}
) c
GROUP BY c.sender_user_id
HAVING sum(c.messages) > 0
"""

# The runbook's question (most messages in the window), ties by account id, from every
# sender of the window: what `abuse top-senders` falls back to when the bounded form
# below cannot prove its answer.
TOP_BY_MESSAGES_SQL = f"""
SELECT w.sender_user_id, w.messages FROM ({SENDERS_IN_WINDOW_SQL}) w
ORDER BY w.messages DESC, w.sender_user_id
LIMIT %(limit)s
"""

# The same answer counted from dm_messages, as the runbook's own query does (plus its
# ties by account id): one index entry per message, which costs about what a rollup row
# does once the window's pages are all-visible, and the rollup does not fold flat
# traffic (about one row per message). `top_by_messages` takes it only then.
TOP_BY_MESSAGES_COUNTED_SQL = """
SELECT m.sender_user_id, count(*) AS messages FROM dm_messages m
WHERE m.created_at > now() - make_interval(secs => %(window_seconds)s)
GROUP BY m.sender_user_id
ORDER BY count(*) DESC, m.sender_user_id
LIMIT %(limit)s
"""

# The same question answered from the head of each bucket (migration
# 0008_sender_counts_ranked): the `k` largest counts of every bucket of the window.
# A sender missing from a bucket's list has at most that bucket's floor (its k-th
# count, 0 when the bucket lists fewer), so a sender missing from every list has at
# most `outsider`, the sum of the floors, and a listed one at most its `upper` bound.
# Exact counts are taken for the listed senders whose bound reaches the `limit`-th
# largest lower bound, unless more than `max_exact` of them would be (then `outsider` is
# NULL: not proved). The answer is proved when its last count exceeds `outsider` (or
# `outsider` is 0): no sender left out can reach it. The adapter checks that and
# otherwise counts every sender (TOP_BY_MESSAGES_SQL or TOP_BY_MESSAGES_COUNTED_SQL).
# The partial bucket's rollup row counts messages before the window too: an upper
# bound, never a lower one.
TOP_BY_MESSAGES_BOUNDED_SQL = f"""
WITH RECURSIVE buckets AS (
    -- The window's buckets, one index probe each (future-dated ones included).
    (SELECT sc.bucket_start FROM dm_sender_counts sc
     WHERE sc.bucket_start >= {PARTIAL_BUCKET} ORDER BY sc.bucket_start LIMIT 1)
    UNION ALL
    SELECT (SELECT sc.bucket_start FROM dm_sender_counts sc
            WHERE sc.bucket_start > b.bucket_start ORDER BY sc.bucket_start LIMIT 1)
    FROM buckets b WHERE b.bucket_start IS NOT NULL
), worth_trying AS MATERIALIZED (
    -- Any `limit` senders together have at most the sum of every bucket's `limit`
    -- largest counts, so the `limit`-th of them at most its `limit`-th part: the proof
    -- needs that above the floors' sum. Tried only when it is `worth_trying` times over
    -- (flat traffic: about 1-2 times; a burst: 6 and more); else counting every sender
    -- at once saves reading the heads. Either way the answer is exact.
    SELECT COALESCE(sum(h.floor), 0) = 0
           OR sum(h.top) >= %(worth_trying)s * %(limit)s * sum(h.floor) AS yes
    FROM buckets b CROSS JOIN LATERAL (
        SELECT COALESCE((SELECT sc.messages FROM dm_sender_counts sc
                         WHERE sc.bucket_start = b.bucket_start
                         ORDER BY sc.messages DESC OFFSET %(k)s - 1 LIMIT 1), 0) AS floor,
               (SELECT sum(t.messages) FROM (
                    SELECT sc.messages FROM dm_sender_counts sc
                    WHERE sc.bucket_start = b.bucket_start
                    ORDER BY sc.messages DESC LIMIT %(limit)s) t) AS top
    ) h
    WHERE b.bucket_start IS NOT NULL
), listed AS MATERIALIZED (
    SELECT b.bucket_start, t.sender_user_id, t.messages
    FROM buckets b CROSS JOIN LATERAL (
        SELECT sc.sender_user_id, sc.messages FROM dm_sender_counts sc
        WHERE sc.bucket_start = b.bucket_start
        ORDER BY sc.messages DESC LIMIT %(k)s
    ) t
    WHERE b.bucket_start IS NOT NULL AND (SELECT yes FROM worth_trying)
), floors AS MATERIALIZED (
    SELECT bucket_start, CASE WHEN count(*) < %(k)s THEN 0 ELSE min(messages) END AS floor
    FROM listed GROUP BY bucket_start
), candidates AS MATERIALIZED (
    SELECT l.sender_user_id,
           COALESCE(sum(l.messages) FILTER (WHERE l.bucket_start >= {FIRST_WHOLE_BUCKET}), 0)
             AS lower,
           (SELECT sum(floor) FROM floors) + sum(l.messages - f.floor) AS upper
    FROM listed l JOIN floors f ON f.bucket_start = l.bucket_start
    GROUP BY l.sender_user_id
), needed AS MATERIALIZED (
    SELECT c.sender_user_id FROM candidates c
    WHERE c.upper >= (SELECT min(lower) FROM (
        SELECT lower FROM candidates ORDER BY lower DESC LIMIT %(limit)s) x)
), exact AS MATERIALIZED (
    SELECT n.sender_user_id,
           (SELECT COALESCE(sum(sc.messages), 0) FROM buckets b
             JOIN dm_sender_counts sc
               ON sc.bucket_start = b.bucket_start AND sc.sender_user_id = n.sender_user_id
             WHERE b.bucket_start >= {FIRST_WHOLE_BUCKET})
           + (SELECT count(*) FROM dm_messages m
              WHERE m.sender_user_id = n.sender_user_id AND {_PARTIAL_MESSAGES}) AS messages
    FROM needed n
    -- Past `max_exact` the bounds are too loose to prove anything: give up at once.
    WHERE (SELECT count(*) FROM needed) <= %(max_exact)s
), top AS (
    SELECT e.sender_user_id, e.messages FROM exact e WHERE e.messages > 0
    ORDER BY e.messages DESC, e.sender_user_id
    LIMIT %(limit)s
)
SELECT CASE WHEN (SELECT yes FROM worth_trying) AND (SELECT count(*) FROM needed) <= %(max_exact)s
            THEN (SELECT COALESCE(sum(floor), 0) FROM floors) END AS outsider,
       (SELECT yes FROM worth_trying) AS heads_read,
       -- Rows of dm_messages inserted or left dead since its last vacuum (the
       -- cumulative statistics, as pg_stat_user_tables shows them): 0 means its pages
       -- are as VACUUM left them.
       pg_stat_get_ins_since_vacuum('dm_messages'::regclass)
         + pg_stat_get_dead_tuples('dm_messages'::regclass) AS changed_since_vacuum,
       t.sender_user_id, t.messages
FROM (SELECT) one LEFT JOIN top t ON true
ORDER BY t.messages DESC, t.sender_user_id
"""

# Candidates: the top senders by messages (the runbook's question, answered first by
# `top_by_messages` and passed in as `by_messages`), plus the top openers of
# conversations and the most rate-limited senders, so a sender who churns conversations
# or hammers the limit shows up even without many stored messages.
# Each count then comes from the index of its own table, for those few senders only;
# fan-out groups a sender's messages by conversation before meeting the members, so a
# spammer's hundred thousand messages become a few hundred conversation rows first.
TOP_SENDERS_SQL = """
WITH by_messages AS (
    SELECT unnest(%(by_messages)s::bigint[]) AS user_id
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
"""


@dataclass(frozen=True)
class SenderActivity:
    user_id: int
    username: str
    blocked: bool
    messages: int
    recipients: int  # distinct recipients: fan-out
    new_conversations: int  # conversations opened: churn
    rate_limited: int  # 429 answers recorded


# Each bucket's head read by TOP_BY_MESSAGES_BOUNDED_SQL: the larger, the lower the
# bound on senders left out (so the more often the answer is proved), the more read.
HEAD_PER_LIMIT = 5
MIN_HEAD = 50
# Exact counts taken at most, per sender asked for, before the bounded form gives up.
EXACT_PER_LIMIT = 4
# The bounded form reads the heads only when the bound on the `limit`-th sender is
# this many times what a sender left out could have (see worth_trying).
WORTH_TRYING = 3


def top_senders_params(
    *, window_seconds: float, limit: int, by_messages: Sequence[int] = ()
) -> dict[str, Any]:
    return {
        "window_seconds": window_seconds,
        "limit": limit,
        "k": max(HEAD_PER_LIMIT * limit, MIN_HEAD),
        "max_exact": EXACT_PER_LIMIT * limit,
        "worth_trying": WORTH_TRYING,
        "by_messages": list(by_messages),
    }


# Where `top_by_messages` found its answer.
HEADS = "heads"  # the buckets' heads, proved (TOP_BY_MESSAGES_BOUNDED_SQL)
ROLLUP = "rollup"  # every sender, from dm_sender_counts (TOP_BY_MESSAGES_SQL)
MESSAGES = "messages"  # every sender, from dm_messages (TOP_BY_MESSAGES_COUNTED_SQL)


@dataclass(frozen=True)
class TopByMessages:
    """The window's `limit` senders with the most messages, most first, ties by id."""

    senders: list[tuple[int, int]]  # (account id, messages)
    source: str  # HEADS, ROLLUP or MESSAGES
    heads_read: bool  # the buckets' heads were read for a proof (worth_trying)

    @property
    def bounded(self) -> bool:
        """Answered from the buckets' heads and proved (no sender counted in full)."""
        return self.source == HEADS


def top_by_messages(
    conn: psycopg.Connection[tuple[Any, ...]],
    *,
    window_seconds: float,
    limit: int,
    count_source: str | None = None,
) -> TopByMessages:
    """The runbook's question, exactly: the bounded form when it proves its answer,
    otherwise every sender of the window counted, from dm_messages when it has not
    changed since its last vacuum (pages all-visible: its index-only count is the
    runbook's own and costs no more than the rollup's rows), from the rollup otherwise
    (every index entry a heap visit there, on a far wider heap). `count_source` (ROLLUP
    or MESSAGES) imposes the fallback's source instead."""
    params = top_senders_params(window_seconds=window_seconds, limit=limit)
    rows = conn.execute(TOP_BY_MESSAGES_BOUNDED_SQL, params).fetchall()
    outsider, heads_read, changed = rows[0][0], bool(rows[0][1]), rows[0][2]
    senders = [(int(r[3]), int(r[4])) for r in rows if r[3] is not None]
    if outsider is not None and (
        outsider == 0 or (len(senders) == limit and senders[-1][1] > outsider)
    ):
        return TopByMessages(senders, HEADS, heads_read)
    source = count_source or (MESSAGES if changed == 0 else ROLLUP)
    sql = TOP_BY_MESSAGES_COUNTED_SQL if source == MESSAGES else TOP_BY_MESSAGES_SQL
    rows = conn.execute(sql, params).fetchall()
    return TopByMessages([(int(r[0]), int(r[1])) for r in rows], source, heads_read)


def sender_activity(
    conn: psycopg.Connection[tuple[Any, ...]], *, window_seconds: float, limit: int
) -> list[SenderActivity]:
    """Candidate senders of the window with their counts, unsorted (the caller ranks).

    Its statements share one snapshot and one now(): the senders ranked by messages and
    the counts shown for them are of the same instant, whatever is sent meanwhile."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        top = top_by_messages(conn, window_seconds=window_seconds, limit=limit)
        params = top_senders_params(
            window_seconds=window_seconds,
            limit=limit,
            by_messages=[user_id for user_id, _ in top.senders],
        )
        rows = conn.execute(TOP_SENDERS_SQL, params).fetchall()
    return [
        SenderActivity(int(r[0]), str(r[1]), bool(r[2]), *(int(v) for v in r[3:7])) for r in rows
    ]


class AbuseDatabase:
    def __init__(self, db: OpsDatabase) -> None:
        self.db = db

    def top_senders(self, *, window_seconds: float, limit: int) -> list[SenderActivity]:
        """Candidate senders of the window with their counts, unsorted (the caller ranks)."""
        with self.db.connect() as conn:
            return sender_activity(conn, window_seconds=window_seconds, limit=limit)
