"""Opening, logging to and closing an incident: the exact plan the operator reads, the
journal entries it leaves, and what the channel and PagerDuty are sent (or why not)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from e2ee_ops.errors import UnreachableError, UsageError
from e2ee_ops.journal import (
    INCIDENT_CLOSE,
    INCIDENT_LOG,
    INCIDENT_NOTIFY,
    INCIDENT_OPEN,
    Entry,
    Journal,
)
from e2ee_ops.procedures.incident import (
    Channels,
    Incident,
    close_incident,
    load_incident,
    log_incident,
    new_incident_id,
    open_incident,
    runs_command,
)
from e2ee_ops.status import Plan, Status, Step
from tests.support.journal import ACTOR, T0, Clock, fixed_journal

Page = tuple[str, str, str, str, Mapping[str, Any]]


class Receivers:
    """The webhook and the pager; `down` names the ones that fail as unreachable."""

    def __init__(self, *down: str) -> None:
        self.down = down
        self.posts: list[str] = []
        self.pages: list[Page] = []

    def webhook(self, text: str) -> None:
        if "webhook" in self.down:
            raise UnreachableError("cannot reach hooks.example", host="hooks.example")
        self.posts.append(text)

    def pager(
        self, action: str, key: str, summary: str, severity: str, details: Mapping[str, Any]
    ) -> None:
        if "pager" in self.down:
            raise UnreachableError(
                "cannot reach events.pagerduty.com", host="pd", hint="check incident.pagerduty"
            )
        self.pages.append((action, key, summary, severity, dict(details)))

    def channels(self) -> Channels:
        return Channels(webhook=self.webhook, pager=self.pager)


def notify(event: str, channel: str, ok: bool, outcome: str, iid: str, at: float = 0) -> Entry:
    data = {"event": event, "channel": channel, "ok": ok, "outcome": outcome}
    return Entry(Clock().at(at), ACTOR, f"incident {event}", INCIDENT_NOTIFY, data, iid)


def test_an_incident_id_names_its_kind_and_second() -> None:
    assert re.fullmatch(r"INC-20260102-030405-[0-9a-f]{4}", new_incident_id(T0, drill=False))
    assert re.fullmatch(r"DRILL-20260102-030405-[0-9a-f]{4}", new_incident_id(T0, drill=True))


def test_opening_records_posts_and_pages(tmp_path: Path) -> None:
    journal, to = fixed_journal(tmp_path, Clock()), Receivers()
    plan = open_incident(
        journal=journal,
        severity="P1",
        title="Redis flapping",
        drill=False,
        channels=to.channels(),
        now=T0,
    )
    iid = plan.data["incident_id"]
    assert re.fullmatch(r"INC-20260102-030405-[0-9a-f]{4}", iid)
    assert plan == Plan(
        title=f"incident open {iid}",
        executed=True,
        steps=[
            Step(
                f"record {iid} P1: Redis flapping in the journal",
                True,
                "opened at 2026-01-02 03:04:05 UTC by ann@box",
                Status.OK,
            ),
            Step("notify webhook (open)", True, "channel sent", Status.OK),
            Step("notify pagerduty (open)", True, "PagerDuty trigger sent", Status.OK),
        ],
        summary=f"{iid} P1: Redis flapping is open; every command's plan and outcome now joins it",
        data={"incident_id": iid, "severity": "P1", "drill": False},
    )
    text = f"Incident {iid} opened (P1): Redis flapping"
    assert to.posts == [text]
    assert to.pages == [
        ("trigger", iid, text, "error", {"incident_id": iid, "severity": "P1", "drill": False})
    ]
    assert list(journal.entries()) == [
        Entry(
            T0,
            ACTOR,
            "incident open",
            INCIDENT_OPEN,
            {"severity": "P1", "title": "Redis flapping", "drill": False},
            iid,
        ),
        notify("open", "webhook", True, "channel sent", iid),
        notify("open", "pagerduty", True, "PagerDuty trigger sent", iid),
    ]


@pytest.mark.parametrize(
    ("severity", "paged"), [("P0", "critical"), ("P1", "error"), ("P2", "warning"), ("P3", "info")]
)
def test_pagerduty_severity_follows_the_incident_severity(
    tmp_path: Path, severity: str, paged: str
) -> None:
    to = Receivers()
    open_incident(
        journal=fixed_journal(tmp_path, Clock()),
        severity=severity,
        title="t",
        drill=False,
        channels=to.channels(),
        now=T0,
    )
    assert [page[3] for page in to.pages] == [paged]


def test_a_drill_is_marked_and_never_paged(tmp_path: Path) -> None:
    journal, to = fixed_journal(tmp_path, Clock()), Receivers()
    plan = open_incident(
        journal=journal,
        severity="P2",
        title="fire drill",
        drill=True,
        channels=to.channels(),
        now=T0,
    )
    iid = plan.data["incident_id"]
    assert iid.startswith("DRILL-")
    assert to.posts == [f"[DRILL] Incident {iid} opened (P2): fire drill"]
    assert to.pages == []
    assert plan.steps[0].description == f"record [DRILL] {iid} P2: fire drill in the journal"
    assert plan.steps[1:] == [
        Step("notify webhook (open)", True, "channel sent", Status.OK),
        Step(
            "notify pagerduty (open)",
            False,
            "drill: PagerDuty is never paged for a drill",
            Status.OK,
        ),
    ]
    assert plan.summary == (
        f"[DRILL] {iid} P2: fire drill is open; every command's plan and outcome now joins it"
    )
    assert plan.data == {"incident_id": iid, "severity": "P2", "drill": True}
    assert [e.data for e in journal.entries()] == [
        {"severity": "P2", "title": "fire drill", "drill": True},
        {"event": "open", "channel": "webhook", "ok": True, "outcome": "channel sent"},
    ]


def test_a_drill_without_channels_says_which_is_not_configured(tmp_path: Path) -> None:
    plan = open_incident(
        journal=fixed_journal(tmp_path, Clock()),
        severity="P3",
        title="drill",
        drill=True,
        channels=Channels(),
        now=T0,
    )
    assert plan.steps[1:] == [
        Step("notify webhook (open)", False, "not configured", Status.OK),
        Step(
            "notify pagerduty (open)",
            False,
            "drill: PagerDuty is never paged for a drill",
            Status.OK,
        ),
    ]


def test_unconfigured_channels_are_skipped_and_not_journaled(tmp_path: Path) -> None:
    journal = fixed_journal(tmp_path, Clock())
    plan = open_incident(
        journal=journal, severity="P1", title="t", drill=False, channels=Channels(), now=T0
    )
    assert plan.steps[1:] == [
        Step("notify webhook (open)", False, "not configured", Status.OK),
        Step("notify pagerduty (open)", False, "not configured", Status.OK),
    ]
    assert [e.kind for e in journal.entries()] == [INCIDENT_OPEN]


def test_an_unreachable_channel_is_a_warning_and_is_journaled(tmp_path: Path) -> None:
    journal, to = fixed_journal(tmp_path, Clock()), Receivers("webhook", "pager")
    plan = open_incident(
        journal=journal, severity="P0", title="t", drill=False, channels=to.channels(), now=T0
    )
    iid = plan.data["incident_id"]
    webhook_failed = "channel failed: cannot reach hooks.example"
    pager_failed = (
        "PagerDuty trigger failed: cannot reach events.pagerduty.com: check incident.pagerduty"
    )
    assert plan.steps[1:] == [
        Step("notify webhook (open)", True, webhook_failed, Status.WARNING),
        Step("notify pagerduty (open)", True, pager_failed, Status.WARNING),
    ]
    assert plan.status is Status.WARNING
    assert list(journal.entries())[1:] == [
        notify("open", "webhook", False, webhook_failed, iid),
        notify("open", "pagerduty", False, pager_failed, iid),
    ]


@pytest.mark.parametrize(
    ("severity", "title", "message"),
    [
        ("P4", "t", "severity must be one of P0, P1, P2, P3, not 'P4'"),
        ("P1", "  ", "give the incident a --title"),
    ],
)
def test_opening_refuses_a_bad_severity_or_a_blank_title(
    tmp_path: Path, severity: str, title: str, message: str
) -> None:
    journal = fixed_journal(tmp_path, Clock())
    with pytest.raises(UsageError) as refused:
        open_incident(
            journal=journal,
            severity=severity,
            title=title,
            drill=False,
            channels=Channels(),
            now=T0,
        )
    assert refused.value.sentence == message
    assert list(journal.entries()) == []


def _opened(tmp_path: Path, clock: Clock, to: Receivers | None = None) -> str:
    plan = open_incident(
        journal=fixed_journal(tmp_path, clock),
        severity="P1",
        title="Redis flapping",
        drill=False,
        channels=to.channels() if to else Channels(),
        now=clock.now,
    )
    return str(plan.data["incident_id"])


@pytest.mark.parametrize(("step", "suffix"), [("contain", " (step contain)"), (None, "")])
def test_a_note_joins_the_open_incident(tmp_path: Path, step: str | None, suffix: str) -> None:
    clock = Clock()
    iid = _opened(tmp_path, clock)
    clock.at(70)
    journal = fixed_journal(tmp_path, clock)
    plan = log_incident(journal=journal, text="blocked 14", step=step)
    assert plan == Plan(
        title=f"incident log {iid}",
        executed=True,
        steps=[Step(f"log to {iid}{suffix}", True, "blocked 14", Status.OK)],
        summary=f"logged to {iid} at 03:05:15{suffix}",
        data={"incident_id": iid},
    )
    assert list(journal.entries())[-1] == Entry(
        clock.now, ACTOR, "incident log", INCIDENT_LOG, {"text": "blocked 14", "step": step}, iid
    )


def test_a_note_needs_an_open_incident_and_a_known_step(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    with pytest.raises(UsageError) as none_open:
        log_incident(journal=journal, text="x", step=None)
    assert (none_open.value.message, none_open.value.hint) == (
        "no incident is open",
        "open one with `e2ee-ops incident open`",
    )
    _opened(tmp_path, clock)
    with pytest.raises(UsageError) as bad_step:
        log_incident(journal=journal, text="x", step="celebrate")
    assert bad_step.value.sentence == (
        "--step must be one of acknowledge, assess, contain, resolve, communicate, postmortem"
    )
    assert [e.kind for e in journal.entries()] == [INCIDENT_OPEN]


def test_closing_records_the_duration_posts_and_resolves_the_page(tmp_path: Path) -> None:
    clock, to = Clock(), Receivers()
    iid = _opened(tmp_path, clock, to)
    journal = fixed_journal(tmp_path, clock)
    now = clock.at(125.26)
    plan = close_incident(
        journal=journal, resolution="failover to replica", channels=to.channels(), now=now
    )
    assert plan == Plan(
        title=f"incident close {iid}",
        executed=True,
        steps=[
            Step(
                f"close {iid} P1: Redis flapping",
                True,
                "closed at 03:06:10 UTC after 125.3 s: failover to replica",
                Status.OK,
            ),
            Step("notify webhook (close)", True, "channel sent", Status.OK),
            Step("notify pagerduty (close)", True, "PagerDuty resolve sent", Status.OK),
        ],
        summary=(
            f"{iid} P1: Redis flapping closed; next: "
            f"`e2ee-ops postmortem checklist --incident {iid}`"
        ),
        data={"incident_id": iid, "duration_seconds": 125.3},
    )
    text = f"Incident {iid} resolved (P1): Redis flapping. Resolution: failover to replica"
    assert to.posts[1:] == [text]
    assert to.pages[1:] == [
        (
            "resolve",
            iid,
            text,
            "error",
            {"resolution": "failover to replica", "duration_seconds": 125.3},
        )
    ]
    # Announced after the close entry: the notifications still name the incident.
    assert list(journal.entries())[-2:] == [
        notify("close", "webhook", True, "channel sent", iid, at=125.26),
        notify("close", "pagerduty", True, "PagerDuty resolve sent", iid, at=125.26),
    ]
    closed = [e for e in journal.entries() if e.kind == INCIDENT_CLOSE]
    assert closed == [
        Entry(
            now,
            ACTOR,
            "incident close",
            INCIDENT_CLOSE,
            {
                "resolution": "failover to replica",
                "severity": "P1",
                "title": "Redis flapping",
                "drill": False,
                "duration_seconds": 125.3,
            },
            iid,
        )
    ]
    assert journal.open_incident_id() is None


def test_closing_a_drill_says_so_and_pages_nobody(tmp_path: Path) -> None:
    clock, to = Clock(), Receivers()
    journal = fixed_journal(tmp_path, clock)
    iid = open_incident(
        journal=journal, severity="P2", title="drill", drill=True, channels=to.channels(), now=T0
    ).data["incident_id"]
    plan = close_incident(journal=journal, resolution="done", channels=to.channels(), now=T0)
    assert to.posts[1:] == [f"[DRILL] Incident {iid} resolved (P2): drill. Resolution: done"]
    assert to.pages == []
    assert plan.steps[0].description == f"close [DRILL] {iid} P2: drill"


def test_an_incident_recorded_without_severity_pages_as_critical(tmp_path: Path) -> None:
    journal, to = fixed_journal(tmp_path, Clock()), Receivers()
    journal.append(
        INCIDENT_OPEN, command="incident open", incident_id="INC-OLD", data={"title": "old"}
    )
    plan = close_incident(journal=journal, resolution="gone", channels=to.channels(), now=T0)
    assert plan.steps[0].description == "close INC-OLD ?: old"
    assert [page[3] for page in to.pages] == ["critical"]


def test_closing_needs_an_open_incident_and_a_resolution(tmp_path: Path) -> None:
    clock = Clock()
    journal = fixed_journal(tmp_path, clock)
    with pytest.raises(UsageError, match="^no incident is open$"):
        close_incident(journal=journal, resolution="x", channels=Channels(), now=T0)
    _opened(tmp_path, clock)
    with pytest.raises(UsageError) as blank:
        close_incident(journal=journal, resolution="  ", channels=Channels(), now=T0)
    assert blank.value.sentence == "say how it was resolved with --resolution"
    assert journal.open_incident_id() is not None
    close_incident(journal=journal, resolution="x", channels=Channels(), now=T0)
    with pytest.raises(UsageError, match="^no incident is open$"):
        close_incident(journal=journal, resolution="x", channels=Channels(), now=T0)


def test_loading_picks_the_asked_then_the_open_then_the_last_incident(tmp_path: Path) -> None:
    journal = fixed_journal(tmp_path, Clock())
    assert load_incident(journal) is None
    first = journal.append(
        INCIDENT_OPEN,
        command="incident open",
        incident_id="INC-A",
        data={"severity": "P2", "title": "a", "drill": True},
    )
    note = journal.append(INCIDENT_LOG, command="incident log", data={"text": "n"})
    closed = journal.append(INCIDENT_CLOSE, command="incident close", incident_id="INC-A")
    second = journal.append(INCIDENT_OPEN, command="incident open", incident_id="INC-B")
    a = Incident("INC-A", "P2", "a", True, first, closed, [first, note, closed])
    b = Incident("INC-B", "?", "", False, second, None, [second])
    assert load_incident(journal) == b  # the open one
    assert load_incident(journal, "INC-A") == a
    journal.append(INCIDENT_CLOSE, command="incident close", incident_id="INC-B")
    # An entry naming an incident that was never opened does not make it the last one.
    journal.append("outcome", command="doctor", incident_id="INC-C")
    assert load_incident(journal).incident_id == "INC-B"  # type: ignore[union-attr]
    with pytest.raises(UsageError) as unknown:
        load_incident(journal, "INC-C")
    assert unknown.value.sentence == f"no incident INC-C in the journal {journal.path}"


@pytest.mark.parametrize(
    ("command", "runs"),
    [("abuse block", True), ("abuse block 14", True), ("abuse blocker", False), ("abuse", False)],
)
def test_a_command_line_runs_a_command_with_or_without_arguments(command: str, runs: bool) -> None:
    assert runs_command(command, ("doctor", "abuse block")) is runs


class RacingJournal(Journal):
    """Another operator closes the incident and opens the next one just before our close."""

    def append(
        self,
        kind: str,
        *,
        command: str,
        data: Mapping[str, Any] | None = None,
        incident_id: str | None = None,
    ) -> Entry:
        if kind == INCIDENT_CLOSE and command == "incident close" and data:
            other = self.open_incident_id()
            self.append(INCIDENT_CLOSE, command="incident close (other)", incident_id=other)
            self.append(INCIDENT_OPEN, command="incident open", incident_id="INC-NEXT")
        return super().append(kind, command=command, data=data, incident_id=incident_id)


def test_a_close_names_its_incident_even_if_another_was_opened_meanwhile(tmp_path: Path) -> None:
    journal = RacingJournal(tmp_path / "journal.jsonl", clock=Clock(), actor=ACTOR)
    iid = open_incident(
        journal=journal, severity="P1", title="t", drill=False, channels=Channels(), now=T0
    ).data["incident_id"]
    close_incident(journal=journal, resolution="fixed", channels=Channels(), now=T0)
    closes = [e for e in journal.entries() if e.kind == INCIDENT_CLOSE]
    assert [(e.command, e.incident_id) for e in closes] == [
        ("incident close (other)", iid),
        ("incident close", iid),
    ]
    assert journal.open_incident_id() == "INC-NEXT"
