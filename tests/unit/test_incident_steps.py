"""Which response steps an incident's timeline performed: only outcomes count, and an
action counts only when it succeeded (a check counts whatever it found)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from e2ee_ops.journal import Entry
from e2ee_ops.procedures.incident import Incident, response_steps

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
# The runbook's commands for each step, spelled out here so that the test pins them.
ASSESS_COMMANDS = ("alerts check", "redis check", "doctor", "devices stuck", "abuse top-senders")
CONTAIN_COMMANDS = ("rollback flag", "abuse block")
RESOLVE_COMMANDS = ("redis recover", "rollback flag", "rollback migration", "rollback git")


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
        "acknowledge": None,  # opening is no proof: a post or page that went out is
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
    assert steps["assess"] == "`redis check` at 03:04:10: CRITICAL"
    assert steps["contain"] == "`rollback flag --disable` at 03:04:12: OK"
    assert steps["resolve"] == "`rollback flag --disable` at 03:04:12: OK"


def test_first_proofs_are_kept_and_each_record_names_its_evidence() -> None:
    notify = "incident_notify"
    steps = response_steps(
        incident(
            entry(
                "incident open", notify, 1, event="open", channel="webhook", ok=False, outcome="x"
            ),
            entry(
                "incident open",
                notify,
                2,
                event="open",
                channel="pagerduty",
                ok=True,
                outcome="sent",
            ),
            entry(
                "incident open",
                notify,
                3,
                event="open",
                channel="webhook",
                ok=True,
                outcome="again",
            ),
            entry("incident log", "incident_log", 4, text="not a step", step="bogus"),
            entry("incident log", "incident_log", 5, text="no step"),
            entry("incident log", "incident_log", 6, text="paged by phone", step="acknowledge"),
            entry("incident log", "incident_log", 7, text="saw the graphs", step="assess"),
            entry("incident log", "incident_log", 8, text="again", step="assess"),
            entry("redis check", "outcome", 9, status="WARNING", summary="lag"),
            entry("abuse block 14", "outcome", 10),
            entry("abuse block 15", "outcome", 11, status="OK"),
            entry("postmortem checklist", "postmortem", 12),
            entry("postmortem checklist", "postmortem", 13),
            entry(
                "incident close",
                notify,
                14,
                event="close",
                channel="webhook",
                ok=True,
                outcome="sent",
            ),
            entry(
                "incident close", notify, 15, event="close", channel="webhook", ok=True, outcome="2"
            ),
        )
    )
    assert steps == {
        "acknowledge": "pagerduty at 03:04:02: sent",
        "assess": "logged by ann@box at 03:04:07: saw the graphs",
        "contain": "`abuse block 14` at 03:04:10: ?",
        "resolve": None,
        "communicate": "webhook at 03:04:14: sent",
        "postmortem": "checklist written at 03:04:12 by ann@box",
    }


def test_the_first_check_assesses_with_its_summary() -> None:
    steps = response_steps(
        incident(
            entry("devices stuck", "outcome", 9, status="WARNING", summary="3 stuck"),
            entry("doctor", "outcome", 10, status="OK", summary=""),
        )
    )
    assert steps["assess"] == "`devices stuck` at 03:04:09: WARNING — 3 stuck"


@pytest.mark.parametrize("command", ASSESS_COMMANDS)
def test_each_check_assesses_and_after_a_mitigation_a_passing_one_resolves(command: str) -> None:
    steps = response_steps(
        incident(
            entry(f"{command} --verbose", "outcome", 10, status="OK"),
            entry("abuse block 14", "plan", 11),
            entry(command, "outcome", 12, status="WARNING"),
            entry("abuse unblock 14", "outcome", 13, status="OK"),
            entry(command, "outcome", 14, status="OK"),
            entry("redis check", "outcome", 15, status="OK"),
        )
    )
    assert steps["assess"] == f"`{command} --verbose` at 03:04:10: OK"
    assert steps["contain"] is None
    assert steps["resolve"] == (
        f"`{command}` at 03:04:14: OK (a check that passed after the last mitigation)"
    )


def test_a_passing_check_resolves_nothing_without_a_mitigation_before_it() -> None:
    steps = response_steps(
        incident(
            entry("redis check", "outcome", 10, status="OK"),
            entry("redis recover", "redis_outage", 11),  # a record, not the command's outcome
            entry("redis check", "outcome", 12, status="OK"),
            entry("rollback flag", "plan", 13),
            entry("incident log", "outcome", 14, status="OK"),
        )
    )
    assert steps["resolve"] is None


@pytest.mark.parametrize("command", CONTAIN_COMMANDS)
def test_each_containing_action_contains_when_it_succeeded(command: str) -> None:
    steps = response_steps(
        incident(
            entry(command, "outcome", 10, status="CRITICAL"),
            entry(command, "outcome", 11, status="WARNING"),
            entry(command, "outcome", 12, status="OK"),
        )
    )
    assert steps["contain"] == f"`{command}` at 03:04:11: WARNING"


@pytest.mark.parametrize("command", RESOLVE_COMMANDS)
def test_each_resolving_action_resolves_and_the_first_proof_stays(command: str) -> None:
    steps = response_steps(
        incident(
            entry(command, "outcome", 10, status="CRITICAL"),
            entry(command, "outcome", 11, status="OK"),
            entry(command, "outcome", 12, status="OK"),
        )
    )
    assert steps["resolve"] == f"`{command}` at 03:04:11: OK"
    after_check = response_steps(
        incident(
            entry(command, "plan", 10),
            entry("doctor", "outcome", 11, status="OK"),
            entry(command, "outcome", 12, status="OK"),
        )
    )
    assert after_check["resolve"] == (
        "`doctor` at 03:04:11: OK (a check that passed after the last mitigation)"
    )


def test_a_step_logged_without_text_names_who_logged_it() -> None:
    steps = response_steps(incident(entry("incident log", "incident_log", 20, step="resolve")))
    assert steps["resolve"] == "logged by ann@box at 03:04:20: "


def test_only_an_operator_note_can_claim_a_step() -> None:
    steps = response_steps(
        incident(
            entry("rollback git", "plan", 10, step="resolve"),
            entry("redis recover", "redis_outage", 11, step="resolve"),
        )
    )
    assert steps["resolve"] is None
