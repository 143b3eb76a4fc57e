"""`rollback migration` against real PostgreSQL with the reference server's migrations."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from e2ee_ops.dburl import libpq_url
from tests.integration.rollback.conftest import current_revision, seed_rows, tables
from tests.support.cli import CliResult, cli
from tests.support.config import write_config

DM_TABLES = {
    "dm_conversations",
    "dm_conversation_members",
    "dm_messages",
    "dm_envelopes",
    "dm_delivery",
    "dm_blocks",
    "dm_rate_limit_events",
}


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., CliResult]:
    def invoke(url: str, *args: str) -> CliResult:
        config = write_config(tmp_path, postgres={"url": url})
        return cli("--config", str(config), "rollback", "migration", *args)

    return invoke


def journal(tmp_path: Path) -> list[dict]:  # type: ignore[type-arg]
    path = tmp_path / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_without_options_shows_current_and_history(migrated, run) -> None:  # type: ignore[no-untyped-def]
    url = migrated("0003_dm_messages")
    before = tables(url)
    result = run(url, "-o", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json["data"]
    assert data["current"] == "0003_dm_messages"
    history = [r["revision"] for r in data["history"]]
    assert history[-3:] == ["0003_dm_messages", "0002_e2ee_keys", "0001_accounts"]
    findings = {f["name"]: f for f in result.json["findings"]}
    assert findings["current"]["value"] == "0003_dm_messages"
    assert findings["current"]["summary"] == "the database is at 0003_dm_messages"
    assert findings["current"]["status"] == "OK"
    assert "current" in findings["0003_dm_messages"]["value"]
    assert tables(url) == before and current_revision(url) == "0003_dm_messages"


def test_one_step_on_empty_tables_plans_then_downgrades_and_verifies(
    migrated, run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = migrated("0003_dm_messages")
    before = tables(url)

    plan = run(url, "--steps", "1", "-o", "json")
    assert plan.exit_code == 0, plan.stderr
    assert plan.json["executed"] is False
    data = plan.json["data"]
    assert data["target"] == "0002_e2ee_keys"
    assert [r["revision"] for r in data["revisions"]] == ["0003_dm_messages"]
    assert "DROP TABLE dm_messages;" in data["sql"]
    assert "DROP TABLE dm_messages;" in data["revisions"][0]["sql"]
    assert {t["table"] for t in data["tables"]} == DM_TABLES
    assert all(t["action"] == "drop" and t["rows"] == 0 for t in data["tables"])
    assert data["at_risk_tables"] == []
    assert tables(url) == before  # a plan changes nothing

    unconfirmed = run(url, "--steps", "1", "--execute")
    assert unconfirmed.exit_code == 64 and "--yes" in unconfirmed.stderr
    assert current_revision(url) == "0003_dm_messages"

    done = run(url, "--steps", "1", "--execute", "--yes", "-o", "json")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert all(s["status"] == "OK" for s in done.json["steps"]), done.json["steps"]
    assert current_revision(url) == "0002_e2ee_keys"
    assert tables(url) == before - DM_TABLES

    kinds = [e["kind"] for e in journal(tmp_path) if e["command"] == "rollback migration"]
    assert kinds == ["plan", "outcome"]


def test_refuses_to_drop_e2ee_tables_that_hold_rows(migrated, run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = migrated("0003_dm_messages")
    seed_rows(url, messages=3)
    before = tables(url)

    plan = run(url, "--steps", "1", "-o", "json")
    assert plan.exit_code == 2  # the plan says it would be refused
    rows = {t["table"]: t["rows"] for t in plan.json["data"]["tables"]}
    assert rows["dm_messages"] == 3 and rows["dm_conversations"] == 1 and rows["dm_blocks"] == 0
    assert sorted(plan.json["data"]["at_risk_tables"]) == ["dm_conversations", "dm_messages"]
    assert "refusing" in plan.json["steps"][0]["outcome"]

    refused = run(url, "--steps", "1", "--execute", "--yes")
    assert refused.exit_code == 64
    assert refused.stderr.count("\n") == 1
    assert "dm_messages (3 rows)" in refused.stderr
    assert "rollback flag --disable" in refused.stderr
    assert current_revision(url) == "0003_dm_messages" and tables(url) == before
    outcome = [e for e in journal(tmp_path) if e["kind"] == "outcome"][-1]
    assert outcome["data"]["status"] == "REFUSED"

    # --allow-data-loss still wants the names typed back; --yes does not waive that.
    no_tty = run(url, "--steps", "1", "--allow-data-loss", "--execute", "--yes")
    assert no_tty.exit_code == 64 and "terminal" in no_tty.stderr
    wrong = run(
        url, "--steps", "1", "--allow-data-loss", "--confirm-tables", "dm_messages",
        "--execute", "--yes",
    )  # fmt: skip
    assert wrong.exit_code == 64 and "does not name" in wrong.stderr
    assert current_revision(url) == "0003_dm_messages" and tables(url) == before

    allowed = run(
        url, "--steps", "1", "--allow-data-loss",
        "--confirm-tables", "dm_messages,dm_conversations", "--execute", "--yes", "-o", "json",
    )  # fmt: skip
    assert allowed.exit_code == 1, allowed.stdout + allowed.stderr  # WARNING: data was lost
    assert allowed.json["steps"][0]["status"] == "WARNING"
    assert all(s["status"] == "OK" for s in allowed.json["steps"][1:])
    assert current_revision(url) == "0002_e2ee_keys"
    assert tables(url) == before - DM_TABLES


def test_only_protected_tables_are_guarded_down_to_base(migrated, run) -> None:  # type: ignore[no-untyped-def]
    url = migrated("head")
    seed_rows(url)  # two users, no E2EE rows: dropping `users` is not what the runbook guards

    plan = run(url, "--to", "base", "-o", "json")
    assert plan.exit_code == 0, plan.stderr
    rows = {t["table"]: (t["rows"], t["protected"]) for t in plan.json["data"]["tables"]}
    assert rows["users"] == (2, False) and rows["e2ee_devices"] == (0, True)
    assert "alembic_version" not in rows
    assert plan.json["data"]["at_risk_tables"] == []

    done = run(url, "--to", "base", "--execute", "--yes", "-o", "json")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert current_revision(url) is None
    assert tables(url) <= {"alembic_version"}


def test_e2ee_key_tables_with_rows_are_named(migrated, run) -> None:  # type: ignore[no-untyped-def]
    url = migrated("head")
    seed_rows(url, devices=2)
    plan = run(url, "--to", "0001_accounts", "-o", "json")
    assert plan.exit_code == 2
    assert plan.json["data"]["at_risk_tables"] == ["e2ee_devices"]
    assert plan.json["data"]["target"] == "0001_accounts"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--to", "nosuch"], "unknown Alembic revision 'nosuch'"),
        (["--steps", "9"], "cannot go down 9 step(s)"),
        (["--to", "0003_dm_messages"], "is not below the current revision 0002_e2ee_keys"),
        (["--steps", "1", "--to", "base"], "not both"),
        (["--execute", "--yes"], "--execute needs --steps N or --to REV"),
    ],
)
def test_bad_input_is_one_sentence_and_changes_nothing(  # type: ignore[no-untyped-def]
    migrated, run, args: list[str], said: str
) -> None:
    url = migrated("0002_e2ee_keys")
    before = tables(url)
    result = run(url, *args, "--execute", "--yes") if "--execute" not in args else run(url, *args)
    assert result.exit_code == 64, result.stdout + result.stderr
    assert said in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert current_revision(url) == "0002_e2ee_keys" and tables(url) == before


def test_already_at_the_target_is_nothing_to_do(migrated, run) -> None:  # type: ignore[no-untyped-def]
    url = migrated("0002_e2ee_keys")
    result = run(url, "--to", "0002_e2ee_keys", "--execute", "--yes", "-o", "json")
    assert result.exit_code == 0
    assert "nothing to do" in result.json["summary"]


def test_unreachable_database_is_unknown(run) -> None:  # type: ignore[no-untyped-def]
    result = run("postgresql://ops@127.0.0.1:9/e2ee", "--steps", "1")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_at_a_terminal_the_table_names_are_typed_back(
    migrated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import types

    import e2ee_ops.cli.acting

    terminal = types.SimpleNamespace(stdin=types.SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr(e2ee_ops.cli.acting, "sys", terminal)
    url = migrated("0003_dm_messages")
    seed_rows(url, messages=1)
    config = write_config(tmp_path, postgres={"url": url})
    args = ("--config", str(config), "rollback", "migration", "--steps", "1", "--execute")

    wrong = cli(*args, "--allow-data-loss", "--yes", input="dm_messages\n")
    assert wrong.exit_code == 64 and "did not match" in wrong.stderr
    assert current_revision(url) == "0003_dm_messages"

    typed = cli(*args, "--allow-data-loss", input="dm_messages,dm_conversations\n")
    assert typed.exit_code == 1, typed.stdout + typed.stderr
    assert "Type 'dm_messages,dm_conversations' to go ahead" in typed.stderr
    assert current_revision(url) == "0002_e2ee_keys"


# ---- every form that loses rows is guarded, not only DROP TABLE ---------------------------

LOSSY = Path(__file__).parents[2] / "data" / "destructive_migrations" / "alembic.ini"


@pytest.fixture
def lossy(make_database: Callable[[str], str], tmp_path: Path) -> Callable[..., tuple[str, Path]]:
    """Factory: a database at a revision of the test-only lossy migrations, `rows` rows in
    dm_notes, and a config pointing at those migrations."""
    from alembic import command

    from e2ee_ops.adapters.migrations import Migrations

    def make(revision: str, rows: int) -> tuple[str, Path]:
        url = make_database(f"rb_{uuid.uuid4().hex[:10]}")
        command.upgrade(Migrations(LOSSY, url).config(), revision)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            for n in range(rows):
                conn.execute("INSERT INTO dm_notes (body) VALUES (%s)", (f"note {n}",))
        config = write_config(tmp_path, postgres={"url": url}, alembic={"config": str(LOSSY)})
        return url, config

    return make


def _notes(url: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        return int(conn.execute("SELECT count(*) FROM dm_notes").fetchone()[0])  # type: ignore[index]


@pytest.mark.parametrize(
    ("revision", "action", "said"),
    [
        ("t2_truncate", "truncate", "empties dm_notes (2 rows, protected)"),
        ("t3_delete", "delete", "deletes from dm_notes (2 rows, protected)"),
        ("t4_column", "drop column", "drops a column of dm_notes (2 rows, protected)"),
    ],
)
def test_truncate_delete_and_drop_column_of_a_protected_table_are_refused(
    lossy, revision: str, action: str, said: str
) -> None:  # type: ignore[no-untyped-def]
    url, config = lossy(revision, rows=2)
    args = ("--config", str(config), "rollback", "migration", "--steps", "1")

    plan = cli(*args, "-o", "json")
    assert plan.exit_code == 2, plan.stdout + plan.stderr
    assert plan.json["data"]["tables"] == [
        {
            "table": "dm_notes",
            "action": action,
            "revision": revision,
            "rows": 2,
            "qualified": "public.dm_notes",
            "protected": True,
        }
    ]
    assert plan.json["data"]["at_risk_tables"] == ["dm_notes"]
    assert plan.json["steps"][0]["status"] == "CRITICAL"
    assert said in plan.json["steps"][1]["description"]

    refused = cli(*args, "--execute", "--yes")
    assert refused.exit_code == 64
    assert "refusing" in refused.stderr and "dm_notes (2 rows)" in refused.stderr
    assert current_revision(url) == revision and _notes(url) == 2


def test_lossy_forms_on_an_empty_protected_table_go_ahead(lossy) -> None:  # type: ignore[no-untyped-def]
    url, config = lossy("t4_column", rows=0)
    args = ("--config", str(config), "rollback", "migration", "--to", "t1_table")
    plan = cli(*args, "-o", "json")
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    actions = [(t["action"], t["rows"]) for t in plan.json["data"]["tables"]]
    assert actions == [("drop column", 0), ("delete", 0), ("truncate", 0)]
    assert plan.json["data"]["at_risk_tables"] == []
    done = cli(*args, "--execute", "--yes", "-o", "json")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert current_revision(url) == "t1_table" and _notes(url) == 0
