"""relay outages: when each API instance lost and regained Redis

Revision ID: 0005_relay_outages
Revises: 0004_operator_indexes
Create Date: 2026-12-02

Each API instance records its own relay state changes here, so that the start of
an outage survives a restart of the instance and the operator's outage record rests
on what the service saw, not on an estimate. One row per outage and instance; an
open outage has no `regained_at`.
"""

from alembic import op

revision = "0005_relay_outages"
down_revision = "0004_operator_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE relay_outages (
            id           BIGSERIAL PRIMARY KEY,
            instance_id  TEXT NOT NULL,
            lost_at      TIMESTAMPTZ NOT NULL,
            regained_at  TIMESTAMPTZ,
            reason       TEXT,
            CHECK (regained_at IS NULL OR regained_at >= lost_at)
        )
        """
    )
    op.execute("CREATE INDEX relay_outages_instance_idx ON relay_outages (instance_id, lost_at)")
    # At most one open outage per instance.
    op.execute(
        "CREATE UNIQUE INDEX relay_outages_open_idx ON relay_outages (instance_id) "
        "WHERE regained_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE relay_outages")
