"""Each instance's own record of relay outages: when it lost and regained Redis, kept
in PostgreSQL across a restart, reported in /dm/metrics and as a gauge in /metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from e2ee_ops.dburl import libpq_url
from e2ee_ops.embedded import ReferenceServerProcess


@pytest.fixture
def own_server(
    database_url: str, redis_url: str, workdir: Path
) -> Iterator[ReferenceServerProcess]:
    name = f"record-{uuid.uuid4().hex[:6]}"
    server = ReferenceServerProcess(
        database_url,
        redis_url,
        workdir / name,
        env={
            "E2EE_HEARTBEAT_SECONDS": "0.3",
            "E2EE_METRICS_CACHE_SECONDS": "0",
            "E2EE_INSTANCE_ID": name,
        },
    )
    server.start()
    yield server
    server.stop()


def _metrics(server: ReferenceServerProcess, token: str) -> dict[str, Any]:
    answer = httpx.get(server.url + "/dm/metrics", headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def _gauge(server: ReferenceServerProcess) -> float:
    text = httpx.get(server.url + "/metrics").text
    line = next(ln for ln in text.splitlines() if ln.startswith("e2ee_redis_unavailable_seconds "))
    return float(line.split()[1])


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_the_outage_start_survives_a_restart_and_the_window_is_recorded(
    own_server, controllable_redis, admin_token, database_url
) -> None:  # type: ignore[no-untyped-def]
    instance = _metrics(own_server, admin_token)["instance_id"]
    assert _metrics(own_server, admin_token)["redis_unavailable_since"] is None
    assert _gauge(own_server) == 0.0

    controllable_redis.stop()
    assert _wait(lambda: _metrics(own_server, admin_token)["redis_unavailable_since"], 10)
    since = _metrics(own_server, admin_token)["redis_unavailable_since"]
    assert _wait(lambda: _gauge(own_server) > 0, 10)

    # A restart during the outage keeps its start: the instance reads its own record.
    own_server.restart()
    assert _metrics(own_server, admin_token)["instance_id"] == instance
    assert _metrics(own_server, admin_token)["redis_unavailable_since"] == since

    controllable_redis.start()
    assert _wait(lambda: _metrics(own_server, admin_token)["redis_status"] == "ok", 15)
    got = _metrics(own_server, admin_token)
    assert got["redis_unavailable_since"] is None
    last = got["last_redis_outage"]
    assert last["lost_at"] == since
    lost_at = datetime.fromisoformat(last["lost_at"])
    regained_at = datetime.fromisoformat(last["regained_at"])
    assert last["duration_seconds"] == round((regained_at - lost_at).total_seconds(), 3) > 0
    assert _gauge(own_server) == 0.0
    fleet = {row["instance_id"]: row for row in got["redis_outages_by_instance"]}
    assert fleet[instance]["last_redis_outage"] == last
    assert fleet[instance]["redis_unavailable_since"] is None

    with psycopg.connect(libpq_url(database_url)) as conn:
        rows = conn.execute(
            "SELECT lost_at, regained_at FROM relay_outages WHERE instance_id = %s", (instance,)
        ).fetchall()
    assert rows == [(lost_at, regained_at)]  # one outage, one row, despite the restart


def test_no_outage_no_record(own_server, admin_token, database_url) -> None:  # type: ignore[no-untyped-def]
    got = _metrics(own_server, admin_token)
    assert got["redis_status"] == "ok"
    assert got["redis_unavailable_since"] is None and got["last_redis_outage"] is None
    with psycopg.connect(libpq_url(database_url)) as conn:
        count = conn.execute(
            "SELECT count(*) FROM relay_outages WHERE instance_id = %s", (got["instance_id"],)
        ).fetchone()
    assert count == (0,)
