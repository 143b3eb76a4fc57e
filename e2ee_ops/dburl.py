"""Database URL spellings shared by the toolkit and the reference server: libpq for
psycopg, `postgresql+psycopg` for SQLAlchemy/Alembic."""

from __future__ import annotations


def libpq_url(url: str) -> str:
    """The URL psycopg accepts (drops a SQLAlchemy driver suffix)."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy needs to use psycopg 3 rather than psycopg2."""
    return "postgresql+psycopg://" + libpq_url(url)[len("postgresql://") :]


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(libpq_url(url))
    return urlunsplit(parts._replace(path="/" + name))
