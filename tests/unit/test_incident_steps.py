"""Which response steps an incident's timeline performed: only outcomes count, and an
action counts only when it succeeded (a check counts whatever it found)."""

from __future__ import annotations

from datetime import UTC, datetime

from e2ee_ops.journal import Entry
from e2ee_ops.procedures.incident import Incident, response_steps

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def entry(command: str, kind: str, second: int, **data: object) -> Entry:
    return Entry(T0.replace(second=second), "ann@box", command, kind, dict(data), "INC-1")


def incident(*entries: Entry) -> Incident:
    opened = entry("incident open", "incident_open", 0)
    return Incident("INC-1", "P1", "Redis down", False, opened, entries=list(entries))


def test_plans_perform_no_step() -> None:
    steps = response_steps(
        incident(entry("rollback flag", "plan", 10), entry("alerts check", "plan", 11))
    )
    assert steps == {
        "acknowledge": "opened by ann@box",
        "assess": None,
        "contain": None,
        "resolve": None,
        "communicate": None,
        "postmortem": None,
    }


def test_a_critical_check_assesses_but_a_failed_action_contains_nothing() -> None:
    steps = response_steps(
        incident(
            entry("redis check", "outcome", 10, status="CRITICAL"),
            entry("abuse block", "outcome", 11, status="CRITICAL"),
            entry("rollback flag --disable", "outcome", 12, status="OK"),
        )
    )
    assert steps["assess"] == "`redis check` at 03:04:10"
    assert steps["contain"] == "`rollback flag --disable` at 03:04:12"
    assert steps["resolve"] == "`rollback flag --disable` at 03:04:12"
