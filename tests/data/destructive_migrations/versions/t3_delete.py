"""downgrade empties the table with DELETE FROM

Revision ID: t3_delete
"""

from alembic import op

revision = "t3_delete"
down_revision = "t2_truncate"


def upgrade() -> None:
    pass


def downgrade() -> None:
    op.execute("DELETE FROM dm_notes WHERE id > 0")
