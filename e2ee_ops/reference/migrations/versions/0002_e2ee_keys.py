"""e2ee keys: devices, key bundles, one-time prekeys, claims, identity-key events

Revision ID: 0002_e2ee_keys
Revises: 0001_accounts
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002_e2ee_keys"
down_revision = "0001_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE e2ee_devices (
            device_id     UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id       BIGINT NOT NULL REFERENCES users(account_id) ON DELETE CASCADE,
            device_name   TEXT NOT NULL,
            identity_key  BYTEA NOT NULL,
            status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
            created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            revoked_at    TIMESTAMPTZ
        )
        """
    )
    op.execute("CREATE INDEX e2ee_devices_user_idx ON e2ee_devices (user_id)")
    op.execute(
        """
        CREATE TABLE e2ee_key_bundles (
            device_id                  UUID PRIMARY KEY
                                       REFERENCES e2ee_devices(device_id) ON DELETE CASCADE,
            bundle_version             INTEGER NOT NULL DEFAULT 1,
            signed_prekey_id           INTEGER NOT NULL,
            signed_prekey_public       BYTEA NOT NULL,
            signed_prekey_signature    BYTEA NOT NULL,
            signed_prekey_uploaded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            prekeys_remaining          INTEGER NOT NULL DEFAULT 0 CHECK (prekeys_remaining >= 0),
            updated_at                 TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE e2ee_one_time_prekeys (
            id           BIGSERIAL PRIMARY KEY,
            device_id    UUID NOT NULL REFERENCES e2ee_devices(device_id) ON DELETE CASCADE,
            key_id       INTEGER NOT NULL,
            public_key   BYTEA NOT NULL,
            uploaded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (device_id, key_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE e2ee_prekey_claims (
            id                  BIGSERIAL PRIMARY KEY,
            device_id           UUID NOT NULL REFERENCES e2ee_devices(device_id) ON DELETE CASCADE,
            claimed_by_user_id  BIGINT NOT NULL,
            key_id              INTEGER NOT NULL,
            claimed_at          TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX e2ee_prekey_claims_at_idx ON e2ee_prekey_claims (claimed_at)")
    op.execute(
        """
        CREATE TABLE e2ee_identity_events (
            id                   BIGSERIAL PRIMARY KEY,
            user_id              BIGINT NOT NULL REFERENCES users(account_id) ON DELETE CASCADE,
            device_id            UUID NOT NULL REFERENCES e2ee_devices(device_id) ON DELETE CASCADE,
            old_fingerprint      TEXT NOT NULL,
            new_fingerprint      TEXT NOT NULL,
            occurred_at          TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX e2ee_identity_events_at_idx ON e2ee_identity_events (occurred_at, user_id)"
    )


def downgrade() -> None:
    for table in (
        "e2ee_identity_events",
        "e2ee_prekey_claims",
        "e2ee_one_time_prekeys",
        "e2ee_key_bundles",
        "e2ee_devices",
    ):
        op.execute(f"DROP TABLE {table}")
