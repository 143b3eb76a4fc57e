"""The Alembic adapter on the test-only lossy migrations, without a database: history,
downgrade paths, revision names, offline SQL and what it says when it cannot act; and the
reading of offline SQL scripts down to each statement."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2ee_ops.adapters.migrations import (
    BASE,
    DowngradePath,
    Migrations,
    Revision,
    TableAction,
    _first_line,
    destructive_tables,
    split_statements,
    sql_by_revision,
)
from e2ee_ops.errors import ActionFailed, ConfigError, UnreachableError, UsageError

LOSSY = Path(__file__).parents[1] / "data" / "destructive_migrations" / "alembic.ini"
NOWHERE = "postgresql://ops@127.0.0.1:9/e2ee"  # nothing listens on port 9

T4 = Revision("t4_column", "t3_delete", "downgrade drops a column", True)
T3 = Revision("t3_delete", "t2_truncate", "downgrade empties the table with DELETE FROM", False)
T2 = Revision("t2_truncate", "t1_table", "downgrade empties the table with TRUNCATE", False)
T1 = Revision("t1_table", None, "a protected table with rows", False)


@pytest.fixture(scope="module")
def lossy() -> Migrations:
    return Migrations(LOSSY, NOWHERE)


def test_a_missing_alembic_ini_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Migrations(tmp_path / "alembic.ini", NOWHERE)
    assert caught.value.message == f"no Alembic configuration at {tmp_path / 'alembic.ini'}"
    assert caught.value.hint == "set alembic.config to the service's alembic.ini"


def test_without_a_url_reading_the_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Migrations(LOSSY, None).current()
    assert caught.value.message == "no PostgreSQL URL is configured"
    assert caught.value.hint == "set postgres.url"
    assert Migrations(LOSSY, None).config().get_main_option("sqlalchemy.url") is None


def test_the_password_goes_into_the_url_and_percent_signs_survive_the_ini() -> None:
    m = Migrations(LOSSY, "postgresql://ops@db.example:5433/e2ee", password="p%w")
    assert m._url() == "postgresql+psycopg://ops:p%25w@db.example:5433/e2ee"
    assert m.config().get_main_option("sqlalchemy.url") == m._url()
    assert Migrations(LOSSY, "postgresql://ops@db.example/e2ee")._url() == (
        "postgresql+psycopg://ops@db.example/e2ee"
    )


def test_history_is_newest_first_with_the_head_marked(lossy: Migrations) -> None:
    assert lossy.history() == [T4, T3, T2, T1]
    assert lossy.heads() == ["t4_column"]


@pytest.mark.parametrize(
    ("steps", "target", "undone"),
    [(1, "t3_delete", [T4]), (3, "t1_table", [T4, T3, T2]), (4, BASE, [T4, T3, T2, T1])],
)
def test_a_downgrade_by_steps(
    lossy: Migrations, steps: int, target: str, undone: list[Revision]
) -> None:
    assert lossy.downgrade_path("t4_column", steps=steps) == DowngradePath(
        "t4_column", target, undone
    )


def test_more_steps_than_revisions_is_refused(lossy: Migrations) -> None:
    with pytest.raises(UsageError) as caught:
        lossy.downgrade_path("t2_truncate", steps=3)
    assert caught.value.message == (
        "cannot go down 3 step(s): t2_truncate has only 2 revision(s) at or below it"
    )
    assert caught.value.hint == "use --to base to undo them all"


@pytest.mark.parametrize(
    ("to", "target", "undone"),
    [
        ("t2", "t2_truncate", [T4, T3]),
        ("t1_table", "t1_table", [T4, T3, T2]),
        ("base", BASE, [T4, T3, T2, T1]),
        ("t4_column", "t4_column", []),
    ],
)
def test_a_downgrade_to_a_revision_or_a_prefix_of_one(
    lossy: Migrations, to: str, target: str, undone: list[Revision]
) -> None:
    assert lossy.downgrade_path("t4_column", to=to) == DowngradePath("t4_column", target, undone)


def test_a_revision_above_the_current_one_is_refused(lossy: Migrations) -> None:
    with pytest.raises(UsageError) as caught:
        lossy.downgrade_path("t2_truncate", to="t3_delete")
    assert caught.value.message == (
        "revision t3_delete is not below the current revision t2_truncate"
    )
    assert caught.value.hint == (
        "a rollback only goes down; see `e2ee-ops rollback migration` for the history"
    )


def test_a_current_revision_unknown_to_the_scripts_is_refused(lossy: Migrations) -> None:
    with pytest.raises(UsageError) as caught:
        lossy.downgrade_path("f00d", steps=1)
    assert caught.value.message == (
        f"the database's revision 'f00d' is not in {LOSSY}'s history "
        "(No such revision or branch 'f00d')"
    )
    assert caught.value.hint == "check alembic.config against the service's deployed code"


def test_an_unknown_revision_is_refused(lossy: Migrations) -> None:
    assert lossy.resolve("base") == "base"
    assert lossy.resolve("t3") == "t3_delete"
    with pytest.raises(UsageError) as caught:
        lossy.resolve("zz")
    assert caught.value.message == (
        "unknown Alembic revision 'zz' (Can't locate revision identified by 'zz')"
    )
    assert caught.value.hint == "see `e2ee-ops rollback migration` for the history"


def test_the_offline_sql_of_a_downgrade(lossy: Migrations) -> None:
    sql = lossy.downgrade_sql("t4_column", "t2_truncate")
    assert sql_by_revision(sql) == {
        "t4_column": "ALTER TABLE dm_notes DROP COLUMN extra;\n"
        "UPDATE alembic_version SET version_num='t3_delete' "
        "WHERE alembic_version.version_num = 't4_column';",
        "t3_delete": "DELETE FROM dm_notes WHERE id > 0;\n"
        "UPDATE alembic_version SET version_num='t2_truncate' "
        "WHERE alembic_version.version_num = 't3_delete';",
    }


def test_offline_sql_that_alembic_cannot_make_is_an_action_failure(lossy: Migrations) -> None:
    with pytest.raises(ActionFailed) as caught:
        lossy.downgrade_sql("t1_table", "t4_column")
    assert caught.value.message == (
        "Alembic could not generate the downgrade SQL t1_table -> t4_column: "
        "Destination t4_column is not a valid downgrade target from current head(s)"
    )


def test_an_unreachable_database_is_said_in_one_line(lossy: Migrations) -> None:
    with pytest.raises(UnreachableError) as reading:
        lossy.current()
    assert reading.value.message.startswith("could not read the Alembic revision: connection ")
    assert "\n" not in reading.value.message
    assert reading.value.host == "postgres"
    with pytest.raises(ActionFailed) as acting:
        lossy.downgrade("t1_table")
    assert acting.value.message.startswith("alembic downgrade to t1_table failed: connection ")
    assert "\n" not in acting.value.message
    assert acting.value.hint == "see `e2ee-ops rollback migration` for where the database is now"


def test_first_line_prefers_the_driver_error_and_names_an_empty_one() -> None:
    wrapped = RuntimeError("wrapper\nmore")
    wrapped.orig = ValueError("  driver said no\nDETAIL: x")  # type: ignore[attr-defined]
    assert _first_line(wrapped) == "driver said no"
    assert _first_line(KeyError()) == "KeyError"
    assert _first_line(RuntimeError("one\ntwo")) == "one"


# ---- reading offline SQL -------------------------------------------------------------------


def test_a_script_without_alembics_markers_is_read_with_no_revision() -> None:
    assert destructive_tables("DROP TABLE dm_a;\nTRUNCATE e2ee_b;") == [
        TableAction("dm_a", "drop", None),
        TableAction("e2ee_b", "truncate", None),
    ]
    assert destructive_tables("") == []
    assert sql_by_revision("DROP TABLE dm_a;") == {}


def test_statements_before_the_first_marker_belong_to_no_revision() -> None:
    sql = "DROP TABLE dm_first;\n-- Running downgrade r2 -> r1\nDROP TABLE dm_second;\n"
    assert destructive_tables(sql) == [
        TableAction("dm_first", "drop", None),
        TableAction("dm_second", "drop", "r2"),
    ]
    assert sql_by_revision(sql) == {"r2": "DROP TABLE dm_second;"}


def test_a_marker_to_base_and_lower_case_statements() -> None:
    sql = "-- Running downgrade r1 -> \n\ndrop table if exists Dm_A;\ntruncate only dm_b *;\n"
    assert destructive_tables(sql) == [
        TableAction("dm_a", "drop", "r1"),
        TableAction("dm_b", "truncate", "r1"),
    ]


def test_statements_spread_over_lines_and_schema_qualified_names() -> None:
    sql = (
        '-- Running downgrade r9 -> r8\nDROP\n  TABLE\tpublic . "Dm ""X""",\n  other.y;\n'
        "DELETE FROM ONLY audit.e2ee_log WHERE true;\n"
        "ALTER TABLE ONLY dm_z * ALTER COLUMN a TYPE int, DROP b;\n"
    )
    assert destructive_tables(sql) == [
        TableAction('public.Dm "X"', "drop", "r9"),
        TableAction("other.y", "drop", "r9"),
        TableAction("audit.e2ee_log", "delete", "r9"),
        TableAction("dm_z", "drop column", "r9"),
    ]


def test_alembics_own_table_is_left_out_in_every_form() -> None:
    sql = (
        "-- Running downgrade r1 -> \nDELETE FROM alembic_version;\n"
        "DROP TABLE public.alembic_version, dm_a;\nTRUNCATE alembic_version;\n"
    )
    assert destructive_tables(sql) == [TableAction("dm_a", "drop", "r1")]


def test_only_the_first_matching_form_counts_for_a_statement() -> None:
    # A TRUNCATE statement is not also read as something else.
    assert destructive_tables("TRUNCATE TABLE dm_a, ONLY dm_b;") == [
        TableAction("dm_a", "truncate", None),
        TableAction("dm_b", "truncate", None),
    ]


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        ("a; b ;; c", ["a", "b", "c"]),
        ("a -- no end", ["a"]),
        ("a /* never closed ; b", ["a"]),
        ("a/*x*/b; c", ["a b", "c"]),
        ("SELECT 'it''s; fine'; b", ["SELECT 'it''s; fine'", "b"]),
        ('SELECT "a;""b"; c', ['SELECT "a;""b"', "c"]),
        ("SELECT 'never closed; b", ["SELECT 'never closed; b"]),
        ("SELECT $t$ a; $$ b $t$; c", ["SELECT $t$ a; $$ b $t$", "c"]),
        ("SELECT $$ never closed; c", ["SELECT $$ never closed; c"]),
        ("x$y; z", ["x$y", "z"]),
    ],
)
def test_statements_split_only_outside_comments_quotes_and_dollar_quotes(
    sql: str, statements: list[str]
) -> None:
    assert split_statements(sql) == statements


def test_each_revisions_sql_leaves_out_begin_and_commit() -> None:
    sql = (
        "BEGIN;\n-- Running downgrade r2 -> r1\nDROP TABLE a;\nCOMMIT;\nbegin;\n"
        "-- Running downgrade r1 -> \ncommit;\n"
    )
    assert sql_by_revision(sql) == {"r2": "DROP TABLE a;", "r1": ""}


def _revision_file(versions: Path, rev: str, down: str | tuple[str, ...] | None) -> None:
    versions.joinpath(f"{rev}.py").write_text(
        f'"""{rev}"""\n\nrevision = {rev!r}\ndown_revision = {down!r}\n\n\n'
        "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
    )


def test_a_branched_history_is_refused_with_what_to_use_instead(tmp_path: Path) -> None:
    (tmp_path / "versions").mkdir()
    (tmp_path / "alembic.ini").write_text(LOSSY.read_text())
    (tmp_path / "env.py").write_text(LOSSY.with_name("env.py").read_text())
    _revision_file(tmp_path / "versions", "b0_base", None)
    _revision_file(tmp_path / "versions", "b1_left", "b0_base")
    _revision_file(tmp_path / "versions", "b2_right", "b0_base")
    _revision_file(tmp_path / "versions", "b3_merge", ("b1_left", "b2_right"))
    with pytest.raises(UsageError) as caught:
        Migrations(tmp_path / "alembic.ini", NOWHERE).downgrade_path("b3_merge", steps=1)
    assert caught.value.message == (
        "the migration history is branched; e2ee-ops only rolls back linear histories"
    )
    assert caught.value.hint == "use alembic itself"
