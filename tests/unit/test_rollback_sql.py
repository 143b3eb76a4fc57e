"""Which tables a downgrade drops or empties, read from the SQL Alembic prints offline."""

from __future__ import annotations

from e2ee_ops.adapters.migrations import destructive_tables, split_statements, sql_by_revision
from e2ee_ops.procedures.rollback import listing, matches_any

OFFLINE = """BEGIN;

-- Running downgrade 0003_dm -> 0002_keys

DROP TABLE dm_rate_limit_events;

DROP TABLE IF EXISTS public.dm_blocks, "DM Archive";

DROP INDEX dm_messages_created_at_idx;

UPDATE alembic_version SET version_num='0002_keys' WHERE alembic_version.version_num = '0003_dm';

COMMIT;

BEGIN;

-- Running downgrade 0002_keys -> 0001_accounts

-- DROP TABLE e2ee_commented_out;
/* TRUNCATE e2ee_in_a_block_comment; */
INSERT INTO audit (note) VALUES ('DROP TABLE e2ee_in_a_string; still one statement');

TRUNCATE TABLE ONLY e2ee_prekey_claims, e2ee_one_time_prekeys *;

delete from E2EE_Devices where status = 'revoked';

DO $$ BEGIN EXECUTE 'DROP TABLE e2ee_dynamic'; END $$;

DELETE FROM alembic_version WHERE alembic_version.version_num = '0002_keys';

DROP TABLE alembic_version;

COMMIT;
"""


def test_drops_truncates_and_deletes_with_their_revision() -> None:
    found = [(t.table, t.action, t.revision) for t in destructive_tables(OFFLINE)]
    assert found == [
        ("dm_rate_limit_events", "drop", "0003_dm"),
        ("public.dm_blocks", "drop", "0003_dm"),
        ("DM Archive", "drop", "0003_dm"),
        ("e2ee_prekey_claims", "truncate", "0002_keys"),
        ("e2ee_one_time_prekeys", "truncate", "0002_keys"),
        ("e2ee_devices", "delete", "0002_keys"),  # unquoted names fold to lower case
    ]


def test_statements_ignore_comments_and_respect_quotes() -> None:
    statements = split_statements(OFFLINE)
    assert "INSERT INTO audit (note) VALUES ('DROP TABLE e2ee_in_a_string; still one " \
        "statement')" in statements  # fmt: skip
    assert not any("commented_out" in s or "block_comment" in s for s in statements)
    assert "DO $$ BEGIN EXECUTE 'DROP TABLE e2ee_dynamic'; END $$" in statements


def test_sql_by_revision_cuts_at_alembics_markers() -> None:
    parts = sql_by_revision(OFFLINE)
    assert list(parts) == ["0003_dm", "0002_keys"]
    assert parts["0003_dm"].splitlines()[0] == "DROP TABLE dm_rate_limit_events;"
    assert "BEGIN" not in parts["0003_dm"] and "COMMIT" not in parts["0002_keys"]


def test_protected_patterns_match_bare_and_qualified_names() -> None:
    patterns = ["e2ee_*", "dm_*"]
    assert matches_any("dm_messages", patterns)
    assert matches_any("public.e2ee_devices", patterns)
    assert not matches_any("users", patterns)
    assert not matches_any("api_tokens", patterns)
    assert matches_any("audit.users", ["audit.*"])


def test_listing_cuts_long_lists() -> None:
    assert listing(["a", "b"]) == "a, b"
    assert listing([str(n) for n in range(12)], limit=3) == "0, 1, 2 and 9 more"
    assert listing(["a", "b", "c"], limit=3) == "a, b, c"  # exactly at the limit: nothing more
    assert listing(["a", "b", "c", "d"], limit=3) == "a, b, c and 1 more"


def test_dropping_a_column_is_destructive_and_dropping_a_constraint_is_not() -> None:
    sql = """-- Running downgrade 0005_x -> 0004_y

ALTER TABLE dm_messages DROP COLUMN client_message_id;
ALTER TABLE IF EXISTS ONLY public.e2ee_devices DROP IF EXISTS device_name CASCADE;
alter table "DM Notes" add column a int, drop column b;
ALTER TABLE dm_blocks DROP CONSTRAINT dm_blocks_pkey;
ALTER TABLE dm_blocks ALTER COLUMN reason DROP DEFAULT;
ALTER TABLE dm_blocks ALTER COLUMN reason DROP NOT NULL;
ALTER TABLE dm_blocks ADD COLUMN dropped_at TIMESTAMPTZ;
"""
    found = [(t.table, t.action, t.revision) for t in destructive_tables(sql)]
    assert found == [
        ("dm_messages", "drop column", "0005_x"),
        ("public.e2ee_devices", "drop column", "0005_x"),
        ("DM Notes", "drop column", "0005_x"),
    ]
