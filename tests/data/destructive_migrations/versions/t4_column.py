"""downgrade drops a column

Revision ID: t4_column
"""

import sqlalchemy as sa
from alembic import op

revision = "t4_column"
down_revision = "t3_delete"


def upgrade() -> None:
    op.add_column("dm_notes", sa.Column("extra", sa.Text()))


def downgrade() -> None:
    op.drop_column("dm_notes", "extra")
