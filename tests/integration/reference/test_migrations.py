"""Alembic migrations of the reference server against a real, fresh PostgreSQL database."""

from __future__ import annotations

import io

import psycopg
import pytest
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from e2ee_ops.dburl import libpq_url, sqlalchemy_url
from e2ee_ops.reference.bootstrap import alembic_config, downgrade, migrate

ACCOUNT_TABLES = {"users", "api_tokens"}
KEY_TABLES = {
    "e2ee_devices",
    "e2ee_key_bundles",
    "e2ee_one_time_prekeys",
    "e2ee_prekey_claims",
    "e2ee_identity_events",
}
DM_TABLES = {
    "dm_conversations",
    "dm_conversation_members",
    "dm_messages",
    "dm_envelopes",
    "dm_delivery",
    "dm_blocks",
    "dm_rate_limit_events",
    "dm_sender_counts",
}
OPS_TABLES = {"relay_outages"}
ALL_TABLES = ACCOUNT_TABLES | KEY_TABLES | DM_TABLES | OPS_TABLES
# The newest revision.
HEAD = ScriptDirectory.from_config(alembic_config("postgresql://unused/x")).get_current_head()


def _tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()
    return {r[0] for r in rows}


def _current_revision(url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@pytest.fixture
def fresh_db(make_database) -> str:  # type: ignore[no-untyped-def]
    url: str = make_database("mig_x")
    return url


def test_upgrade_downgrade_cycle(fresh_db: str) -> None:
    assert _tables(fresh_db) == set()
    assert _current_revision(fresh_db) is None

    migrate(fresh_db)
    assert _tables(fresh_db) == ALL_TABLES | {"alembic_version"}
    assert _current_revision(fresh_db) == HEAD

    downgrade(fresh_db, "0002_e2ee_keys")
    assert _tables(fresh_db) == ACCOUNT_TABLES | KEY_TABLES | {"alembic_version"}
    assert _current_revision(fresh_db) == "0002_e2ee_keys"

    downgrade(fresh_db, "base")
    assert _tables(fresh_db) == {"alembic_version"}
    assert _current_revision(fresh_db) is None

    migrate(fresh_db)
    assert _tables(fresh_db) == ALL_TABLES | {"alembic_version"}
    assert _current_revision(fresh_db) == HEAD

    # Upgrading an up-to-date database is a no-op, not an error.
    migrate(fresh_db)
    assert _current_revision(fresh_db) == HEAD


def test_schema_works_after_a_round_trip(fresh_db: str) -> None:
    """The re-created schema is usable: defaults and constraints are back."""
    migrate(fresh_db)
    downgrade(fresh_db, "base")
    migrate(fresh_db)
    with psycopg.connect(libpq_url(fresh_db)) as conn:
        uid = conn.execute(
            "INSERT INTO users (username) VALUES ('x') RETURNING account_id"
        ).fetchone()[0]
        device = conn.execute(
            "INSERT INTO e2ee_devices (user_id, device_name, identity_key) "
            "VALUES (%s, 'd', '\\x00') RETURNING device_id, status",
            (uid,),
        ).fetchone()
        assert device[1] == "active"
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO api_tokens (user_id, token_hash, scope) VALUES (%s, 'h', 'root')",
                (uid,),
            )


def test_offline_sql_generation(fresh_db: str) -> None:
    config = alembic_config(fresh_db)
    buffer = io.StringIO()
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    for table in ALL_TABLES:
        assert f"CREATE TABLE {table} (" in sql, table
    assert "CREATE TABLE alembic_version" in sql
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001_accounts')" in sql
    assert f"UPDATE alembic_version SET version_num='{HEAD}'" in sql
    # Offline mode only prints: the database stays empty.
    assert _tables(fresh_db) == set()
