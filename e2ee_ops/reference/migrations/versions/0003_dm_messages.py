"""dm: conversations, messages, per-device envelopes, delivery, blocks, rate-limit events

Revision ID: 0003_dm_messages
Revises: 0002_e2ee_keys
Create Date: 2026-11-28
"""

from alembic import op

revision = "0003_dm_messages"
down_revision = "0002_e2ee_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE dm_conversations (
            conversation_id  BIGSERIAL PRIMARY KEY,
            pair_key         TEXT NOT NULL UNIQUE,
            created_by       BIGINT NOT NULL REFERENCES users(account_id) ON DELETE CASCADE,
            created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX dm_conversations_creator_idx ON dm_conversations (created_by, created_at)"
    )
    op.execute(
        """
        CREATE TABLE dm_conversation_members (
            conversation_id  BIGINT NOT NULL
                             REFERENCES dm_conversations(conversation_id) ON DELETE CASCADE,
            user_id          BIGINT NOT NULL REFERENCES users(account_id) ON DELETE CASCADE,
            PRIMARY KEY (conversation_id, user_id)
        )
        """
    )
    op.execute("CREATE INDEX dm_conversation_members_user_idx ON dm_conversation_members (user_id)")
    op.execute(
        """
        CREATE TABLE dm_messages (
            id                 BIGSERIAL PRIMARY KEY,
            conversation_id    BIGINT NOT NULL
                               REFERENCES dm_conversations(conversation_id) ON DELETE CASCADE,
            sender_user_id     BIGINT NOT NULL REFERENCES users(account_id) ON DELETE CASCADE,
            sender_device_id   UUID NOT NULL,
            client_message_id  TEXT NOT NULL,
            created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (sender_user_id, client_message_id)
        )
        """
    )
    op.execute("CREATE INDEX dm_messages_created_at_idx ON dm_messages (created_at)")
    # Ciphertext lives apart from every table an operator query touches.
    op.execute(
        """
        CREATE TABLE dm_envelopes (
            message_id      BIGINT NOT NULL REFERENCES dm_messages(id) ON DELETE CASCADE,
            device_id       UUID NOT NULL,
            bundle_version  INTEGER NOT NULL,
            ciphertext      BYTEA NOT NULL,
            PRIMARY KEY (message_id, device_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE dm_delivery (
            message_id         BIGINT NOT NULL REFERENCES dm_messages(id) ON DELETE CASCADE,
            device_id          UUID NOT NULL,
            recipient_user_id  BIGINT NOT NULL,
            pushed_at          TIMESTAMPTZ,
            delivered_at       TIMESTAMPTZ,
            PRIMARY KEY (message_id, device_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX dm_delivery_pending_idx ON dm_delivery (device_id, message_id) "
        "WHERE delivered_at IS NULL"
    )
    op.execute(
        """
        CREATE TABLE dm_blocks (
            blocker_user_id  BIGINT NOT NULL REFERENCES users(account_id) ON DELETE CASCADE,
            blocked_user_id  BIGINT NOT NULL REFERENCES users(account_id) ON DELETE CASCADE,
            created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (blocker_user_id, blocked_user_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE dm_rate_limit_events (
            id           BIGSERIAL PRIMARY KEY,
            user_id      BIGINT NOT NULL REFERENCES users(account_id) ON DELETE CASCADE,
            occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX dm_rate_limit_events_at_idx ON dm_rate_limit_events (occurred_at, user_id)"
    )


def downgrade() -> None:
    for table in (
        "dm_rate_limit_events",
        "dm_blocks",
        "dm_delivery",
        "dm_envelopes",
        "dm_messages",
        "dm_conversation_members",
        "dm_conversations",
    ):
        op.execute(f"DROP TABLE {table}")
