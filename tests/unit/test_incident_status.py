"""`incident status`: each response step done or open with its proof, the timeline as the
operator reads it (one line per journal entry, metadata only) and its JSON data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2ee_ops.journal import Entry
from e2ee_ops.procedures.incident import Channels, describe_entry, incident_status, open_incident
from e2ee_ops.status import Finding, Report, Status
from tests.support.journal import ACTOR, T0, Clock, fixed_journal


@pytest.mark.parametrize(
    ("kind", "data", "line"),
    [
        ("incident_open", {"severity": "P1", "title": "down"}, "opened P1: down"),
        ("incident_open", {"severity": "P2", "title": "d", "drill": True}, "opened P2: d [DRILL]"),
        ("incident_close", {"resolution": "restarted"}, "closed: restarted"),
        ("incident_log", {"text": "called Bob", "step": "assess"}, "[assess] called Bob"),
        ("incident_log", {"text": "called Bob", "step": None}, "called Bob"),
        ("incident_log", {}, ""),
        (
            "incident_notify",
            {"channel": "webhook", "outcome": "channel sent"},
            "webhook: channel sent",
        ),
        ("plan", {"steps": [{}, {}]}, "plan of 2 step(s)"),
        ("plan", {}, "plan of 0 step(s)"),
        ("plan", {"steps": "three"}, "plan"),
        ("outcome", {"status": "WARNING"}, "outcome WARNING"),
        ("outcome", {}, "outcome ?"),
        (
            "redis_outage",
            {
                "duration_seconds": 42.5,
                "start_source": "log",
                "redis_back_source": "ping",
                "stored": 7,
                "deliverable_not_delivered": 1,
                "waiting_offline": 2,
            },
            "Redis outage of 42.5 s (start: log; end: ping); 7 stored, 1 deliverable but "
            "not delivered, 2 waiting for offline devices",
        ),
        (
            "redis_outage",
            {},
            "Redis outage of unknown duration (start: ?; end: ?); None stored, None deliverable "
            "but not delivered, None waiting for offline devices",
        ),
        ("note", {"text": "x"}, "note"),
    ],
)
def test_each_journal_entry_is_one_timeline_line(
    kind: str, data: dict[str, Any], line: str
) -> None:
    assert describe_entry(Entry(T0, ACTOR, "cmd", kind, data, "INC-1")) == line


def test_no_incident_is_a_plain_answer(tmp_path: Path) -> None:
    assert incident_status(journal=fixed_journal(tmp_path, Clock())) == Report(
        title="incident status", summary="no incident in the journal", data={"open": None}
    )


def test_status_lists_open_steps_and_the_timeline_without_failing_on_history(
    tmp_path: Path,
) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    iid = open_incident(
        journal=journal, severity="P1", title="Redis down", drill=False, channels=Channels(), now=T0
    ).data["incident_id"]
    clock.at(15)
    journal.append("outcome", command="redis check", data={"status": "CRITICAL"})
    clock.at(20)
    journal.append("incident_log", command="incident log", data={"text": "seen", "step": "contain"})
    report = incident_status(journal=journal)
    proof = "logged by ann@box at 03:04:25: seen"
    assert report.title == f"incident {iid} P1: Redis down"
    assert report.findings == [
        Finding("step: acknowledge", Status.WARNING, "open", "acknowledge is still to do"),
        Finding("step: assess", Status.OK, "done", "`redis check` at 03:04:20: CRITICAL"),
        Finding("step: contain", Status.OK, "done", proof),
        Finding("step: resolve", Status.WARNING, "open", "resolve is still to do"),
        Finding("step: communicate", Status.WARNING, "open", "communicate is still to do"),
        Finding("step: postmortem", Status.WARNING, "open", "postmortem is still to do"),
        Finding(
            "03:04:05 incident open", Status.OK, "incident_open", "opened P1: Redis down (ann@box)"
        ),
        Finding(
            "03:04:20 redis check", Status.OK, "outcome CRITICAL", "outcome CRITICAL (ann@box)"
        ),
        Finding("03:04:25 incident log", Status.OK, "incident_log", "[contain] seen (ann@box)"),
    ]
    assert report.status is Status.WARNING
    assert report.summary == (
        f"{iid} P1: Redis down is open; steps still open: acknowledge, resolve, communicate, "
        "postmortem"
    )
    assert report.data == {
        "incident_id": iid,
        "severity": "P1",
        "title": "Redis down",
        "drill": False,
        "open": True,
        "steps": {
            "acknowledge": None,
            "assess": "`redis check` at 03:04:20: CRITICAL",
            "contain": proof,
            "resolve": None,
            "communicate": None,
            "postmortem": None,
        },
        "timeline": [
            {
                "ts": "2026-01-02T03:04:05+00:00",
                "actor": ACTOR,
                "command": "incident open",
                "kind": "incident_open",
                "text": "opened P1: Redis down",
            },
            {
                "ts": "2026-01-02T03:04:20+00:00",
                "actor": ACTOR,
                "command": "redis check",
                "kind": "outcome",
                "text": "outcome CRITICAL",
            },
            {
                "ts": "2026-01-02T03:04:25+00:00",
                "actor": ACTOR,
                "command": "incident log",
                "kind": "incident_log",
                "text": "[contain] seen",
            },
        ],
    }


def test_a_closed_incident_with_every_step_done_is_ok(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    iid = open_incident(
        journal=journal, severity="P3", title="t", drill=True, channels=Channels(), now=T0
    ).data["incident_id"]
    for step in ("acknowledge", "assess", "contain", "resolve", "communicate", "postmortem"):
        journal.append("incident_log", command="incident log", data={"text": step, "step": step})
    journal.append("incident_close", command="incident close", incident_id=iid)
    open_incident(
        journal=journal,
        severity="P1",
        title="next",
        drill=False,
        channels=Channels(),
        now=clock.at(100),
    )
    report = incident_status(journal=journal, incident_id=iid)
    assert report.status is Status.OK
    assert report.summary == f"[DRILL] {iid} P3: t is closed; every response step is done"
    assert (report.data["open"], report.data["drill"]) == (False, True)


def test_only_an_outcome_shows_a_status_in_the_timeline(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    open_incident(
        journal=journal, severity="P2", title="t", drill=False, channels=Channels(), now=T0
    )
    journal.append("plan", command="rollback git", data={"steps": ["push"], "status": "CRITICAL"})
    assert incident_status(journal=journal).findings[-1] == Finding(
        "03:04:05 rollback git", Status.OK, "plan", "plan of 1 step(s) (ann@box)"
    )
