"""Reference servers of a test's own, with settings over the suite's, and a pair of users
with one device each and a conversation on such a server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from e2ee_ops.dburl import libpq_url
from e2ee_ops.embedded import ReferenceServerProcess
from e2ee_ops.reference.client import ReferenceClient


def own_server(
    database_url: str, redis_url: str, workdir: Path, **env: str
) -> Iterator[ReferenceServerProcess]:
    from tests.conftest import SERVER_ENV

    server = ReferenceServerProcess(
        database_url,
        redis_url,
        workdir / f"server-{uuid.uuid4().hex[:6]}",
        env=dict(SERVER_ENV) | env,
    )
    server.start()
    yield server
    server.stop()


@contextmanager
def pair_on(server: ReferenceServerProcess, admin_token: str) -> Iterator[dict[str, Any]]:
    with ReferenceClient(server.url, admin_token) as admin:
        ids = [admin.create_user(f"{name}-{uuid.uuid4().hex[:6]}") for name in ("al", "bo")]
        tokens = [admin.issue_token(i) for i in ids]
    with (
        ReferenceClient(server.url, tokens[0]) as alice,
        ReferenceClient(server.url, tokens[1]) as bob,
    ):
        yield {
            "alice": alice,
            "bob": bob,
            "bob_id": ids[1],
            "a_dev": alice.register_device("a")["device_id"],
            "b_dev": bob.register_device("b")["device_id"],
            "conv": alice.open_conversation(ids[1]),
        }


def device_value(database_url: str, table: str, column: str, device_id: str) -> Any:
    """One column of a device's row in `table` (keyed by device_id), as the database holds
    it."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute(
            f"SELECT {column} FROM {table} WHERE device_id = %s", (device_id,)
        ).fetchone()
    assert row is not None
    return row[0]


def last_seen(database_url: str, device_id: str) -> Any:
    """The device's `last_seen_at` as the database holds it."""
    return device_value(database_url, "e2ee_devices", "last_seen_at", device_id)
