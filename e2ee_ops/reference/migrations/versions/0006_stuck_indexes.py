"""stuck indexes: `devices stuck` shows its worst rows and counts the rest from indexes

Revision ID: 0006_stuck_indexes
Revises: 0005_relay_outages
Create Date: 2026-12-03

The prekey-pool index becomes a covering one, in the order `devices stuck` shows
devices (pool size, then signed-prekey age): the worst rows are read first and the
query stops after `--limit` of them, and the pools are counted without reading a
bundle; stale signed prekeys and inactive devices are counted from covering indexes
too. Devices that are not active (revoked: their pool is emptied, so they sit at
the head of that index forever) are found through a small partial index and left out
by an anti-join instead of a lookup of every candidate's device row.
"""

from alembic import op

revision = "0006_stuck_indexes"
down_revision = "0005_relay_outages"
branch_labels = None
depends_on = None

INDEXES = {
    "e2ee_key_bundles_pool_idx": (
        "e2ee_key_bundles (prekeys_remaining, signed_prekey_uploaded_at) INCLUDE (device_id)"
    ),
    "e2ee_key_bundles_spk_idx": "e2ee_key_bundles (signed_prekey_uploaded_at) INCLUDE (device_id)",
    "e2ee_devices_inactive_idx": (
        "e2ee_devices (last_seen_at) INCLUDE (device_id) WHERE status = 'active'"
    ),
    "e2ee_devices_not_active_idx": "e2ee_devices (device_id) WHERE status <> 'active'",
}
# Replaced by the covering ones above (0004_operator_indexes).
REPLACED = {
    "e2ee_key_bundles_prekeys_idx": "e2ee_key_bundles (prekeys_remaining)",
    "e2ee_key_bundles_spk_uploaded_idx": "e2ee_key_bundles (signed_prekey_uploaded_at)",
    "e2ee_devices_active_last_seen_idx": "e2ee_devices (last_seen_at) WHERE status = 'active'",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, target in INDEXES.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {target}")
        for name in REPLACED:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, target in REPLACED.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {target}")
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
