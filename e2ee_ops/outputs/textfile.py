"""Prometheus text format for node_exporter's textfile collector (cron runs).

    e2ee_ops_check_status{check="redis check"} 0      # 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    e2ee_ops_check_value{check="redis check",finding="redis ping"} 0.42
    e2ee_ops_last_run_timestamp_seconds{check="redis check"} 1.7e9

prometheus_client writes the file (to a temporary name beside it, then renames
it over the old one), so the collector never reads half a file.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from e2ee_ops.status import Report, Status

__all__ = ["write_textfile"]


def write_textfile(
    path: Path, *, command: str, result: object | None, status: Status, finished: datetime
) -> None:
    """Write the run's status, its numeric findings and its time to `path`, atomically."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    check = command or "e2ee-ops"
    registry = CollectorRegistry()
    Gauge(
        "e2ee_ops_check_status",
        "Outcome of the last e2ee-ops check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        ["check"],
        registry=registry,
    ).labels(check=check).set(int(status.exit_code))
    values = Gauge(
        "e2ee_ops_check_value",
        "Numeric value of each finding of the last e2ee-ops check.",
        ["check", "finding"],
        registry=registry,
    )
    if isinstance(result, Report):
        for f in result.findings:
            if isinstance(f.value, int | float) and not isinstance(f.value, bool):
                values.labels(check=check, finding=f.name).set(f.value)
    Gauge(
        "e2ee_ops_last_run_timestamp_seconds",
        "When the last e2ee-ops check finished (Unix time).",
        ["check"],
        registry=registry,
    ).labels(check=check).set(finished.timestamp())
    write_to_textfile(str(path), registry)
