"""Alembic environment of the reference server: plain migrations, no ORM metadata."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from e2ee_ops.dburl import sqlalchemy_url

config = context.config


def _database_url() -> str:
    # Precedence: an explicit sqlalchemy.url set by the caller (the toolkit's Alembic
    # adapter sets it programmatically), then -x url=..., then the environment.
    url = config.get_main_option("sqlalchemy.url") or context.get_x_argument(
        as_dictionary=True
    ).get("url")
    url = url or os.environ.get("E2EE_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set E2EE_DATABASE_URL or pass -x url=...")
    return sqlalchemy_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), literal_binds=True, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
