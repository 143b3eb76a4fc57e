"""Alembic through its Python API: current revision, head, history, offline SQL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2ee_ops.errors import ConfigError, UnreachableError


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    doc: str
    is_head: bool


def _sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Migrations:
    def __init__(self, alembic_ini: Path, database_url: str | None) -> None:
        if not alembic_ini.is_file():
            raise ConfigError(
                f"no Alembic configuration at {alembic_ini}",
                hint="set alembic.config to the service's alembic.ini",
            )
        self.alembic_ini = alembic_ini
        self.database_url = database_url

    def config(self) -> Any:
        from alembic.config import Config

        cfg = Config(str(self.alembic_ini))
        if self.database_url:
            cfg.set_main_option(
                "sqlalchemy.url", _sqlalchemy_url(self.database_url).replace("%", "%%")
            )
        return cfg

    def script(self) -> Any:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.config())

    def heads(self) -> list[str]:
        return list(self.script().get_heads())

    def history(self) -> list[Revision]:
        script = self.script()
        heads = set(script.get_heads())
        return [
            Revision(
                revision=rev.revision,
                down_revision=rev.down_revision if isinstance(rev.down_revision, str) else None,
                doc=rev.doc or "",
                is_head=rev.revision in heads,
            )
            for rev in script.walk_revisions()
        ]

    def current(self) -> list[str]:
        """The database's current revision(s); empty when never migrated."""
        if not self.database_url:
            raise ConfigError("no PostgreSQL URL is configured", hint="set postgres.url")
        from alembic.runtime.migration import MigrationContext
        from sqlalchemy import create_engine
        from sqlalchemy.exc import OperationalError

        engine = create_engine(
            _sqlalchemy_url(self.database_url), connect_args={"connect_timeout": 5}
        )
        try:
            with engine.connect() as conn:
                return list(MigrationContext.configure(conn).get_current_heads())
        except OperationalError as exc:
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise UnreachableError(f"could not read the Alembic revision: {first}") from None
        finally:
            engine.dispose()
