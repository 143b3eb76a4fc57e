"""sender counts ranked: each bucket's senders readable from the largest count down

Revision ID: 0008_sender_counts_ranked
Revises: 0007_sender_counts
Create Date: 2026-12-04

`abuse top-senders` reads the K largest counts of each five-minute bucket of its
window from this index, instead of every sender of every bucket: a sender that none
of those lists holds has at most the sum of the buckets' K-th counts, and when the
window's top senders all count more than that, no other sender can be among them
(e2ee_ops/adapters/abuse_db.py). Covering, so those reads stay in the index.
"""

from alembic import op

revision = "0008_sender_counts_ranked"
down_revision = "0007_sender_counts"
branch_labels = None
depends_on = None

NAME = "dm_sender_counts_ranked_idx"
TARGET = "dm_sender_counts (bucket_start, messages DESC) INCLUDE (sender_user_id)"


def upgrade() -> None:
    # CONCURRENTLY: sends update this table in their own transaction (its triggers).
    with op.get_context().autocommit_block():
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NAME} ON {TARGET}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
