"""`rollback_migration`'s decisions with an Alembic history and a schema kept in memory: the
status report, the exact plan and its guard, the refusals, each outcome while acting and
the verification of the tables afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from e2ee_ops.adapters.migrations import BASE, DowngradePath, Revision
from e2ee_ops.adapters.schema_db import TableInfo
from e2ee_ops.errors import ActionFailed, UsageError
from e2ee_ops.procedures.rollback_migration import (
    MigrationTargets,
    TableImpact,
    migration_status,
    rollback_migration,
)
from e2ee_ops.status import NOT_RUN, Status

HISTORY = [
    Revision("r3", "r2", "dm tables", True),
    Revision("r2", "r1", "key tables", False),
    Revision("r1", None, "accounts", False),
]
# What each revision's downgrade runs, as Alembic prints it offline.
SQL = {
    "r3": "DROP TABLE dm_messages;\n\nDROP INDEX dm_idx;\n\nDROP TABLE dm_gone;",
    "r2": "TRUNCATE e2ee_claims;\n\nDELETE FROM users;",
    "r1": "ALTER TABLE users DROP CONSTRAINT users_pkey;",
}


@dataclass
class Schema:
    """Tables (bare name -> rows) of the `public` schema; what `describe` was asked."""

    rows: dict[str, int]
    asked: list[list[str]] = field(default_factory=list)

    def describe(self, names: list[str]) -> list[TableInfo]:
        self.asked.append(list(names))
        return [
            TableInfo(n, f"public.{n}", self.rows[n])
            if n in self.rows
            else TableInfo(n, None, None)
            for n in names
        ]

    def tables(self) -> set[str]:
        return {f"public.{n}" for n in self.rows}


@dataclass
class History:
    """A linear Alembic history whose downgrades act on `schema` as their SQL says."""

    schema: Schema
    at: list[str] = field(default_factory=lambda: ["r3"])
    effects: dict[str, list[tuple[str, str]]] = field(
        default_factory=lambda: {
            "r3": [("drop", "dm_messages"), ("drop", "dm_gone")],
            "r2": [("truncate", "e2ee_claims"), ("truncate", "users")],
            "r1": [],
        }
    )
    fail_at: str | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def current(self) -> list[str]:
        return list(self.at)

    def history(self) -> list[Revision]:
        return list(HISTORY)

    def downgrade_path(
        self, current: str, *, steps: int | None = None, to: str | None = None
    ) -> DowngradePath:
        self.calls.append(("downgrade_path", current, steps, to))
        ids = [r.revision for r in HISTORY]
        below = HISTORY[ids.index(current) :]
        if steps is not None:
            target = below[steps].revision if steps < len(below) else BASE
            return DowngradePath(current, target, below[:steps])
        assert to is not None
        undone = below if to == BASE else below[: [r.revision for r in below].index(to)]
        return DowngradePath(current, to, undone)

    def downgrade_sql(self, current: str, target: str) -> str:
        self.calls.append(("downgrade_sql", current, target))
        ids = [r.revision for r in HISTORY]
        end = len(ids) if target == BASE else ids.index(target)
        return "".join(
            f"BEGIN;\n\n-- Running downgrade {r.revision} -> {r.down_revision or ''}\n\n"
            f"{SQL[r.revision]}\n\nCOMMIT;\n\n"
            for r in HISTORY[ids.index(current) : end]
        )

    def downgrade(self, target: str) -> None:
        self.calls.append(("downgrade", target))
        undoing = self.at[0]
        if undoing == self.fail_at:
            raise ActionFailed("alembic downgrade failed: boom")
        for action, table in self.effects[undoing]:
            if action == "drop":
                self.schema.rows.pop(table, None)
            else:
                self.schema.rows[table] = 0
        self.at = [] if target == BASE else [target]


def setup(**rows: int) -> tuple[MigrationTargets, History, Schema]:
    schema = Schema({"dm_messages": 0, "e2ee_claims": 0, "users": 2, "alembic_version": 1, **rows})
    history = History(schema)
    return MigrationTargets(migrations=history, schema=schema), history, schema  # type: ignore[arg-type]


def outcomes(plan: Any) -> list[tuple[str | None, str | None]]:
    return [(s.status.name if s.status else None, s.outcome) for s in plan.steps]


# ---- current and history ------------------------------------------------------------------


def test_status_marks_current_and_head_and_summarises() -> None:
    t, history, _ = setup()
    history.at = ["r2"]
    report = migration_status(t)
    assert [(f.name, f.status, f.value, f.summary) for f in report.findings] == [
        ("current", Status.OK, "r2", "the database is at r2"),
        ("r3", Status.OK, "head", "r2 -> r3: dm tables"),
        ("r2", Status.OK, "current", "r1 -> r2: key tables"),
        ("r1", Status.OK, None, "base -> r1: accounts"),
    ]
    assert report.title == "rollback migration"
    assert report.summary == "current r2; head r3; 3 revision(s)"
    assert report.data == {
        "current": "r2",
        "heads": ["r3"],
        "history": [
            {"revision": "r3", "down_revision": "r2", "doc": "dm tables", "is_head": True},
            {"revision": "r2", "down_revision": "r1", "doc": "key tables", "is_head": False},
            {"revision": "r1", "down_revision": None, "doc": "accounts", "is_head": False},
        ],
    }


def test_status_at_head_and_at_base() -> None:
    t, history, _ = setup()
    at_head = migration_status(t).findings
    assert at_head[0].summary == "the database is at r3 (head)"
    assert at_head[1].value == "current, head"

    history.at = []
    report = migration_status(t)
    assert (report.findings[0].status, report.findings[0].value, report.findings[0].summary) == (
        Status.WARNING,
        "base",
        "the database has no Alembic revision (base)",
    )
    assert report.summary == "current base; head r3; 3 revision(s)"
    assert report.data["current"] is None


def test_several_current_revisions_are_refused() -> None:
    t, history, _ = setup()
    history.at = ["r3", "x9"]
    with pytest.raises(UsageError) as caught:
        migration_status(t)
    assert caught.value.message == "the database has several current revisions (r3, x9)"
    assert caught.value.hint == "roll back a branched history with alembic itself"


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "to", "said"),
    [
        (None, None, "give exactly one of --steps N or --to REVISION"),
        (1, "r1", "give exactly one of --steps N or --to REVISION"),
        (0, None, "--steps must be 1 or more"),
    ],
)
def test_bad_options_are_refused_before_reading_anything(
    steps: int | None, to: str | None, said: str
) -> None:
    t, history, _ = setup()
    with pytest.raises(UsageError) as caught:
        rollback_migration(t, steps=steps, to=to, execute=False)
    assert caught.value.message == said
    assert history.calls == []


def test_one_step_is_allowed_and_a_database_at_base_has_nothing_to_roll_back() -> None:
    t, history, _ = setup()
    assert rollback_migration(t, steps=1, to=None, execute=False).data["target"] == "r2"
    assert history.calls[0] == ("downgrade_path", "r3", 1, None)
    history.at = []
    with pytest.raises(UsageError) as caught:
        rollback_migration(t, steps=1, to=None, execute=False)
    assert caught.value.message == (
        "the database has no Alembic revision: there is nothing to roll back"
    )


def test_already_at_the_target_is_one_step_and_nothing_run() -> None:
    t, history, schema = setup()
    plan = rollback_migration(t, steps=None, to="r3", execute=True)
    assert plan.title == "rollback migration r3 -> r3"
    assert [s.description for s in plan.steps] == ["nothing to undo: the database is at r3 already"]
    assert plan.summary == "already at r3; nothing to do"
    assert plan.executed is False
    assert plan.data == {
        "current": "r3",
        "target": "r3",
        "revisions": [],
        "sql": "",
        "tables": [],
        "at_risk_tables": [],
        "protected_patterns": ["e2ee_*", "dm_*"],
    }
    assert history.calls == [("downgrade_path", "r3", None, "r3")]
    assert schema.asked == []


# ---- the plan ------------------------------------------------------------------------------


def test_the_plan_names_each_revisions_tables_and_sql() -> None:
    t, history, schema = setup()
    plan = rollback_migration(t, steps=None, to="r1", execute=False)
    assert history.calls[-1] == ("downgrade_sql", "r3", "r1")
    assert schema.asked == [["dm_messages", "dm_gone", "e2ee_claims", "users"]]
    assert plan.title == "rollback migration r3 -> r1"
    assert [s.description for s in plan.steps] == [
        "check that no protected table (e2ee_*, dm_*) holding rows is dropped or emptied",
        "undo r3 (dm tables): drops dm_messages (0 rows, protected), drops dm_gone (absent, "
        "protected)\nDROP TABLE dm_messages;\nDROP INDEX dm_idx;\nDROP TABLE dm_gone;",
        "undo r2 (key tables): empties e2ee_claims (0 rows, protected), deletes from users "
        "(2 rows)\nTRUNCATE e2ee_claims;\nDELETE FROM users;",
        "verify that alembic current is r1",
        "verify the tables: gone: dm_messages, dm_gone; every other table still present",
    ]
    assert plan.steps[0].status is None and plan.steps[0].outcome is None
    assert plan.summary is None
    data = plan.data
    assert (data["current"], data["target"]) == ("r3", "r1")
    assert data["revisions"] == [
        {
            "revision": "r3",
            "down_revision": "r2",
            "doc": "dm tables",
            "is_head": True,
            "sql": "DROP TABLE dm_messages;\nDROP INDEX dm_idx;\nDROP TABLE dm_gone;",
        },
        {
            "revision": "r2",
            "down_revision": "r1",
            "doc": "key tables",
            "is_head": False,
            "sql": "TRUNCATE e2ee_claims;\nDELETE FROM users;",
        },
    ]
    assert "-- Running downgrade r3 -> r2" in data["sql"]
    assert data["tables"] == [
        {"table": "dm_messages", "action": "drop", "revision": "r3", "rows": 0,
         "qualified": "public.dm_messages", "protected": True},
        {"table": "dm_gone", "action": "drop", "revision": "r3", "rows": None,
         "qualified": None, "protected": True},
        {"table": "e2ee_claims", "action": "truncate", "revision": "r2", "rows": 0,
         "qualified": "public.e2ee_claims", "protected": True},
        {"table": "users", "action": "delete", "revision": "r2", "rows": 2,
         "qualified": "public.users", "protected": False},
    ]  # fmt: skip
    assert data["at_risk_tables"] == []
    assert data["protected_patterns"] == ["e2ee_*", "dm_*"]


def test_a_revision_that_loses_no_table_says_so_and_a_plan_without_drops_has_no_gone() -> None:
    t, history, _ = setup()
    history.at = ["r1"]
    plan = rollback_migration(t, steps=1, to=None, execute=False)
    assert [s.description for s in plan.steps[1:]] == [
        "undo r1 (accounts): drops or empties no table and drops no column\n"
        "ALTER TABLE users DROP CONSTRAINT users_pkey;",
        "verify that alembic current is base",
        "verify the tables: every other table still present",
    ]


def test_a_revision_without_sql_says_so() -> None:
    t, history, _ = setup()
    history.downgrade_sql = lambda current, target: ""  # type: ignore[method-assign]
    plan = rollback_migration(t, steps=1, to=None, execute=False)
    assert plan.steps[1].description == (
        "undo r3 (dm tables): drops or empties no table and drops no column\n(no SQL)"
    )
    assert plan.data["revisions"][0]["sql"] == ""


def test_twenty_tables_of_a_revision_are_listed_and_the_rest_counted() -> None:
    t, history, _ = setup()
    SQL_MANY = "\n".join(f"DROP TABLE t{n:02};" for n in range(22))
    history.downgrade_sql = lambda current, target: (  # type: ignore[method-assign]
        f"-- Running downgrade r3 -> r2\n{SQL_MANY}\n"
    )
    first = rollback_migration(t, steps=1, to=None, execute=False).steps[1].description
    shown = ", ".join(f"drops t{n:02} (absent)" for n in range(20))
    assert first.splitlines()[0] == f"undo r3 (dm tables): {shown} and 2 more"


def test_protected_rows_make_the_guard_critical_and_the_summary_a_refusal() -> None:
    t, _, _ = setup(dm_messages=1, e2ee_claims=3)
    plan = rollback_migration(t, steps=2, to=None, execute=False)
    refusal = (
        "refusing to drop, empty or drop a column of E2EE tables that hold rows: "
        "dm_messages (1 row), e2ee_claims (3 rows); use `e2ee-ops rollback flag --disable` "
        "instead, or add --allow-data-loss and confirm the table names"
    )
    assert (plan.steps[0].status, plan.steps[0].outcome) == (Status.CRITICAL, refusal)
    assert plan.status is Status.CRITICAL
    assert plan.summary == f"plan only, nothing changed: {refusal}"
    assert plan.data["at_risk_tables"] == ["dm_messages", "e2ee_claims"]

    with pytest.raises(UsageError) as caught:
        rollback_migration(t, steps=2, to=None, execute=True)
    assert caught.value.message == refusal


def test_allowed_data_loss_is_a_warning_that_still_wants_the_names() -> None:
    t, history, _ = setup(dm_messages=1, e2ee_claims=3)
    plan = rollback_migration(t, steps=2, to=None, execute=False, allow_data_loss=True)
    assert (plan.steps[0].status, plan.steps[0].outcome) == (
        Status.WARNING,
        "data loss allowed by --allow-data-loss for dm_messages (1 row), e2ee_claims (3 rows)",
    )
    assert plan.summary is None

    with pytest.raises(UsageError) as caught:
        rollback_migration(
            t, steps=2, to=None, execute=True, allow_data_loss=True,
            confirmed_tables=["dm_messages"],
        )  # fmt: skip
    assert caught.value.message == (
        "tables to lose were not confirmed: e2ee_claims (3 rows); nothing was changed"
    )
    assert not any(c[0] == "downgrade" for c in history.calls)


def test_unprotected_tables_with_rows_and_own_patterns() -> None:
    t, _, _ = setup(users=5)
    t.protected = ["users"]
    plan = rollback_migration(t, steps=2, to=None, execute=False)
    assert plan.data["at_risk_tables"] == ["users"]
    assert plan.steps[0].description == (
        "check that no protected table (users) holding rows is dropped or emptied"
    )
    protected = {d["table"]: d["protected"] for d in plan.data["tables"]}
    assert protected == {
        "dm_messages": False, "dm_gone": False, "e2ee_claims": False, "users": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("action", "rows", "protected", "said", "at_risk"),
    [
        ("drop", None, False, "drops t (absent)", False),
        ("truncate", 0, True, "empties t (0 rows, protected)", False),
        ("delete", 1, True, "deletes from t (1 row, protected)", True),
        ("drop column", 2, False, "drops a column of t (2 rows)", False),
    ],
)
def test_a_table_impact_says_what_it_loses(
    action: str, rows: int | None, protected: bool, said: str, at_risk: bool
) -> None:
    impact = TableImpact("t", action, "r1", rows, None, protected)
    assert impact.describe() == said
    assert impact.at_risk is at_risk


# ---- acting --------------------------------------------------------------------------------


def test_execute_undoes_each_revision_in_turn_and_verifies() -> None:
    t, history, schema = setup()
    progress: list[str] = []
    t.progress = progress.append
    plan = rollback_migration(t, steps=None, to="r1", execute=True)
    assert [c for c in history.calls if c[0] == "downgrade"] == [
        ("downgrade", "r2"),
        ("downgrade", "r1"),
    ]
    assert plan.executed is True
    assert plan.status is Status.OK
    assert outcomes(plan) == [
        ("OK", "no protected table holding rows is touched"),
        ("OK", "undid r3; now at r2"),
        ("OK", "undid r2; now at r1"),
        ("OK", "alembic current is r1"),
        ("OK", "1 table(s) gone; the other 3 table(s) still present"),
    ]
    assert progress[-1] == "OK: 1 table(s) gone; the other 3 table(s) still present"
    assert schema.rows == {"e2ee_claims": 0, "users": 0, "alembic_version": 1}


def test_down_to_base_undoes_three_revisions_in_order() -> None:
    t, history, _ = setup()
    plan = rollback_migration(t, steps=None, to=BASE, execute=True)
    assert [c[1] for c in history.calls if c[0] == "downgrade"] == ["r2", "r1", BASE]
    assert [o for _, o in outcomes(plan)[1:4]] == [
        "undid r3; now at r2",
        "undid r2; now at r1",
        "undid r1; now at base",
    ]


def test_status_names_every_head() -> None:
    t, history, _ = setup()
    history.history = lambda: [*HISTORY, Revision("r9", "r1", "a branch", True)]  # type: ignore[method-assign]
    assert migration_status(t).summary == "current r3; head r3, r9; 4 revision(s)"


def test_confirmed_data_loss_goes_ahead_as_a_warning() -> None:
    t, _, schema = setup(dm_messages=4)
    plan = rollback_migration(
        t, steps=1, to=None, execute=True, allow_data_loss=True,
        confirmed_tables=["dm_messages"],
    )  # fmt: skip
    assert outcomes(plan)[0] == ("WARNING", "data loss confirmed for dm_messages")
    assert plan.status is Status.WARNING
    assert "dm_messages" not in schema.rows


def test_down_to_base_without_drops_counts_every_table() -> None:
    t, history, schema = setup()
    history.at = ["r1"]
    plan = rollback_migration(t, steps=None, to=BASE, execute=True)
    assert outcomes(plan)[1:] == [
        ("OK", "undid r1; now at base"),
        ("OK", "alembic current is base"),
        ("OK", "the other 4 table(s) still present"),
    ]


def test_a_failing_downgrade_says_where_the_database_is_now() -> None:
    t, history, _ = setup()
    history.fail_at = "r2"
    plan = rollback_migration(t, steps=2, to=None, execute=True)
    assert outcomes(plan)[1:] == [
        ("OK", "undid r3; now at r2"),
        ("CRITICAL", "alembic downgrade failed: boom; the database is now at r2"),
        (None, NOT_RUN),
        (None, NOT_RUN),
    ]


def test_a_failing_last_downgrade_to_base_says_base() -> None:
    t, history, _ = setup()
    history.at = ["r1"]
    history.fail_at = "r1"

    def failing(target: str) -> None:
        history.at = []
        raise ActionFailed("half done")

    history.downgrade = failing  # type: ignore[method-assign]
    plan = rollback_migration(t, steps=1, to=None, execute=True)
    assert outcomes(plan)[1] == ("CRITICAL", "half done; the database is now at base")


def test_a_database_not_at_the_target_afterwards_fails() -> None:
    t, history, _ = setup()
    history.downgrade = lambda target: history.calls.append(("downgrade", target))  # type: ignore[method-assign]
    plan = rollback_migration(t, steps=1, to=None, execute=True)
    assert outcomes(plan)[2:] == [("CRITICAL", "alembic current is r3, not r2"), (None, NOT_RUN)]

    history.at = ["r1"]
    plan = rollback_migration(t, steps=1, to=None, execute=True)
    assert outcomes(plan)[2] == ("CRITICAL", "alembic current is r1, not base")


def test_the_table_check_names_what_is_still_there_not_empty_or_gone() -> None:
    t, history, schema = setup(users=0)
    # r3 leaves dm_messages in place; r2 leaves rows in e2ee_claims and drops users.
    history.effects = {"r3": [], "r2": [("drop", "users")]}
    schema.rows["e2ee_claims"] = 7
    plan = rollback_migration(t, steps=2, to=None, execute=True, allow_data_loss=True,
                              confirmed_tables=["e2ee_claims"])  # fmt: skip
    assert outcomes(plan)[-1] == (
        "CRITICAL",
        "still present: dm_messages; not empty: e2ee_claims; unexpectedly gone: public.users",
    )


def test_alembics_own_table_may_go_and_a_deleted_from_table_may_keep_rows() -> None:
    t, history, schema = setup()
    history.effects = {"r3": [("drop", "dm_messages"), ("drop", "alembic_version")], "r2": []}
    schema.rows["users"] = 9  # DELETE FROM users keeps rows the WHERE did not match
    plan = rollback_migration(t, steps=2, to=None, execute=True)
    assert plan.status is Status.OK, outcomes(plan)
    assert outcomes(plan)[-1] == ("OK", "1 table(s) gone; the other 3 table(s) still present")
