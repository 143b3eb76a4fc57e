"""Runbook: the post-mortem checklists (Redis outage, abuse burst, incident response).

The checklist is chosen by what the incident's timeline holds (a `redis_outage`
record: Redis outage; an `abuse ...` command: abuse burst; else general) and
prefilled with what commands measured. Journal data read, per entry:

- `redis_outage` (written by `redis recover --execute`): start, end, duration_seconds,
  stored, delivered, stored_not_delivered, all_delivered, undelivered[].message_id.
- `outcome` of a command starting with `devices`: `remediated` (a count or a list of
  device ids), else `devices_remediated`, else `refilled`.
- `outcome` of `abuse block`: `blocked` (a count or a list of account ids), else
  `account_ids`, else `account_id`; only when the outcome's `status` is OK or WARNING.

An item is ticked only when a command verified it; the others stay unticked and say
that a person has to do or confirm them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from e2ee_ops.errors import E2eeOpsError, UsageError
from e2ee_ops.journal import (
    INCIDENT_CLOSE,
    INCIDENT_LOG,
    INCIDENT_NOTIFY,
    INCIDENT_OPEN,
    OUTCOME,
    PLAN,
    POSTMORTEM,
    REDIS_OUTAGE,
    Entry,
    Journal,
)
from e2ee_ops.outputs.mermaid import Event, gantt
from e2ee_ops.procedures.incident import (
    Incident,
    describe_entry,
    load_incident,
    response_steps,
    runs_command,
)

if TYPE_CHECKING:
    from e2ee_ops.adapters.postgres import OpsDatabase

MANUAL = "not verifiable by any command: a person has to do this and tick it"


@dataclass
class Item:
    text: str
    checked: bool
    note: str


@dataclass
class Checklist:
    kind: str  # "redis-outage" | "abuse" | "general"
    incident_id: str | None
    items: list[Item] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)
    markdown: str = ""


def _ids_or_count(value: Any) -> tuple[int, list[str]]:
    if isinstance(value, bool) or value is None:
        return 0, []
    if isinstance(value, int):
        return value, []
    if isinstance(value, list | tuple):
        return len(value), [str(v) for v in value]
    return 1, [str(value)]


def _first(data: dict[str, Any], *keys: str) -> Any:
    return next((data[k] for k in keys if data.get(k) is not None), None)


def devices_remediated(entries: list[Entry]) -> tuple[int, list[str]] | None:
    found = [
        _ids_or_count(_first(e.data, "remediated", "devices_remediated", "refilled"))
        for e in entries
        if e.kind == OUTCOME and e.command.startswith("devices")
    ]
    if not found:
        return None
    return sum(n for n, _ in found), [i for _, ids in found for i in ids]


def users_blocked(entries: list[Entry]) -> tuple[int, list[str]] | None:
    found = [
        _ids_or_count(_first(e.data, "blocked", "account_ids", "account_id"))
        for e in entries
        if e.kind == OUTCOME
        and runs_command(e.command, ("abuse block",))
        and str(e.data.get("status", "OK")) in ("OK", "WARNING")
    ]
    if not found:
        return None
    return sum(n for n, _ in found), [i for _, ids in found for i in ids]


def _delivered_since(db: OpsDatabase | None, outage: dict[str, Any]) -> tuple[int, int] | None:
    """(stored, delivered) in the outage window as of now: were they delivered later?"""
    if db is None or not outage.get("start") or not outage.get("end"):
        return None
    try:
        window = db.delivery_window(
            datetime.fromisoformat(outage["start"]), datetime.fromisoformat(outage["end"])
        )
    except (E2eeOpsError, ValueError):
        return None
    return window.stored, window.delivered


def _redis_items(outage: dict[str, Any], later: tuple[int, int] | None) -> list[Item]:
    stored, missing = outage.get("stored"), outage.get("stored_not_delivered")
    pending = [str(u.get("message_id")) for u in outage.get("undelivered") or []]
    if outage.get("all_delivered") is True:
        delivered = Item(
            "Verify all messages eventually delivered",
            True,
            f"all {stored} delivered by the end of recovery ({outage.get('end')})",
        )
    elif later is not None and later[0] == later[1]:
        delivered = Item(
            "Verify all messages eventually delivered",
            True,
            f"{missing} were pending at recovery; PostgreSQL now shows all {later[0]} delivered",
        )
    else:
        now = f"; PostgreSQL now shows {later[1]} of {later[0]} delivered" if later else ""
        delivered = Item(
            "Verify all messages eventually delivered",
            False,
            f"{missing} not delivered at recovery (ids {', '.join(pending[:10]) or '?'}){now}",
        )
    return [
        Item(
            "Document outage duration",
            outage.get("duration_seconds") is not None,
            f"{outage.get('duration_seconds')} s, from {outage.get('start')} "
            f"to Redis back at {outage.get('redis_back_at')} (measured by `redis recover`)",
        ),
        Item(
            "Count messages stored but not delivered",
            stored is not None,
            f"{stored} stored during the outage window, {missing} not delivered at recovery",
        ),
        delivered,
        Item("Review Redis logs for root cause", False, MANUAL),
        Item("Update runbook if new issues discovered", False, MANUAL),
    ]


def _abuse_items(blocked: tuple[int, list[str]] | None) -> list[Item]:
    pattern = (
        f"{blocked[0]} user(s) blocked by `abuse block`"
        + (f": {', '.join(blocked[1][:20])}" if blocked[1] else "")
        if blocked
        else "no `abuse block` outcome in the timeline"
    )
    return [
        Item("Document abuse pattern", False, f"{pattern}; describing the pattern: {MANUAL}"),
        Item("Update rate limits if needed", False, MANUAL),
        Item("Review detection thresholds", False, MANUAL),
        Item("Update runbook with lessons learned", False, MANUAL),
    ]


def _general_items() -> list[Item]:
    return [
        Item("Document root cause", False, MANUAL),
        Item("Identify improvements", False, MANUAL),
        Item("Update runbooks", False, MANUAL),
        Item("Schedule follow-up", False, MANUAL),
    ]


def build_checklist(
    *, journal: Journal, incident_id: str | None = None, db: OpsDatabase | None = None
) -> Checklist:
    incident = load_incident(journal, incident_id)
    if incident is not None:
        entries = incident.entries
    else:
        # No incident was opened: the last recorded Redis outage on its own.
        entries = list(journal.entries(kind=REDIS_OUTAGE))[-1:]
        if not entries:
            raise UsageError(
                f"no incident and no recorded outage in the journal {journal.path}",
                hint="open incidents with `e2ee-ops incident open`",
            )
    outages = [e for e in entries if e.kind == REDIS_OUTAGE]
    blocked = users_blocked(entries)
    remediated = devices_remediated(entries)
    if outages:
        kind = "redis-outage"
    elif blocked is not None or any(e.command.startswith("abuse") for e in entries):
        kind = "abuse"
    else:
        kind = "general"
    checklist = Checklist(kind=kind, incident_id=incident.incident_id if incident else None)
    outage = outages[-1].data if outages else None
    if outage is not None:
        later = _delivered_since(db, outage)
        checklist.items = _redis_items(outage, later)
        checklist.measured["outage"] = {
            k: outage.get(k)
            for k in ("start", "end", "duration_seconds", "stored", "stored_not_delivered")
        }
        checklist.measured["all_delivered_at_recovery"] = outage.get("all_delivered")
        if later is not None:
            checklist.measured["delivered_now"] = {"stored": later[0], "delivered": later[1]}
    elif kind == "abuse":
        checklist.items = _abuse_items(blocked)
    else:
        checklist.items = _general_items()
    checklist.measured["devices_remediated"] = remediated[0] if remediated else None
    checklist.measured["users_blocked"] = blocked[0] if blocked else None
    checklist.markdown = render_markdown(checklist, incident, entries, remediated, blocked)
    if incident is not None:
        journal.append(
            POSTMORTEM,
            command="postmortem checklist",
            incident_id=incident.incident_id,
            data={"kind": kind, "unchecked": sum(not i.checked for i in checklist.items)},
        )
    return checklist


def _status_tag(status: Any) -> str:
    return {"OK": "done", "CRITICAL": "crit", "FAILED": "crit"}.get(str(status), "active")


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def timeline_events(entries: list[Entry]) -> list[Event]:
    """The incident as a picture: opened and closed, each command's plan and outcome,
    and each recorded Redis outage from its start to Redis answering again and on to
    the end of the verified recovery, each end named by its evidence."""
    events: list[Event] = []
    for e in entries:
        d = e.data
        if e.kind == INCIDENT_OPEN:
            events.append(Event("Incident", f"opened {d.get('severity')} by {e.actor}", e.ts))
        elif e.kind == INCIDENT_CLOSE:
            events.append(Event("Incident", f"closed, {d.get('resolution')}", e.ts, tag="done"))
        elif e.kind in (INCIDENT_LOG, INCIDENT_NOTIFY):
            events.append(Event("Incident", describe_entry(e), e.ts))
        elif e.kind == PLAN:
            events.append(Event("Commands", f"{e.command} planned", e.ts))
        elif e.kind == OUTCOME:
            status = d.get("status", "?")
            events.append(Event("Commands", f"{e.command} {status}", e.ts, tag=_status_tag(status)))
        elif e.kind == REDIS_OUTAGE:
            events += _outage_events(d, e.ts)
        else:
            events.append(Event("Commands", e.command or e.kind, e.ts))
    return events


def _outage_events(d: dict[str, Any], recorded: datetime) -> list[Event]:
    start, back, end = (
        _moment(d.get("start")),
        _moment(d.get("redis_back_at")),
        _moment(d.get("end")),
    )
    unrecorded = "source not recorded"
    if start is None or back is None:
        return [Event("Outage", "Redis outage recorded, times unknown", recorded, tag="crit")]
    events = [
        Event(
            "Outage",
            f"Redis down, start from {d.get('start_source') or unrecorded}, "
            f"end from {d.get('redis_back_source') or unrecorded}",
            start,
            back,
            tag="crit",
        )
    ]
    if end is not None:
        events.append(
            Event(
                "Outage",
                "recovery verified (canary over SSE, stored vs delivered)",
                back,
                end,
                tag="done",
            )
        )
    return events


TITLES = {
    "redis-outage": "Redis outage",
    "abuse": "Abuse burst",
    "general": "Incident",
}


def render_markdown(
    checklist: Checklist,
    incident: Incident | None,
    entries: list[Entry],
    remediated: tuple[int, list[str]] | None,
    blocked: tuple[int, list[str]] | None,
) -> str:
    lines = [f"# Post-mortem: {TITLES[checklist.kind]}", ""]
    if incident is not None:
        if incident.drill:
            lines += ["> **DRILL** — an exercise, not a real incident.", ""]
        closed = incident.closed
        lines += [
            f"- Incident: {incident.incident_id} ({incident.severity}) — {incident.title}",
            f"- Opened: {incident.opened.ts:%Y-%m-%d %H:%M:%S} UTC by {incident.opened.actor}",
            f"- Closed: {closed.ts:%Y-%m-%d %H:%M:%S} UTC — {closed.data.get('resolution')}"
            if closed
            else "- Closed: still open",
        ]
    else:
        lines.append("- Incident: none was opened; this covers the last recorded Redis outage")

    def fact(value: tuple[int, list[str]] | None, noun: str, source: str) -> str:
        if value is None:
            return f"not measured (no {source} outcome in the timeline)"
        ids = f" ({', '.join(value[1][:20])})" if value[1] else ""
        return f"{value[0]} {noun}{ids}, from `{source}`"

    lines += [
        f"- Devices remediated: {fact(remediated, 'device(s)', 'devices stuck')}",
        f"- Users blocked: {fact(blocked, 'user(s)', 'abuse block')}",
        "",
        "## Checklist",
        "",
    ]
    for item in checklist.items:
        lines.append(f"- [{'x' if item.checked else ' '}] {item.text} — {item.note}")
    if incident is not None:
        lines += ["", "## Response steps", ""]
        for step, how in response_steps(incident).items():
            lines.append(f"- [{'x' if how else ' '}] {step}" + (f" — {how}" if how else ""))
    title = (
        f"Incident {incident.incident_id} ({incident.severity}), UTC"
        if incident is not None
        else "Redis outage, UTC"
    )
    lines += [
        "",
        "## Timeline",
        "",
        gantt(title, timeline_events(entries)),
        "",
        "| Time (UTC) | Actor | Command | What |",
        "| --- | --- | --- | --- |",
    ]
    for e in entries:
        what = describe_entry(e).replace("|", "\\|")
        lines.append(f"| {e.ts:%Y-%m-%d %H:%M:%S} | {e.actor} | {e.command} | {what} |")
    return "\n".join(lines) + "\n"
