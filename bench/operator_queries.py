"""Seed a scale into PostgreSQL and time each operator query beside the runbook's raw one.

    .venv/bin/python -m bench.operator_queries                    # 100k devices, 1M messages
    .venv/bin/python -m bench.operator_queries --devices 1000000 --messages 1000000
    .venv/bin/python -m bench.operator_queries --devices 1000000 --messages 10000000
    .venv/bin/python -m bench.operator_queries --url postgresql://... (an EMPTY database)

Without --url an embedded PostgreSQL (pgserver) is started in a temporary directory.
Each query is timed before and after VACUUM. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.seed_scale import runbook_stuck_params, seed
from e2ee_ops.adapters.abuse_db import TOP_SENDERS_SQL, top_senders_params
from e2ee_ops.adapters.devices_db import STUCK_DEVICES_SQL
from e2ee_ops.adapters.postgres import OpsDatabase
from e2ee_ops.dburl import libpq_url, with_database
from e2ee_ops.reference.bootstrap import migrate

# The runbook's raw queries ("Stuck Device Remediation", "Abuse Burst Response").
RUNBOOK_STUCK = (
    "SELECT d.device_id, d.user_id, d.device_name, kb.prekeys_remaining FROM e2ee_devices d "
    "JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id "
    "WHERE kb.prekeys_remaining < 5 AND d.status = 'active'"
)
RUNBOOK_TOP = (
    "SELECT sender_user_id, COUNT(*) as msg_count FROM dm_messages "
    "WHERE created_at > NOW() - INTERVAL '1 hour' GROUP BY sender_user_id "
    "ORDER BY msg_count DESC LIMIT 10"
)


def _time(conn: Any, sql: str, params: Any = None, runs: int = 5) -> float:
    conn.execute(sql, params).fetchall()  # warm the cache
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        conn.execute(sql, params).fetchall()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def _report(conn: Any, ours_conn: Any, heading: str) -> None:
    """`ours_conn` is a session as the toolkit opens it; `conn` one as psql opens it."""
    print(heading)
    top = top_senders_params(window_seconds=3600, limit=10)
    rows = [
        ("devices stuck --pools-only", STUCK_DEVICES_SQL, runbook_stuck_params(everything=False)),
        ("devices stuck", STUCK_DEVICES_SQL, runbook_stuck_params()),
        ("abuse top-senders 1h", TOP_SENDERS_SQL, top),
    ]
    raw = {"devices": RUNBOOK_STUCK, "abuse": RUNBOOK_TOP}
    print(f"  {'operator query':<28}{'ours ms':>10}{'runbook ms':>12}{'ratio':>8}")
    for name, sql, params in rows:
        # Interleaved: ours and the runbook's alternate, so a busy machine weighs on both.
        ours, theirs = [], []
        for _ in range(3):
            ours.append(_time(ours_conn, sql, params))
            theirs.append(_time(conn, raw[name.split()[0]]))
        o, t = statistics.median(ours), statistics.median(theirs)
        print(f"  {name:<28}{o:>10.1f}{t:>12.1f}{o / t:>8.2f}")


def _commands(url: str, tmp: Path, runs: int = 10) -> None:
    """The whole command beside psql running the runbook's query: wall time of each, the
    two interleaved, median of `runs`."""
    import shutil
    import subprocess
    import sys

    psql = shutil.which("psql")
    if psql is None:
        print("whole command: no psql on PATH, skipped")
        return
    config = tmp / "bench-config.yaml"
    config.write_text(f"postgres:\n  url: {libpq_url(url)}\n")
    script = Path(sys.executable).with_name("e2ee-ops")
    ours_cmd = [str(script), "--config", str(config), "--output", "json", "devices", "stuck"]
    psql_cmd = [psql, "-X", "-q", libpq_url(url), "-c", RUNBOOK_STUCK]
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        for cmd, samples in ((ours_cmd, ours), (psql_cmd, theirs)):
            began = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            samples.append((time.perf_counter() - began) * 1000)
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f"  {'devices stuck --output json':<28}{o:>10.1f}{t:>12.1f}{o / t:>8.2f}  (psql -c)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an empty PostgreSQL database (default: embedded)")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="e2ee-bench-") as tmp:
        server = None
        url = args.url
        if url is None:
            from e2ee_ops.embedded import EmbeddedPostgres

            server = EmbeddedPostgres(Path(tmp) / "pg")
            server.start()
            with psycopg.connect(libpq_url(server.url), autocommit=True) as c:
                c.execute("CREATE DATABASE bench")
            url = with_database(server.url, "bench")
        try:
            migrate(url)
            with (
                psycopg.connect(libpq_url(url), autocommit=True) as conn,
                OpsDatabase(libpq_url(url)).connect() as ours,
            ):
                began = time.perf_counter()
                sizes = seed(conn, devices=args.devices, messages=args.messages)
                print(f"seeded {sizes} in {time.perf_counter() - began:.1f} s")
                # Right after the writes, as the last hour is in production: pages not
                # yet all-visible, so index-only scans still visit the heap.
                _report(conn, ours, "not vacuumed (analyzed only):")
                conn.execute("VACUUM (ANALYZE)")
                _report(conn, ours, "vacuumed:")
                print("whole command (wall ms, median of 10):")
                _commands(url, Path(tmp))
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
