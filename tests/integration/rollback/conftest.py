"""Rollback tests: a fresh, migrated database per migration test, and a config for it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
import pytest

from e2ee_ops.dburl import libpq_url
from e2ee_ops.reference.bootstrap import migrate


@pytest.fixture
def migrated(make_database: Callable[[str], str]) -> Callable[[str], str]:
    """Factory: a fresh database upgraded to the given revision; returns its URL."""

    def make(revision: str = "head") -> str:
        url = make_database(f"rb_{uuid.uuid4().hex[:10]}")
        migrate(url, revision)
        return url

    return make


def tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()
    return {r[0] for r in rows}


def current_revision(url: str) -> str | None:
    with psycopg.connect(libpq_url(url)) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else None


def seed_rows(url: str, *, messages: int = 0, devices: int = 0) -> None:
    """Users, and optionally devices and messages in a conversation (metadata only)."""
    with psycopg.connect(libpq_url(url)) as conn:
        a = conn.execute("INSERT INTO users (username) VALUES ('a') RETURNING account_id")
        b = conn.execute("INSERT INTO users (username) VALUES ('b') RETURNING account_id")
        ua, ub = a.fetchone()[0], b.fetchone()[0]  # type: ignore[index]
        for n in range(devices):
            conn.execute(
                "INSERT INTO e2ee_devices (user_id, device_name, identity_key) "
                "VALUES (%s, %s, '\\x00')",
                (ua, f"phone-{n}"),
            )
        if messages:
            conv = conn.execute(
                "INSERT INTO dm_conversations (pair_key, created_by) VALUES (%s, %s) "
                "RETURNING conversation_id",
                (f"{ua}:{ub}", ua),
            ).fetchone()[0]  # type: ignore[index]
            for n in range(messages):
                conn.execute(
                    "INSERT INTO dm_messages (conversation_id, sender_user_id, "
                    "sender_device_id, client_message_id) VALUES (%s, %s, %s, %s)",
                    (conv, ua, str(uuid.uuid4()), f"m{n}"),
                )
