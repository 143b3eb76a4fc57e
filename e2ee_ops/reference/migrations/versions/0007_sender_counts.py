"""sender counts: messages per sender and five minutes, kept by triggers on dm_messages

Revision ID: 0007_sender_counts
Revises: 0006_stuck_indexes
Create Date: 2026-12-03

`abuse top-senders` counts a window's messages per sender. Counting the messages
themselves aggregates every message of the window (the runbook's query spills that
aggregate to disk at ten million messages); this rollup holds one row per sender
and five-minute bucket instead, so a window reads its whole buckets from here and
only the messages of its first, partial bucket from dm_messages.

It stays exact because statement-level triggers maintain it in the transaction that
changes dm_messages: an insert adds its rows' counts, a delete (a cascade from a
conversation or a user included) subtracts them, an update moves them, a truncate
empties it. A rolled-back send rolls its count back with it. The backfill runs in
the same transaction as the creation of the triggers, which holds off writes to
dm_messages until it commits, so no message is counted twice or missed.
"""

from alembic import op

revision = "0007_sender_counts"
down_revision = "0006_stuck_indexes"
branch_labels = None
depends_on = None

BUCKET = "date_bin('5 minutes', {0}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE dm_sender_counts (
            bucket_start    TIMESTAMPTZ NOT NULL,
            sender_user_id  BIGINT NOT NULL,
            messages        INTEGER NOT NULL,
            -- Covering: a window's buckets are read by an index-only scan.
            PRIMARY KEY (bucket_start, sender_user_id) INCLUDE (messages)
        )
        """
    )
    new_bucket = BUCKET.format("n.created_at")
    old_bucket = BUCKET.format("o.created_at")
    op.execute(
        f"""
        CREATE FUNCTION dm_sender_counts_apply() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                DELETE FROM dm_sender_counts;
                RETURN NULL;
            END IF;
            IF TG_OP IN ('DELETE', 'UPDATE') THEN
                UPDATE dm_sender_counts c SET messages = c.messages - g.messages
                FROM (SELECT {old_bucket} AS bucket_start, o.sender_user_id,
                             count(*) AS messages
                      FROM old_rows o GROUP BY 1, 2) g
                WHERE c.bucket_start = g.bucket_start
                  AND c.sender_user_id = g.sender_user_id;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                INSERT INTO dm_sender_counts AS c (bucket_start, sender_user_id, messages)
                SELECT {new_bucket}, n.sender_user_id, count(*)
                FROM new_rows n GROUP BY 1, 2 ORDER BY 1, 2
                ON CONFLICT (bucket_start, sender_user_id)
                DO UPDATE SET messages = c.messages + excluded.messages;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    # A trigger with transition tables serves one event, hence one trigger per event.
    op.execute(
        "CREATE TRIGGER dm_sender_counts_insert AFTER INSERT ON dm_messages "
        "REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION dm_sender_counts_apply()"
    )
    op.execute(
        "CREATE TRIGGER dm_sender_counts_delete AFTER DELETE ON dm_messages "
        "REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION dm_sender_counts_apply()"
    )
    op.execute(
        "CREATE TRIGGER dm_sender_counts_update AFTER UPDATE ON dm_messages "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION dm_sender_counts_apply()"
    )
    op.execute(
        "CREATE TRIGGER dm_sender_counts_truncate AFTER TRUNCATE ON dm_messages "
        "FOR EACH STATEMENT EXECUTE FUNCTION dm_sender_counts_apply()"
    )
    op.execute(
        f"""
        INSERT INTO dm_sender_counts (bucket_start, sender_user_id, messages)
        SELECT {new_bucket}, n.sender_user_id, count(*) FROM dm_messages n GROUP BY 1, 2
        """
    )


def downgrade() -> None:
    for event in ("insert", "delete", "update", "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS dm_sender_counts_{event} ON dm_messages")
    op.execute("DROP FUNCTION IF EXISTS dm_sender_counts_apply()")
    op.execute("DROP TABLE IF EXISTS dm_sender_counts")
