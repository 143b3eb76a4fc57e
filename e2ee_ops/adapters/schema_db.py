"""Schema facts for a migration rollback: which tables exist and how many rows they hold.

Table names come from SQL that Alembic generated, so they are always passed to
PostgreSQL as quoted identifiers (psycopg.sql.Identifier), never formatted into text.
Only `count(*)` is asked of a table: no column, and so no ciphertext, is ever read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from e2ee_ops.adapters.postgres import OpsDatabase

_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass(frozen=True)
class TableInfo:
    name: str  # as given: `table` or `schema.table`
    qualified: str | None  # `schema.table` as PostgreSQL resolves it; None when absent
    rows: int | None  # None when the table does not exist

    @property
    def exists(self) -> bool:
        return self.qualified is not None


class SchemaDatabase:
    def __init__(self, db: OpsDatabase) -> None:
        self.db = db

    def describe(self, names: Sequence[str]) -> list[TableInfo]:
        """For each table name (`t` or `schema.t`): does it exist, and its exact row count."""
        from psycopg import sql

        infos: list[TableInfo] = []
        with self.db.connect() as conn:
            for name in names:
                ident = sql.Identifier(*name.split(".", 1))
                row = conn.execute(
                    "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
                    (ident.as_string(conn),),
                ).fetchone()
                if row is None:
                    infos.append(TableInfo(name, None, None))
                    continue
                count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
                infos.append(TableInfo(name, str(row[0]), int(count[0]) if count else 0))
        return infos

    def tables(self) -> set[str]:
        """Every user table, as `schema.table`."""
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' AND table_schema <> ALL(%s)",
                (list(_SYSTEM_SCHEMAS),),
            ).fetchall()
        return {str(r[0]) for r in rows}
