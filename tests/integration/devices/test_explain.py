"""Each operator query uses an index on the big tables, checked with EXPLAIN on a
database seeded at a realistic size (tens of thousands of rows) and ANALYZEd.
The planner is left alone (no enable_seqscan = off): the plan must win on its own."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from bench.seed_scale import runbook_stuck_params, seed
from e2ee_ops.adapters.abuse_db import (
    TOP_BY_MESSAGES_BOUNDED_SQL,
    TOP_BY_MESSAGES_COUNTED_SQL,
    TOP_BY_MESSAGES_SQL,
    TOP_SENDERS_SQL,
    top_senders_params,
)
from e2ee_ops.adapters.devices_db import STUCK_DEVICES_SQL, STUCK_SESSION_SQL
from e2ee_ops.dburl import libpq_url
from e2ee_ops.reference.bootstrap import migrate

BIG_TABLES = {
    "users",
    "e2ee_devices",
    "e2ee_key_bundles",
    "dm_messages",
    "dm_conversations",
    "dm_conversation_members",
    "dm_rate_limit_events",
}


@pytest.fixture(scope="module")
def scaled_db(make_database) -> str:  # type: ignore[no-untyped-def]
    url: str = make_database("explain_scale")
    migrate(url)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        seed(conn, devices=30_000, messages=200_000)
    return url


def _scans(node: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    if "Relation Name" in node or node["Node Type"].startswith("Gather"):
        found.append((node["Node Type"], node.get("Relation Name", "")))
    for child in node.get("Plans", []):
        found.extend(_scans(child))
    return found


def _plan(
    url: str, sql: str, params: dict[str, Any], session: tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    with psycopg.connect(libpq_url(url)) as conn:
        for setting in session:
            conn.execute(setting)
        row = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return _scans(plan[0]["Plan"])


def _assert_indexed(scans: list[tuple[str, str]]) -> None:
    seq = [table for kind, table in scans if kind == "Seq Scan" and table in BIG_TABLES]
    assert not seq, f"sequential scans on {seq}: {scans}"
    # A bitmap heap scan is fed by its index (an "Index Name", not a "Relation Name").
    assert any("Index" in kind or kind == "Bitmap Heap Scan" for kind, _ in scans), scans


def test_stuck_devices_query_uses_indexes(scaled_db: str) -> None:
    params = runbook_stuck_params()
    _assert_indexed(_plan(scaled_db, STUCK_DEVICES_SQL, params, (STUCK_SESSION_SQL,)))


def test_stuck_devices_query_starts_no_parallel_workers(scaled_db: str) -> None:
    # Parallel workers made free: the planner would gather the totals in parallel.
    free = ("SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0")
    params = runbook_stuck_params()
    assert any(k.startswith("Gather") for k, _ in _plan(scaled_db, STUCK_DEVICES_SQL, params, free))
    scans = _plan(scaled_db, STUCK_DEVICES_SQL, params, (*free, STUCK_SESSION_SQL))
    assert [k for k, _ in scans if k.startswith("Gather")] == []


@pytest.mark.parametrize(
    "sql",
    [
        TOP_BY_MESSAGES_BOUNDED_SQL,
        TOP_BY_MESSAGES_SQL,
        TOP_BY_MESSAGES_COUNTED_SQL,
        TOP_SENDERS_SQL,
    ],
)
def test_top_senders_queries_use_indexes(scaled_db: str, sql: str) -> None:
    params = top_senders_params(window_seconds=3600, limit=10, by_messages=[1, 2, 3])
    _assert_indexed(_plan(scaled_db, sql, params))


def test_top_senders_reads_each_buckets_head_from_the_ranked_index(scaled_db: str) -> None:
    params = top_senders_params(window_seconds=3600, limit=10)
    scans = _plan(scaled_db, TOP_BY_MESSAGES_BOUNDED_SQL, params)
    assert ("Index Only Scan", "dm_sender_counts") in scans
