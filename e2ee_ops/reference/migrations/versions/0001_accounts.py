"""accounts: users and hashed API tokens

Revision ID: 0001_accounts
Revises:
Create Date: 2026-11-28
"""

from alembic import op

revision = "0001_accounts"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE users (
            account_id    BIGSERIAL PRIMARY KEY,
            username      TEXT NOT NULL UNIQUE,
            email         TEXT,
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            blocked_at    TIMESTAMPTZ,
            block_reason  TEXT,
            blocked_by    BIGINT
        )
        """
    )
    op.execute(
        """
        CREATE TABLE api_tokens (
            token_id    BIGSERIAL PRIMARY KEY,
            user_id     BIGINT NOT NULL REFERENCES users(account_id) ON DELETE CASCADE,
            token_hash  TEXT NOT NULL UNIQUE,
            scope       TEXT NOT NULL CHECK (scope IN ('user', 'admin')),
            created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            revoked_at  TIMESTAMPTZ
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE api_tokens")
    op.execute("DROP TABLE users")
