"""Seed a scale into PostgreSQL and time each operator query beside the runbook's raw one.

    .venv/bin/python -m bench.operator_queries                    # 100k devices, 1M messages
    .venv/bin/python -m bench.operator_queries --devices 1000000 --messages 1000000
    .venv/bin/python -m bench.operator_queries --devices 1000000 --messages 10000000
    .venv/bin/python -m bench.operator_queries --url postgresql://... (an EMPTY database)

Without --url an embedded PostgreSQL (pgserver) is started in a temporary directory.
Each query is timed before VACUUM (autovacuum held off the seeded tables) and after.
Wall time is the client's; CPU time is the backend's own (from /proc, so only when the
server runs on this machine), which a busy machine inflates far less.
`top-senders 1h: by messages` answers the runbook's question; `whole` adds what the
command also shows (fan-out, conversations opened, 429s, and the senders that lead
those). Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.seed_scale import runbook_stuck_params, seed
from e2ee_ops.adapters.abuse_db import MESSAGES, sender_activity, top_by_messages
from e2ee_ops.adapters.devices_db import STUCK_DEVICES_SQL, STUCK_SESSION_SQL
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
# Kept out of autovacuum's reach until the not-vacuumed figures are taken.
SEEDED_TABLES = (
    "users",
    "e2ee_devices",
    "e2ee_key_bundles",
    "dm_conversations",
    "dm_conversation_members",
    "dm_messages",
    "dm_sender_counts",
    "dm_rate_limit_events",
)
TICK = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _backend_cpu(conn: Any) -> float | None:
    """CPU seconds the session's backend has used so far (None: not on this machine)."""
    try:
        fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * TICK


def _time(conn: Any, run: Callable[[], object], least_seconds: float = 0.3) -> tuple[float, float]:
    """Median wall ms of `run` and the backend's CPU ms per run (nan when unreadable),
    over at least 5 runs and `least_seconds`, after one warm-up run."""
    run()
    samples: list[float] = []
    cpu_before = _backend_cpu(conn)
    began = time.perf_counter()
    while len(samples) < 5 or time.perf_counter() - began < least_seconds:
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    cpu_after = _backend_cpu(conn)
    cpu = math.nan
    if cpu_before is not None and cpu_after is not None:
        cpu = (cpu_after - cpu_before) * 1000 / len(samples)
    return statistics.median(samples), cpu


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _visible(conn: Any) -> str:
    rows = conn.execute(
        "SELECT relname, relallvisible::float8 / greatest(relpages, 1) FROM pg_class "
        "WHERE relname IN ('e2ee_key_bundles', 'e2ee_devices', 'dm_messages', "
        "'dm_sender_counts') ORDER BY relname"
    ).fetchall()
    return ", ".join(f"{name} {share:.0%}" for name, share in rows)


def _report(conn: Any, ours_conn: Any, heading: str) -> None:
    """`ours_conn` is a session as the toolkit opens it; `conn` one as psql opens it."""
    print(f"{heading} ({_load()}; pages all-visible: {_visible(conn)})")
    top = top_by_messages(ours_conn, window_seconds=3600, limit=10)
    source = "dm_messages" if top.source == MESSAGES else "the rollup"
    counted = f"every sender counted, from {source}"
    print("  top by messages: " + ("proved from the buckets' heads" if top.bounded else counted))

    def stuck(everything: bool) -> Callable[[], object]:
        params = runbook_stuck_params(everything=everything)

        def run() -> object:
            ours_conn.execute(STUCK_SESSION_SQL)
            return ours_conn.execute(STUCK_DEVICES_SQL, params).fetchall()

        return run

    def abuse(whole: bool) -> Callable[[], object]:
        ask = sender_activity if whole else top_by_messages
        return lambda: ask(ours_conn, window_seconds=3600, limit=10)

    def raw(sql: str) -> Callable[[], object]:
        return lambda: conn.execute(sql).fetchall()

    rows = [
        ("devices stuck --pools-only", stuck(False), RUNBOOK_STUCK),
        ("devices stuck", stuck(True), RUNBOOK_STUCK),
        ("top-senders 1h: by messages", abuse(False), RUNBOOK_TOP),
        ("top-senders 1h: whole", abuse(True), RUNBOOK_TOP),
    ]
    print(
        f"  {'operator query':<30}{'ours ms':>9}{'runbook ms':>12}{'ratio':>7}"
        f"{'ours CPU':>10}{'runbook CPU':>13}{'ratio':>7}"
    )
    for name, ours_run, theirs_sql in rows:
        # Interleaved: ours and the runbook's alternate, so a busy machine weighs on both.
        ours, theirs = [], []
        for _ in range(3):
            ours.append(_time(ours_conn, ours_run))
            theirs.append(_time(conn, raw(theirs_sql)))
        o, t = (statistics.median(w for w, _ in ours), statistics.median(w for w, _ in theirs))
        oc, tc = (statistics.median(c for _, c in ours), statistics.median(c for _, c in theirs))
        print(f"  {name:<30}{o:>9.2f}{t:>12.2f}{o / t:>7.2f}{oc:>10.2f}{tc:>13.2f}{oc / tc:>7.2f}")


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
    parser.add_argument(
        "--skew",
        type=float,
        default=3.0,
        help="conversations drawn as random()^SKEW: 3 a few busy senders over a long "
        "tail, 1 flat traffic (no sender stands out)",
    )
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
                for table in SEEDED_TABLES:
                    conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
                began = time.perf_counter()
                sizes = seed(conn, devices=args.devices, messages=args.messages, skew=args.skew)
                print(f"seeded {sizes} in {time.perf_counter() - began:.1f} s")
                # Right after the writes, as the last hour is in production: pages not
                # yet all-visible, so index-only scans still visit the heap.
                _report(conn, ours, "not vacuumed (analyzed only):")
                for table in SEEDED_TABLES:
                    conn.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
                conn.execute("VACUUM (ANALYZE)")
                _report(conn, ours, "vacuumed:")
                print("whole command (wall ms, median of 10):")
                _commands(url, Path(tmp))
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
