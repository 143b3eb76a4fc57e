"""Alembic through its Python API: current revision, head, history, offline SQL, downgrade.

The offline SQL of a downgrade (`alembic downgrade CUR:TARGET --sql`) is what the plan
shows, and what `destructive_tables()` reads to say which tables a downgrade would drop
or empty: the migration files themselves decide, not a list kept here.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2ee_ops.dburl import sqlalchemy_url
from e2ee_ops.errors import ActionFailed, ConfigError, UnreachableError, UsageError

BASE = "base"
# Alembic's own bookkeeping table: a downgrade to base empties or drops it, as it should.
VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    doc: str
    is_head: bool


@dataclass(frozen=True)
class DowngradePath:
    """From `current` down to `target` (a revision id or "base"), undoing `revisions`."""

    current: str
    target: str
    revisions: list[Revision]  # newest first, as they would be undone


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Migrations:
    def __init__(
        self,
        alembic_ini: Path,
        database_url: str | None,
        *,
        password: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        if not alembic_ini.is_file():
            raise ConfigError(
                f"no Alembic configuration at {alembic_ini}",
                hint="set alembic.config to the service's alembic.ini",
            )
        self.alembic_ini = alembic_ini
        self.database_url = database_url
        self.password = password
        self.connect_timeout = connect_timeout

    def _url(self) -> str:
        if not self.database_url:
            raise ConfigError("no PostgreSQL URL is configured", hint="set postgres.url")
        url = sqlalchemy_url(self.database_url)
        if self.password:
            from sqlalchemy.engine import make_url

            url = make_url(url).set(password=self.password).render_as_string(hide_password=False)
        return url

    def config(self, *, output_buffer: io.StringIO | None = None) -> Any:
        from alembic.config import Config

        cfg = Config(str(self.alembic_ini), output_buffer=output_buffer)
        if self.database_url:
            cfg.set_main_option("sqlalchemy.url", self._url().replace("%", "%%"))
        return cfg

    def script(self) -> Any:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.config())

    def heads(self) -> list[str]:
        return list(self.script().get_heads())

    def history(self) -> list[Revision]:
        """Every revision, newest first."""
        script = self.script()
        heads = set(script.get_heads())
        return [_revision(rev, heads) for rev in script.walk_revisions()]

    def current(self) -> list[str]:
        """The database's current revision(s); empty when never migrated."""
        from alembic.runtime.migration import MigrationContext
        from sqlalchemy import create_engine
        from sqlalchemy.exc import OperationalError

        engine = create_engine(
            self._url(), connect_args={"connect_timeout": max(1, round(self.connect_timeout))}
        )
        try:
            with engine.connect() as conn:
                return list(MigrationContext.configure(conn).get_current_heads())
        except OperationalError as exc:
            raise UnreachableError(
                f"could not read the Alembic revision: {_first_line(exc)}", host="postgres"
            ) from None
        finally:
            engine.dispose()

    def downgrade_path(
        self, current: str, *, steps: int | None = None, to: str | None = None
    ) -> DowngradePath:
        """Which revisions a downgrade by `steps` or to `to` undoes; UsageError if none can.

        `to` may be a revision id, an unambiguous prefix of one, or "base".
        """
        from alembic.script.revision import RevisionError
        from alembic.util import CommandError

        script = self.script()
        heads = set(script.get_heads())
        try:
            raw = list(script.iterate_revisions(current, BASE))
        except (RevisionError, CommandError) as exc:
            raise UsageError(
                f"the database's revision {current!r} is not in {self.alembic_ini}'s history "
                f"({exc})",
                hint="check alembic.config against the service's deployed code",
            ) from None
        below = [_revision(r, heads) for r in raw]
        if any(isinstance(r.down_revision, tuple) for r in raw):
            raise UsageError(
                "the migration history is branched; e2ee-ops only rolls back linear histories",
                hint="use alembic itself",
            )
        if steps is not None:
            if steps > len(below):
                raise UsageError(
                    f"cannot go down {steps} step(s): {current} has only {len(below)} "
                    "revision(s) at or below it",
                    hint="use --to base to undo them all",
                )
            target = below[steps].revision if steps < len(below) else BASE
            return DowngradePath(current, target, below[:steps])
        assert to is not None
        target = self.resolve(to)
        ids = [r.revision for r in below]
        if target == current:
            return DowngradePath(current, target, [])
        if target != BASE and target not in ids:
            raise UsageError(
                f"revision {target} is not below the current revision {current}",
                hint="a rollback only goes down; see `e2ee-ops rollback migration` for the history",
            )
        undone = below if target == BASE else below[: ids.index(target)]
        return DowngradePath(current, target, undone)

    def resolve(self, rev: str) -> str:
        """The full id of `rev` (or "base"); UsageError when unknown or ambiguous."""
        if rev == BASE:
            return BASE
        from alembic.script.revision import RevisionError
        from alembic.util import CommandError

        try:
            found = self.script().get_revision(rev)
        except (RevisionError, CommandError) as exc:
            raise UsageError(
                f"unknown Alembic revision {rev!r} ({exc})",
                hint="see `e2ee-ops rollback migration` for the history",
            ) from None
        if found is None:
            raise UsageError(f"unknown Alembic revision {rev!r}")
        return str(found.revision)

    def downgrade_sql(self, current: str, target: str) -> str:
        """The SQL `alembic downgrade CURRENT:TARGET --sql` prints; nothing is run."""
        from alembic import command

        buffer = io.StringIO()
        try:
            command.downgrade(self.config(output_buffer=buffer), f"{current}:{target}", sql=True)
        except Exception as exc:  # an env.py or migration that cannot run offline
            raise ActionFailed(
                f"Alembic could not generate the downgrade SQL {current} -> {target}: "
                f"{_first_line(exc)}"
            ) from None
        return buffer.getvalue()

    def downgrade(self, target: str) -> None:
        """`alembic downgrade TARGET` against the database."""
        from alembic import command

        try:
            command.downgrade(self.config(), target)
        except Exception as exc:  # SQLAlchemy, Alembic or the migration itself
            raise ActionFailed(
                f"alembic downgrade to {target} failed: {_first_line(exc)}",
                hint="see `e2ee-ops rollback migration` for where the database is now",
            ) from None


def _revision(rev: Any, heads: set[str]) -> Revision:
    return Revision(
        revision=rev.revision,
        down_revision=rev.down_revision if isinstance(rev.down_revision, str) else None,
        doc=rev.doc or "",
        is_head=rev.revision in heads,
    )


# --------------------------------------------------------------------------- offline SQL

_RUNNING = re.compile(r"^-- Running downgrade (\S+) -> (\S*)\s*$", re.MULTILINE)
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
_DROP = re.compile(
    rf"^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<names>{_NAME}(?:\s*,\s*{_NAME})*)", re.I
)
_TRUNCATE = re.compile(
    rf"^TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?(?P<names>{_NAME}(?:\s*\*)?"
    rf"(?:\s*,\s*(?:ONLY\s+)?{_NAME}(?:\s*\*)?)*)",
    re.I,
)
_DELETE = re.compile(rf"^DELETE\s+FROM\s+(?:ONLY\s+)?(?P<names>{_NAME})", re.I)
# ALTER TABLE t [...,] DROP [COLUMN] c: the column's values are lost. Dropping a constraint,
# a default, NOT NULL, an expression or an identity loses no row's data.
_DROP_COLUMN = re.compile(
    rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<names>{_NAME})\s*\*?\s"
    r"(?:.*,\s*)?DROP\s+(?!CONSTRAINT\b|DEFAULT\b|NOT\s+NULL\b|EXPRESSION\b|IDENTITY\b)",
    re.I,
)
_ACTIONS = (
    (_DROP, "drop"),
    (_TRUNCATE, "truncate"),
    (_DELETE, "delete"),
    (_DROP_COLUMN, "drop column"),
)


@dataclass(frozen=True)
class TableAction:
    """A table a statement drops ("drop"), empties ("truncate", "delete") or loses a
    column of ("drop column")."""

    table: str  # as `schema.name` or `name`, unquoted
    action: str
    revision: str | None  # the revision whose downgrade runs the statement


def split_statements(sql: str) -> list[str]:
    """Statements of a SQL script, without comments; quotes and dollar quotes respected."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
            current.append(" ")
            continue
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch and sql.startswith(ch * 2, end):
                    end += 2
                    continue
                if sql[end] == ch:
                    break
                end += 1
            current.append(sql[i : end + 1])
            i = end + 1
            continue
        dollar = re.match(r"\$[A-Za-z_]*\$", sql[i:])
        if dollar:
            tag = dollar.group(0)
            end = sql.find(tag, i + len(tag))
            end = n if end == -1 else end + len(tag)
            current.append(sql[i:end])
            i = end
            continue
        if ch == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def _unquote(name: str) -> str:
    parts = re.findall(_IDENT, name)
    return ".".join(p[1:-1].replace('""', '"') if p.startswith('"') else p.lower() for p in parts)


def _names(text: str) -> list[str]:
    return [
        _unquote(re.sub(r"^\s*ONLY\s+", "", part, flags=re.I).rstrip(" *"))
        for part in text.split(",")
    ]


def _sections(sql: str) -> list[tuple[str | None, str]]:
    """The offline script cut at Alembic's `-- Running downgrade REV -> ...` comments."""
    marks = [(m.start(), m.group(1)) for m in _RUNNING.finditer(sql)]
    ends = [start for start, _ in marks[1:]] + [len(sql)]  # each section ends where the next starts
    head: list[tuple[str | None, str]] = [(None, sql[: marks[0][0]] if marks else sql)]
    return head + [(rev, sql[start : ends[n]]) for n, (start, rev) in enumerate(marks)]


def destructive_tables(sql: str) -> list[TableAction]:
    """Every table the script drops, truncates, deletes from or drops a column of, in order,
    with the revision whose downgrade does it. Alembic's own version table is left out."""
    found: list[TableAction] = []
    for revision, text in _sections(sql):
        for statement in split_statements(text):
            flat = " ".join(statement.split())
            for pattern, action in _ACTIONS:
                match = pattern.match(flat)
                if match:
                    found.extend(
                        TableAction(name, action, revision)
                        for name in _names(match["names"])
                        if name.rpartition(".")[2] != VERSION_TABLE
                    )
                    break
    return found


def sql_by_revision(sql: str) -> dict[str, str]:
    """Each revision's statements of the offline script (BEGIN/COMMIT left out), one a line."""
    return {
        rev: "\n".join(
            s + ";" for s in split_statements(text) if s.upper() not in ("BEGIN", "COMMIT")
        )
        for rev, text in _sections(sql)
        if rev is not None
    }
