"""a protected table with rows

Revision ID: t1_table
"""

from alembic import op

revision = "t1_table"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE dm_notes (id BIGSERIAL PRIMARY KEY, body TEXT)")


def downgrade() -> None:
    op.execute("DROP TABLE dm_notes")
