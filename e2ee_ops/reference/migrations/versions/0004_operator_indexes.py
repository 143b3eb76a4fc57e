"""operator indexes: what `devices stuck` and `abuse top-senders` need at production scale

Revision ID: 0004_operator_indexes
Revises: 0003_dm_messages
Create Date: 2026-12-01

Each index serves one operator query (e2ee_ops/adapters/devices_db.py, abuse_db.py);
tests/integration/devices/test_explain.py checks with EXPLAIN that they are used.
The prekey-pool index is a full one rather than partial (WHERE prekeys_remaining < 10):
the thresholds are configurable, and a partial index stops being usable the day an
operator raises the warning threshold above its predicate. An interrupted concurrent
build leaves an INVALID index behind: drop it and run the upgrade again.
"""

from alembic import op

revision = "0004_operator_indexes"
down_revision = "0003_dm_messages"
branch_labels = None
depends_on = None

INDEXES = {
    # devices stuck: pools under the warning threshold, stale signed prekeys
    "e2ee_key_bundles_prekeys_idx": "e2ee_key_bundles (prekeys_remaining)",
    "e2ee_key_bundles_spk_uploaded_idx": "e2ee_key_bundles (signed_prekey_uploaded_at)",
    # devices stuck: active devices not seen for a while
    "e2ee_devices_active_last_seen_idx": "e2ee_devices (last_seen_at) WHERE status = 'active'",
    # abuse top-senders: messages of the window per sender (index-only), and one
    # sender's messages of the window (fan-out)
    "dm_messages_created_sender_idx": "dm_messages (created_at, sender_user_id)",
    "dm_messages_sender_created_idx": "dm_messages (sender_user_id, created_at)",
    # abuse top-senders: conversations opened in the window (churn)
    "dm_conversations_created_at_idx": "dm_conversations (created_at, created_by)",
    # abuse top-senders: one sender's 429s of the window
    "dm_rate_limit_events_user_idx": "dm_rate_limit_events (user_id, occurred_at)",
}


def upgrade() -> None:
    # CONCURRENTLY: building an index on ten million messages must not block sends.
    # It cannot run inside a transaction, hence the autocommit block.
    with op.get_context().autocommit_block():
        for name, target in INDEXES.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {target}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
