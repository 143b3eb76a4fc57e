"""The post-mortem checklist: its kind chosen from the timeline, each item ticked only on a
command's evidence, the figures it names (devices remediated, users blocked, outage
duration, stored vs delivered) and the Markdown the operator edits."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from e2ee_ops.adapters.postgres import DeliveryWindow, OpsDatabase
from e2ee_ops.errors import ServiceError, UsageError
from e2ee_ops.journal import Entry, Journal
from e2ee_ops.outputs.mermaid import Event
from e2ee_ops.procedures.incident import Channels, open_incident
from e2ee_ops.procedures.postmortem import (
    MANUAL,
    Item,
    Remediated,
    build_checklist,
    devices_remediated,
    timeline_events,
    users_blocked,
)
from tests.support.journal import ACTOR, T0, Clock, fixed_journal


class Deliveries:
    """Stands in for the database: the stored and delivered counts of any window."""

    def __init__(self, stored: int, delivered: int, *, fails: bool = False) -> None:
        self.stored, self.delivered, self.fails = stored, delivered, fails
        self.asked: list[tuple[datetime, datetime]] = []

    def delivery_window(self, start: datetime, end: datetime) -> DeliveryWindow:
        self.asked.append((start, end))
        if self.fails:
            raise ServiceError("PostgreSQL failed")
        return DeliveryWindow(start, end, self.stored, self.delivered, self.stored, 0, [])

    def db(self) -> OpsDatabase:
        return cast(OpsDatabase, self)


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def run(command: str, second: int, kind: str = "outcome", **data: Any) -> Entry:
    return Entry(T0 + timedelta(seconds=second), ACTOR, command, kind, data, "INC-1")


OUTAGE: dict[str, Any] = {
    "start": at(12),
    "redis_back_at": at(25),
    "end": at(28),
    "start_source": "redis log",
    "redis_back_source": "PING",
    "duration_seconds": 13.0,
    "stored": 4,
    "delivered": 3,
    "stored_not_delivered": 1,
    "all_delivered": False,
    "undelivered": [{"message_id": 41}],
}


def _incident(
    journal: Journal, clock: Clock, *entries: tuple[int, str, str, dict[str, Any]]
) -> str:
    iid = open_incident(
        journal=journal,
        severity="P1",
        title="Redis down",
        drill=False,
        channels=Channels(webhook=lambda _text: None),
        now=clock.now,
    ).data["incident_id"]
    for second, command, kind, data in entries:
        clock.at(second)
        journal.append(kind, command=command, data=data)
    return str(iid)


def test_a_redis_outage_checklist_names_every_figure_and_its_evidence(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    iid = _incident(
        journal,
        clock,
        (10, "devices stuck", "outcome", {"status": "WARNING", "stuck_ids": [3, 1, 2]}),
        (20, "redis recover --execute", "plan", {"steps": [{}, {}]}),
        (30, "redis recover --execute", "redis_outage", OUTAGE),
        (31, "redis recover --execute", "outcome", {"status": "OK", "summary": "recovered"}),
        (40, "devices stuck", "outcome", {"status": "OK", "stuck_ids": [2], "stuck_total": 1}),
        (45, "abuse block 14", "outcome", {"status": "OK", "account_id": 14}),
        (50, "incident close", "incident_close", {"resolution": "restarted | redis"}),
    )
    clock.at(60)
    db = Deliveries(4, 4)
    checklist = build_checklist(journal=journal, db=db.db())
    assert db.asked == [(T0 + timedelta(seconds=12), T0 + timedelta(seconds=28))]
    assert (checklist.kind, checklist.incident_id) == ("redis-outage", iid)
    assert checklist.items == [
        Item(
            "Document outage duration",
            True,
            f"13.0 s, from {at(12)} (redis log) to {at(25)} (PING)",
        ),
        Item(
            "Count messages stored but not delivered",
            True,
            "4 stored during the outage window, 1 not delivered at recovery",
        ),
        Item(
            "Verify all messages eventually delivered",
            True,
            "1 were pending at recovery; PostgreSQL now shows all 4 delivered",
        ),
        Item("Review Redis logs for root cause", False, MANUAL),
        Item("Update runbook if new issues discovered", False, MANUAL),
    ]
    assert checklist.measured == {
        "outage": {
            "start": at(12),
            "end": at(28),
            "duration_seconds": 13.0,
            "stored": 4,
            "stored_not_delivered": 1,
        },
        "all_delivered_at_recovery": False,
        "delivered_now": {"stored": 4, "delivered": 4},
        "devices_remediated": 2,
        "users_blocked": 1,
    }
    written = list(journal.entries())[-1]
    assert written == Entry(
        clock.now,
        ACTOR,
        "postmortem checklist",
        "postmortem",
        {"kind": "redis-outage", "unchecked": 2},
        iid,
    )
    assert checklist.markdown == "\n".join(
        [
            "# Post-mortem: Redis outage",
            "",
            f"- Incident: {iid} (P1) — Redis down",
            "- Opened: 2026-01-02 03:04:05 UTC by ann@box",
            "- Closed: 2026-01-02 03:04:55 UTC — restarted | redis",
            "- Devices remediated: 2 device(s) (3, 1): stuck at `devices stuck` (03:04:15, 3 "
            "device(s)) and no longer at `devices stuck` (03:04:45)",
            "- Users blocked: 1 user(s) (14), from `abuse block`",
            "",
            "## Checklist",
            "",
            f"- [x] Document outage duration — 13.0 s, from {at(12)} (redis log) "
            f"to {at(25)} (PING)",
            "- [x] Count messages stored but not delivered — 4 stored during the outage window, "
            "1 not delivered at recovery",
            "- [x] Verify all messages eventually delivered — 1 were pending at recovery; "
            "PostgreSQL now shows all 4 delivered",
            f"- [ ] Review Redis logs for root cause — {MANUAL}",
            f"- [ ] Update runbook if new issues discovered — {MANUAL}",
            "",
            "## Response steps",
            "",
            "- [x] acknowledge — webhook at 03:04:05: channel sent",
            "- [x] assess — `devices stuck` at 03:04:15: WARNING",
            "- [x] contain — `abuse block 14` at 03:04:50: OK",
            "- [x] resolve — `redis recover --execute` at 03:04:36: OK — recovered",
            "- [ ] communicate",
            "- [x] postmortem — checklist written at 03:05:05 by ann@box",
            "",
            "## Timeline",
            "",
            "```mermaid",
            "gantt",
            f"    title Incident {iid} (P1), UTC",
            "    dateFormat YYYY-MM-DD HH:mm:ss",
            "    axisFormat %H:%M",
            "    section Incident",
            "    opened P1 by ann@box :milestone, 2026-01-02 03:04:05, 0s",
            "    webhook channel sent :milestone, 2026-01-02 03:04:05, 0s",
            "    closed, restarted | redis :done, milestone, 2026-01-02 03:04:55, 0s",
            "    section Commands",
            "    devices stuck WARNING :active, milestone, 2026-01-02 03:04:15, 0s",
            "    redis recover --execute planned :milestone, 2026-01-02 03:04:25, 0s",
            "    redis recover --execute OK :done, milestone, 2026-01-02 03:04:36, 0s",
            "    devices stuck OK :done, milestone, 2026-01-02 03:04:45, 0s",
            "    abuse block 14 OK :done, milestone, 2026-01-02 03:04:50, 0s",
            "    postmortem checklist :milestone, 2026-01-02 03:05:05, 0s",
            "    section Outage",
            "    Redis down, start from redis log, end from PING "
            ":crit, 2026-01-02 03:04:17, 2026-01-02 03:04:30",
            "    recovery verified (canary over SSE, stored vs delivered) "
            ":done, 2026-01-02 03:04:30, 2026-01-02 03:04:33",
            "```",
            "",
            "| Time (UTC) | Actor | Command | What |",
            "| --- | --- | --- | --- |",
            "| 2026-01-02 03:04:05 | ann@box | incident open | opened P1: Redis down |",
            "| 2026-01-02 03:04:05 | ann@box | incident open | webhook: channel sent |",
            "| 2026-01-02 03:04:15 | ann@box | devices stuck | outcome WARNING |",
            "| 2026-01-02 03:04:25 | ann@box | redis recover --execute | plan of 2 step(s) |",
            "| 2026-01-02 03:04:35 | ann@box | redis recover --execute | Redis outage of 13.0 s "
            "(start: redis log; end: PING); 4 stored, None deliverable but not delivered, "
            "None waiting for offline devices |",
            "| 2026-01-02 03:04:36 | ann@box | redis recover --execute | outcome OK |",
            "| 2026-01-02 03:04:45 | ann@box | devices stuck | outcome OK |",
            "| 2026-01-02 03:04:50 | ann@box | abuse block 14 | outcome OK |",
            "| 2026-01-02 03:04:55 | ann@box | incident close | closed: restarted \\| redis |",
            "| 2026-01-02 03:05:05 | ann@box | postmortem checklist | postmortem |",
            "",
        ]
    )


def test_without_an_incident_the_last_outage_is_covered_alone(tmp_path: Path) -> None:
    journal = fixed_journal(tmp_path, Clock())
    with pytest.raises(UsageError) as nothing:
        build_checklist(journal=journal)
    assert (nothing.value.message, nothing.value.hint) == (
        f"no incident and no recorded outage in the journal {journal.path}",
        "open incidents with `e2ee-ops incident open`",
    )
    journal.append("redis_outage", command="redis recover", data={"stored": 9})
    journal.append("outcome", command="devices stuck", data={"stuck_ids": [1]})
    journal.append("redis_outage", command="redis recover", data={**OUTAGE, "all_delivered": True})
    journal.append("outcome", command="doctor", data={"status": "OK"})
    checklist = build_checklist(journal=journal)
    assert (checklist.kind, checklist.incident_id) == ("redis-outage", None)
    assert checklist.items[2] == Item(
        "Verify all messages eventually delivered",
        True,
        f"all 4 delivered by the end of recovery ({at(28)})",
    )
    assert checklist.measured == {
        "outage": {
            "start": at(12),
            "end": at(28),
            "duration_seconds": 13.0,
            "stored": 4,
            "stored_not_delivered": 1,
        },
        "all_delivered_at_recovery": True,
        "devices_remediated": None,
        "users_blocked": None,
    }
    assert [e.kind for e in journal.entries()] == [
        "redis_outage",
        "outcome",
        "redis_outage",
        "outcome",
    ]
    assert checklist.markdown.startswith(
        "# Post-mortem: Redis outage\n\n"
        "- Incident: none was opened; this covers the last recorded Redis outage\n"
        "- Devices remediated: not measured (no `devices stuck` outcome in the timeline)\n"
        "- Users blocked: not measured (no abuse block outcome in the timeline)\n\n"
        "## Checklist\n\n"
    )
    assert "## Response steps" not in checklist.markdown
    assert "    title Redis outage, UTC\n" in checklist.markdown
    assert checklist.markdown.split("| --- | --- | --- | --- |\n")[1] == (
        "| 2026-01-02 03:04:05 | ann@box | redis recover | Redis outage of 13.0 s (start: redis "
        "log; end: PING); 4 stored, None deliverable but not delivered, None waiting for "
        "offline devices |\n"
    )


@pytest.mark.parametrize(
    ("missing", "duration_note"),
    [
        ("start", "unknown (no evidence dates the start), from unknown (?) to unknown (?)"),
        ("end", f"unknown (no evidence dates the end), from {at(12)} (?) to unknown (?)"),
    ],
)
def test_an_outage_without_evidence_of_its_times_is_unknown_and_unticked(
    tmp_path: Path, missing: str, duration_note: str
) -> None:
    journal = fixed_journal(tmp_path, Clock())
    outage = {"start": at(12), "end": at(28), "stored_not_delivered": 2}
    del outage[missing]
    journal.append("redis_outage", command="redis recover", data=outage)
    db = Deliveries(4, 4)
    checklist = build_checklist(journal=journal, db=db.db())
    assert db.asked == []
    assert checklist.items[:3] == [
        Item("Document outage duration", False, duration_note),
        Item(
            "Count messages stored but not delivered",
            False,
            "None stored during the outage window, 2 not delivered at recovery",
        ),
        Item(
            "Verify all messages eventually delivered", False, "2 not delivered at recovery (ids ?)"
        ),
    ]
    assert "delivered_now" not in checklist.measured


@pytest.mark.parametrize(
    ("db", "note"),
    [
        (None, "12 not delivered at recovery (ids 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"),
        (
            Deliveries(14, 13),
            "12 not delivered at recovery (ids 0, 1, 2, 3, 4, 5, 6, 7, 8, 9); "
            "PostgreSQL now shows 13 of 14 delivered",
        ),
        (
            Deliveries(14, 14, fails=True),
            "12 not delivered at recovery (ids 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)",
        ),
    ],
)
def test_undelivered_messages_stay_unticked_with_their_ids(
    tmp_path: Path, db: Deliveries | None, note: str
) -> None:
    journal = fixed_journal(tmp_path, Clock())
    outage = {
        **OUTAGE,
        "stored_not_delivered": 12,
        "undelivered": [{"message_id": i} for i in range(12)],
    }
    journal.append("redis_outage", command="redis recover", data=outage)
    checklist = build_checklist(journal=journal, db=db.db() if db else None)
    assert checklist.items[2] == Item("Verify all messages eventually delivered", False, note)
    measured_now = {"stored": 14, "delivered": 13} if db and not db.fails else None
    assert checklist.measured.get("delivered_now") == measured_now


def test_an_unreadable_outage_time_asks_the_database_nothing(tmp_path: Path) -> None:
    journal = fixed_journal(tmp_path, Clock())
    journal.append("redis_outage", command="redis recover", data={**OUTAGE, "end": "yesterday"})
    db = Deliveries(4, 4)
    checklist = build_checklist(journal=journal, db=db.db())
    assert db.asked == []
    assert checklist.items[2].checked is False


def test_an_abuse_burst_checklist_lists_the_blocked_accounts(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    ids = list(range(100, 125))
    _incident(
        journal,
        clock,
        (10, "abuse block", "outcome", {"status": "WARNING", "account_ids": ids}),
        (11, "abuse block 7", "outcome", {"status": "CRITICAL", "account_id": 7}),
    )
    checklist = build_checklist(journal=journal)
    shown = ", ".join(str(i) for i in ids[:20])
    assert checklist.kind == "abuse"
    assert checklist.items == [
        Item(
            "Document abuse pattern",
            False,
            f"25 user(s) blocked by `abuse block`: {shown}; describing the pattern: {MANUAL}",
        ),
        Item("Update rate limits if needed", False, MANUAL),
        Item("Review detection thresholds", False, MANUAL),
        Item("Update runbook with lessons learned", False, MANUAL),
    ]
    assert checklist.measured == {"devices_remediated": None, "users_blocked": 25}
    assert f"- Users blocked: 25 user(s) ({shown}), from `abuse block`\n" in checklist.markdown
    assert list(journal.entries())[-1].data == {"kind": "abuse", "unchecked": 4}


def test_an_abuse_look_without_a_block_is_an_abuse_checklist(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    _incident(journal, clock, (10, "abuse top-senders", "outcome", {"status": "OK"}))
    checklist = build_checklist(journal=journal)
    assert checklist.kind == "abuse"
    assert checklist.items[0].note == (
        f"no `abuse block` outcome in the timeline; describing the pattern: {MANUAL}"
    )
    assert checklist.markdown.startswith("# Post-mortem: Abuse burst\n")


def test_a_block_that_named_no_account_counts_zero_users(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    _incident(journal, clock, (10, "abuse block", "outcome", {"status": "OK"}))
    checklist = build_checklist(journal=journal)
    assert checklist.items[0].note == (
        f"0 user(s) blocked by `abuse block`; describing the pattern: {MANUAL}"
    )
    assert "\n- Users blocked: 0 user(s), from `abuse block`\n" in checklist.markdown


def test_a_general_checklist_is_all_for_a_person_to_tick(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    iid = open_incident(
        journal=journal, severity="P3", title="slow", drill=True, channels=Channels(), now=T0
    ).data["incident_id"]
    journal.append("outcome", command="doctor", data={"status": "OK"})
    journal.append("outcome", command="devices stuck", data={"stuck_ids": []})
    journal.append(
        "outcome", command="abuse block 9", incident_id="INC-OTHER", data={"account_id": 9}
    )
    checklist = build_checklist(journal=journal, incident_id=iid)
    assert (checklist.kind, checklist.incident_id) == ("general", iid)
    assert checklist.items == [
        Item("Document root cause", False, MANUAL),
        Item("Identify improvements", False, MANUAL),
        Item("Update runbooks", False, MANUAL),
        Item("Schedule follow-up", False, MANUAL),
    ]
    assert checklist.markdown.startswith(
        "# Post-mortem: Incident\n\n"
        "> **DRILL** — an exercise, not a real incident.\n\n"
        f"- Incident: {iid} (P3) — slow\n"
        "- Opened: 2026-01-02 03:04:05 UTC by ann@box\n"
        "- Closed: still open\n"
        "- Devices remediated: 0 device(s): stuck at `devices stuck` (03:04:05, 0 device(s)) "
        "and no longer at `devices stuck` (03:04:05)\n"
        "- Users blocked: not measured (no abuse block outcome in the timeline)\n"
    )
    assert checklist.measured == {"devices_remediated": 0, "users_blocked": None}
    assert "\n- [ ] Schedule follow-up — " in checklist.markdown
    assert "\n- [ ] resolve\n" in checklist.markdown


def test_a_single_listing_remediates_nothing_and_names_its_run() -> None:
    assert devices_remediated([run("devices stuck", 5, kind="plan", stuck_ids=[1])]) is None
    assert devices_remediated([run("devices stuck", 5, status="UNKNOWN")]) is None
    cut = run("devices stuck", 5, stuck_ids=[1, 2], stuck_total=5, remediated=[1])
    assert devices_remediated([cut]) == Remediated(
        0,
        [],
        "stuck at `devices stuck` (03:04:10, 2 device(s)) and no longer at `devices stuck` "
        "(03:04:10)",
    )
    assert devices_remediated([run("devices stuck --limit 2", 5, stuck_ids=[1, 2])]) == Remediated(
        0,
        [],
        "stuck at `devices stuck --limit 2` (03:04:10, 2 device(s)) and no longer at "
        "`devices stuck --limit 2` (03:04:10)",
    )


@pytest.mark.parametrize(
    ("last", "ids"),
    [
        ({"stuck_ids": [2]}, ["3", "1"]),
        ({"stuck_ids": []}, ["3", "1", "2"]),
        ({"stuck_ids": [2], "stuck_total": 1}, ["3", "1"]),
        ({"stuck_ids": [2], "stuck_total": 5, "remediated": [1, 9]}, ["1"]),
        ({"stuck_ids": [2], "stuck_total": 5}, []),
        ({"stuck_ids": [3, 1, 2], "still_stuck": [1], "stuck_total": 3}, ["3", "2"]),
    ],
)
def test_remediated_devices_are_stuck_first_and_not_last(
    last: dict[str, Any], ids: list[str]
) -> None:
    entries = [
        run("devices stuck", 5, stuck_ids=[3, 1, 2]),
        run("devices stuck --watch", 9, **last),
        run("devices stuck", 11, status="UNKNOWN"),
    ]
    assert devices_remediated(entries) == Remediated(
        len(ids),
        ids,
        "stuck at `devices stuck` (03:04:10, 3 device(s)) and no longer at "
        "`devices stuck --watch` (03:04:14)",
    )


def test_a_watch_on_its_own_counts_what_it_saw_recover() -> None:
    watch = run("devices stuck --watch", 5, stuck_ids=[3, 1], still_stuck=[1])
    assert devices_remediated([watch]) == Remediated(
        1,
        ["3"],
        "stuck at `devices stuck --watch` (03:04:10, 2 device(s)) and no longer at "
        "`devices stuck --watch` (03:04:10)",
    )


def test_blocked_users_are_distinct_ids_of_successful_blocks_only() -> None:
    entries = [
        run("abuse block", 1, status="OK", account_ids=[5, None, 6], account_id=99),
        run("abuse block 6", 2, status="WARNING", account_ids=None, account_id=6),
        run("abuse block 7", 3, account_ids=(7,)),
        run("abuse block 8", 4, status="CRITICAL", account_id=8),
        run("abuse block 9", 5, kind="plan", account_id=9),
        run("abuse unblock 10", 6, status="OK", account_id=10),
        run("abuse blocker", 7, status="OK", account_id=11),
    ]
    assert users_blocked(entries) == (3, ["5", "6", "7"])
    assert users_blocked([run("abuse block", 1, status="OK")]) == (0, [])


def test_the_timeline_picture_tags_outcomes_by_status() -> None:
    events = timeline_events(
        [
            run("incident open", 0, kind="incident_open", severity="P0"),
            run("incident log", 1, kind="incident_log", text="paged", step="acknowledge"),
            run("redis check", 2, status="OK"),
            run("redis check", 3, status="CRITICAL"),
            run("rollback git", 4, status="FAILED"),
            run("doctor", 5, status="WARNING"),
            run("doctor", 6),
            run("sandbox up", 7, kind="note"),
            run("", 8, kind="note"),
            run("incident close", 9, kind="incident_close", resolution="fixed"),
        ]
    )
    assert events == [
        Event("Incident", "opened P0 by ann@box", T0),
        Event("Incident", "[acknowledge] paged", T0 + timedelta(seconds=1)),
        Event("Commands", "redis check OK", T0 + timedelta(seconds=2), tag="done"),
        Event("Commands", "redis check CRITICAL", T0 + timedelta(seconds=3), tag="crit"),
        Event("Commands", "rollback git FAILED", T0 + timedelta(seconds=4), tag="crit"),
        Event("Commands", "doctor WARNING", T0 + timedelta(seconds=5), tag="active"),
        Event("Commands", "doctor ?", T0 + timedelta(seconds=6), tag="active"),
        Event("Commands", "sandbox up", T0 + timedelta(seconds=7)),
        Event("Commands", "note", T0 + timedelta(seconds=8)),
        Event("Incident", "closed, fixed", T0 + timedelta(seconds=9), tag="done"),
    ]


@pytest.mark.parametrize(
    ("times", "events"),
    [
        (
            {"start": at(1), "redis_back_at": at(4)},
            [
                Event(
                    "Outage",
                    "Redis down, start from redis log, end from PING",
                    T0 + timedelta(seconds=1),
                    T0 + timedelta(seconds=4),
                    tag="crit",
                )
            ],
        ),
        (
            {
                "start": at(1),
                "redis_back_at": at(4),
                "end": at(6),
                "start_source": None,
                "redis_back_source": "",
            },
            [
                Event(
                    "Outage",
                    "Redis down, start from source not recorded, end from source not recorded",
                    T0 + timedelta(seconds=1),
                    T0 + timedelta(seconds=4),
                    tag="crit",
                ),
                Event(
                    "Outage",
                    "recovery verified (canary over SSE, stored vs delivered)",
                    T0 + timedelta(seconds=4),
                    T0 + timedelta(seconds=6),
                    tag="done",
                ),
            ],
        ),
        (
            {"start": "", "redis_back_at": at(4)},
            [
                Event(
                    "Outage",
                    "Redis outage recorded, times unknown",
                    T0 + timedelta(seconds=9),
                    tag="crit",
                )
            ],
        ),
        (
            {"start": at(1), "redis_back_at": "later"},
            [
                Event(
                    "Outage",
                    "Redis outage recorded, times unknown",
                    T0 + timedelta(seconds=9),
                    tag="crit",
                )
            ],
        ),
    ],
)
def test_an_outage_is_drawn_from_its_evidence_or_marked_unknown(
    times: dict[str, Any], events: list[Event]
) -> None:
    data = {"start_source": "redis log", "redis_back_source": "PING", **times}
    assert timeline_events([run("redis recover", 9, kind="redis_outage", **data)]) == events


def test_the_checklist_shows_the_first_twenty_remediated_devices(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    stuck = list(range(1, 26))
    _incident(
        journal,
        clock,
        (10, "devices stuck", "outcome", {"stuck_ids": stuck}),
        (20, "devices stuck", "outcome", {"stuck_ids": []}),
    )
    markdown = build_checklist(journal=journal).markdown
    shown = ", ".join(str(i) for i in stuck[:20])
    assert f"\n- Devices remediated: 25 device(s) ({shown}): stuck at " in markdown


def test_the_checklist_is_for_the_incident_asked_for(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    first = _incident(journal, clock, (10, "incident close", "incident_close", {}))
    second = _incident(journal, clock, (20, "abuse block 3", "outcome", {"account_id": 3}))
    checklist = build_checklist(journal=journal, incident_id=first)
    assert (checklist.kind, checklist.incident_id) == ("general", first)
    assert build_checklist(journal=journal).incident_id == second
