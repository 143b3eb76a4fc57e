"""Out-of-band set-up, run beside the server: migrate, create the first admin and users."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from e2ee_ops.dburl import libpq_url, sqlalchemy_url
from e2ee_ops.reference.auth import hash_token, new_token

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def alembic_config(database_url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


@dataclass(frozen=True)
class IssuedAccount:
    account_id: int
    username: str
    token: str


def create_account(
    database_url: str, username: str, *, scope: str = "user", email: str | None = None
) -> IssuedAccount:
    """Create (or reuse) a user and issue a fresh token for it; the token is shown only here."""
    token = new_token()
    with psycopg.connect(libpq_url(database_url), connect_timeout=10) as conn:
        row = conn.execute(
            "INSERT INTO users (username, email) VALUES (%s, %s) "
            "ON CONFLICT (username) DO UPDATE SET username = EXCLUDED.username "
            "RETURNING account_id",
            (username, email),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO api_tokens (user_id, token_hash, scope) VALUES (%s, %s, %s)",
            (row[0], hash_token(token), scope),
        )
    return IssuedAccount(int(row[0]), username, token)
