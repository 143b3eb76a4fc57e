"""downgrade empties the table with TRUNCATE

Revision ID: t2_truncate
"""

from alembic import op

revision = "t2_truncate"
down_revision = "t1_table"


def upgrade() -> None:
    pass


def downgrade() -> None:
    op.execute("TRUNCATE dm_notes")
