"""Start-up time of the console script against the floor its libraries set.

    .venv/bin/python -m bench.startup            # 15 interleaved rounds
    .venv/bin/python -m bench.startup --runs 40
    .venv/bin/python -m bench.startup --devices 0   # without the database rows
    .venv/bin/python -m bench.startup --url postgresql://...   # a database seeded before

Times `python -c "import typer, rich"` (the floor: every Typer + rich CLI pays it),
`e2ee-ops --help`, `e2ee-ops redis check --help` and a command that runs to its end
without a server (`--output json config show`: options coerced, configuration loaded
and validated, output rendered) as fresh processes, and prints each one's median CPU
time and its ratio to the floor's, with the wall-clock medians.

Then, against an embedded PostgreSQL seeded with `--devices` devices (10,000 by default;
`bench/seed_scale.py`), the whole `e2ee-ops --output json devices stuck` beside
`psql -c` of the runbook's query on the same database, interleaved: their ratio is the
one the operator sees (the goal: at most 2). The data is small on purpose: the
query costs a few milliseconds, so what is measured is what the command pays around it
(start-up, imports, connection, rendering); `bench/operator_queries.py` has the 1M rows.
The load average is printed before and after. Prints figures only; nothing is asserted.
To see what a command imports beyond the floor:

    .venv/bin/python -X importtime -m e2ee_ops --help 2>&1 | sort -t'|' -k2 -n | tail
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _script() -> str:
    beside = Path(sys.executable).with_name("e2ee-ops")
    return str(beside) if beside.exists() else (shutil.which("e2ee-ops") or "e2ee-ops")


# Bytecode is cached as an installed package would have it (pip compiles at install;
# PYTHONDONTWRITEBYTECODE would otherwise recompile every module on every run).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"NO_COLOR": "1"}


def _seconds(
    argv: list[str], env: dict[str, str], exit_codes: tuple[int, ...]
) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of `argv`. The wait blocks
    in wait4(): `subprocess.run(timeout=...)` polls with sleeps of up to 50 ms, which
    would round every wall-clock time up to its next poll."""
    began = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if process.returncode not in exit_codes:
        raise SystemExit(f"{' '.join(argv[:6])} exited {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


# The runbook's query ("Stuck Device Remediation"), as an operator would run it in psql.
RUNBOOK_STUCK = (
    "SELECT d.device_id, d.user_id, d.device_name, kb.prekeys_remaining FROM e2ee_devices d "
    "JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id "
    "WHERE kb.prekeys_remaining < 5 AND d.status = 'active'"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--devices", type=int, default=10_000, help="0: no database rows")
    parser.add_argument(
        "--url",
        help="a database that already holds the service's tables and rows (for example one "
        "seeded by bench/seed_scale.py), used as it is instead of an embedded one",
    )
    args = parser.parse_args()
    script = _script()
    print(f"load average before: {_load()}")
    with tempfile.TemporaryDirectory(prefix="e2ee-bench-") as tmp:
        config = Path(tmp) / "e2ee-ops.yaml"
        config.write_text("postgres:\n  url: postgresql://127.0.0.1:9/ops\n")
        cases = {
            'python -c "import typer, rich"': [sys.executable, "-c", "import typer, rich"],
            "e2ee-ops --help": [script, "--help"],
            "e2ee-ops redis check --help": [script, "redis", "check", "--help"],
            "e2ee-ops -o json config show": [script, "--config", str(config)]
            + ["--output", "json", "config", "show"],
        }
        _measure(cases, args.runs)
        if args.devices > 0 or args.url:
            _database_rows(Path(tmp), script, devices=args.devices, runs=args.runs, url=args.url)
    print(f"load average after: {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _database_rows(
    tmp: Path, script: str, *, devices: int, runs: int, url: str | None = None
) -> None:
    """The whole `devices stuck --output json` beside `psql -c`, on one seeded database:
    `url` as it is, else an embedded one seeded with `devices` devices."""
    psql = shutil.which("psql")
    if psql is None:
        print("devices stuck beside psql: no psql on PATH, skipped")
        return
    if url is not None:
        _beside_psql(tmp, script, psql, url, runs=runs)
        return
    import psycopg

    from bench.seed_scale import seed
    from e2ee_ops.dburl import libpq_url
    from e2ee_ops.embedded import EmbeddedPostgres
    from e2ee_ops.reference.bootstrap import migrate

    server = EmbeddedPostgres(tmp / "pg")
    server.start()
    try:
        url = server.create_database("bench")
        migrate(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            seed(conn, devices=devices, messages=10 * devices)
            conn.execute("VACUUM (ANALYZE)")
        _beside_psql(tmp, script, psql, libpq_url(url), runs=runs)
    finally:
        server.stop()


def _beside_psql(tmp: Path, script: str, psql: str, url: str, *, runs: int) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM e2ee_devices").fetchone()
    devices = row[0] if row else 0
    config = tmp / "bench-config.yaml"
    config.write_text(f"postgres:\n  url: {url}\n")
    environ = {"E2EE_OPS_CONFIG": str(config), "HOME": str(tmp)}
    cases = {
        f"psql -c (runbook query, {devices:,} devices)": [
            psql, "-X", "-q", url, "-c", RUNBOOK_STUCK
        ],
        "e2ee-ops -o json devices stuck": [script, "--output", "json", "devices", "stuck"],
    }  # fmt: skip
    print()
    _measure(cases, runs, extra_env=environ, exit_codes=(0, 1, 2))


def _measure(
    cases: dict[str, list[str]],
    runs: int,
    *,
    extra_env: dict[str, str] | None = None,
    exit_codes: tuple[int, ...] = (0,),
) -> None:
    """Time each case `runs` times, interleaved; print median CPU and wall-clock time and
    their ratios to the first case (the baseline)."""
    env = ENV | (extra_env or {})
    for argv in cases.values():  # warm the page cache and .pyc files; the command works
        _seconds(argv, env, exit_codes)
    # Rounds interleave the cases, so a busy machine slows all of them alike. The
    # ratio is of median CPU time (user + system), which waiting for a shared CPU
    # does not inflate; the wall-clock medians are shown beside it.
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            wall, cpu = _seconds(argv, env, exit_codes)
            walls[name].append(wall)
            cpus[name].append(cpu)
    floor = statistics.median(next(iter(cpus.values())))
    floor_wall = statistics.median(next(iter(walls.values())))
    print(f"{'':44} {'CPU':>10} {'ratio':>6} {'wall':>10} {'ratio':>6}")
    for name in cases:
        cpu = statistics.median(cpus[name])
        wall = statistics.median(walls[name])
        print(
            f"{name:44} {cpu * 1000:7.1f} ms {cpu / floor:5.2f}x "
            f"{wall * 1000:7.1f} ms {wall / floor_wall:5.2f}x"
        )


if __name__ == "__main__":
    main()
