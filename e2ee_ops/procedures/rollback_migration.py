"""Runbook: Rollback/Hotfix, Database Migration Rollback.

`migration_status` is the runbook's `alembic current` + `alembic history`.
`rollback_migration` plans a downgrade by steps or to a revision: the revisions it
undoes, the SQL Alembic would run (offline mode), and every table that SQL drops,
empties or drops a column of, with its row count. Heeding the runbook's warning ("never
drop E2EE tables during live rollback if users have data; use the feature flag instead"),
it refuses to drop, empty or drop a column of a protected table (`e2ee_*`, `dm_*` by
default) that holds rows, unless data loss is explicitly allowed and those very tables
were confirmed by name. Each revision is then undone in turn, and the result verified:
`current` is the target, the dropped tables are gone, every other table is still there,
truncated ones are empty.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from e2ee_ops.adapters.migrations import (
    BASE,
    VERSION_TABLE,
    DowngradePath,
    destructive_tables,
    sql_by_revision,
)
from e2ee_ops.errors import E2eeOpsError, UsageError
from e2ee_ops.procedures.rollback import listing, matches_any
from e2ee_ops.status import Finding, Plan, Report, Status, Step, StepRunner

if TYPE_CHECKING:
    from e2ee_ops.adapters.migrations import Migrations
    from e2ee_ops.adapters.schema_db import SchemaDatabase

FLAG_INSTEAD = "use `e2ee-ops rollback flag --disable` instead"


@dataclass
class MigrationTargets:
    migrations: Migrations
    schema: SchemaDatabase
    protected: Sequence[str] = field(default_factory=lambda: ["e2ee_*", "dm_*"])
    progress: Callable[[str], None] = lambda _m: None


def _one_current(t: MigrationTargets) -> str | None:
    current = t.migrations.current()
    if len(current) > 1:
        raise UsageError(
            f"the database has several current revisions ({', '.join(current)})",
            hint="roll back a branched history with alembic itself",
        )
    return current[0] if current else None


# ---- current + history -------------------------------------------------------------------


def migration_status(t: MigrationTargets) -> Report:
    """`alembic current` and `alembic history`, read-only."""
    current = _one_current(t)
    history = t.migrations.history()
    heads = [r.revision for r in history if r.is_head]
    findings = [
        Finding(
            "current",
            Status.OK if current else Status.WARNING,
            current or BASE,
            f"the database is at {current}" + (" (head)" if current in heads else "")
            if current
            else "the database has no Alembic revision (base)",
        )
    ]
    for rev in history:
        marks = [m for m, on in (("current", rev.revision == current), ("head", rev.is_head)) if on]
        findings.append(
            Finding(
                rev.revision,
                Status.OK,
                ", ".join(marks) or None,
                f"{rev.down_revision or BASE} -> {rev.revision}: {rev.doc}",
            )
        )
    return Report(
        title="rollback migration",
        findings=findings,
        summary=f"current {current or BASE}; head {', '.join(heads)}; {len(history)} revision(s)",
        data={"current": current, "heads": heads, "history": [asdict(r) for r in history]},
    )


# ---- the rollback --------------------------------------------------------------------------


@dataclass(frozen=True)
class TableImpact:
    table: str
    action: str  # drop | truncate | delete | drop column
    revision: str | None
    rows: int | None  # None when the table does not exist now
    qualified: str | None
    protected: bool

    @property
    def at_risk(self) -> bool:
        return self.protected and bool(self.rows)

    @property
    def row_count(self) -> str:
        return "absent" if self.rows is None else f"{self.rows} row{'s' * (self.rows != 1)}"

    def describe(self) -> str:
        rows = self.row_count
        verb = {
            "drop": "drops",
            "truncate": "empties",
            "delete": "deletes from",
            "drop column": "drops a column of",
        }[self.action]
        return f"{verb} {self.table} ({rows}{', protected' if self.protected else ''})"


@dataclass(frozen=True)
class _Assessment:
    path: DowngradePath
    sql: str
    tables: list[TableImpact]

    @property
    def at_risk(self) -> list[TableImpact]:
        return [t for t in self.tables if t.at_risk]


def _assess(t: MigrationTargets, *, steps: int | None, to: str | None) -> _Assessment:
    if (steps is None) == (to is None):
        raise UsageError("give exactly one of --steps N or --to REVISION")
    if steps is not None and steps < 1:
        raise UsageError("--steps must be 1 or more")
    current = _one_current(t)
    if current is None:
        raise UsageError("the database has no Alembic revision: there is nothing to roll back")
    path = t.migrations.downgrade_path(current, steps=steps, to=to)
    if not path.revisions:
        return _Assessment(path, "", [])
    sql = t.migrations.downgrade_sql(path.current, path.target)
    actions = destructive_tables(sql)
    infos = {i.name: i for i in t.schema.describe(list(dict.fromkeys(a.table for a in actions)))}
    tables = [
        TableImpact(
            a.table,
            a.action,
            a.revision,
            infos[a.table].rows,
            infos[a.table].qualified,
            matches_any(a.table, t.protected),
        )
        for a in actions
    ]
    return _Assessment(path, sql, tables)


def refusal(at_risk: Sequence[TableImpact]) -> str:
    """The sentence that refuses to lose data."""
    return (
        "refusing to drop, empty or drop a column of E2EE tables that hold rows: "
        + listing(f"{t.table} ({t.row_count})" for t in at_risk)
        + f"; {FLAG_INSTEAD}, or add --allow-data-loss and confirm the table names"
    )


def _plan(t: MigrationTargets, a: _Assessment, allow_data_loss: bool) -> Plan:
    path = a.path
    title = f"rollback migration {path.current} -> {path.target}"
    data = {
        "current": path.current,
        "target": path.target,
        "revisions": [
            {**asdict(r), "sql": sql_by_revision(a.sql).get(r.revision, "")} for r in path.revisions
        ],
        "sql": a.sql,
        "tables": [asdict(i) for i in a.tables],
        "at_risk_tables": [i.table for i in a.at_risk],
        "protected_patterns": list(t.protected),
    }
    if not path.revisions:
        return Plan(
            title=title,
            steps=[Step(f"nothing to undo: the database is at {path.current} already")],
            summary=f"already at {path.current}; nothing to do",
            data=data,
        )
    guard = Step(
        f"check that no protected table ({', '.join(t.protected)}) holding rows is dropped "
        "or emptied"
    )
    if a.at_risk:
        guard.status = Status.WARNING if allow_data_loss else Status.CRITICAL
        guard.outcome = (
            "data loss allowed by --allow-data-loss for "
            + listing(f"{i.table} ({i.row_count})" for i in a.at_risk)
            if allow_data_loss
            else refusal(a.at_risk)
        )
    by_revision = sql_by_revision(a.sql)
    steps = [guard]
    for rev in path.revisions:
        touched = [i.describe() for i in a.tables if i.revision == rev.revision]
        steps.append(
            Step(
                f"undo {rev.revision} ({rev.doc}): "
                + (
                    listing(touched, limit=20)
                    if touched
                    else "drops or empties no table and drops no column"
                )
                + "\n"
                + (by_revision.get(rev.revision) or "(no SQL)")
            )
        )
    dropped = [i.table for i in a.tables if i.action == "drop"]
    steps.append(Step(f"verify that alembic current is {path.target}"))
    steps.append(
        Step(
            "verify the tables: "
            + (f"gone: {listing(dropped)}; " if dropped else "")
            + "every other table still present"
        )
    )
    refused = a.at_risk and not allow_data_loss
    summary = f"plan only, nothing changed: {refusal(a.at_risk)}" if refused else None
    return Plan(title=title, steps=steps, data=data, summary=summary)


def rollback_migration(
    t: MigrationTargets,
    *,
    steps: int | None,
    to: str | None,
    execute: bool,
    allow_data_loss: bool = False,
    confirmed_tables: Collection[str] = (),
) -> Plan:
    """The plan; with `execute`, undo each revision in turn and verify.

    Executing refuses (UsageError) when a protected table holding rows would be lost and
    either data loss is not allowed or that table is not among `confirmed_tables`: the
    counts are taken again right before acting, so rows written since the plan count.
    """
    a = _assess(t, steps=steps, to=to)
    plan = _plan(t, a, allow_data_loss)
    if not execute or not a.path.revisions:
        return plan
    if a.at_risk and not allow_data_loss:
        raise UsageError(refusal(a.at_risk))
    unconfirmed = [i for i in a.at_risk if i.table not in confirmed_tables]
    if unconfirmed:
        raise UsageError(
            "tables to lose were not confirmed: "
            + listing(f"{i.table} ({i.row_count})" for i in unconfirmed)
            + "; nothing was changed"
        )

    run = StepRunner(plan, t.progress)
    run.done(
        "no protected table holding rows is touched"
        if not a.at_risk
        else f"data loss confirmed for {listing(i.table for i in a.at_risk)}",
        Status.WARNING if a.at_risk else Status.OK,
    )
    before = t.schema.tables()
    revisions = a.path.revisions
    for number, rev in enumerate(revisions):
        below = revisions[number + 1].revision if number + 1 < len(revisions) else a.path.target
        try:
            t.migrations.downgrade(below)
        except E2eeOpsError as exc:
            now = _one_current(t) or BASE
            return run.fail(f"{exc}; the database is now at {now}")
        run.done(f"undid {rev.revision}; now at {below}")

    now = _one_current(t) or BASE
    if now != a.path.target:
        return run.fail(f"alembic current is {now}, not {a.path.target}")
    run.done(f"alembic current is {now}")

    problem = _verify_tables(t, a, before)
    if problem:
        return run.fail(problem)
    dropped = [i for i in a.tables if i.action == "drop" and i.qualified]
    run.done(
        (f"{len(dropped)} table(s) gone; " if dropped else "")
        + f"the other {len(before) - len(dropped)} table(s) still present"
    )
    return plan


def _verify_tables(t: MigrationTargets, a: _Assessment, before: set[str]) -> str | None:
    dropped = {i.table for i in a.tables if i.action == "drop"}
    after = t.schema.describe(sorted({i.table for i in a.tables}))
    still = [i.name for i in after if i.name in dropped and i.exists]
    not_empty = [
        i.name
        for i in after
        if i.exists
        and i.rows
        and any(x.table == i.name and x.action == "truncate" for x in a.tables)
    ]
    gone_qualified = {i.qualified for i in a.tables if i.action == "drop" and i.qualified}
    missing = sorted(
        name
        for name in before - gone_qualified - t.schema.tables()
        if name.rpartition(".")[2] != VERSION_TABLE  # Alembic's own, its business
    )
    problems = []
    if still:
        problems.append(f"still present: {listing(still)}")
    if not_empty:
        problems.append(f"not empty: {listing(not_empty)}")
    if missing:
        problems.append(f"unexpectedly gone: {listing(missing)}")
    return "; ".join(problems) or None
