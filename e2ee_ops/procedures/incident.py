"""Runbook: Incident Response. An incident is a timeline in the journal.

`incident_open` starts it (and announces it), every journal entry written while it is
open joins it (`Journal.append`), `incident_log` adds notes, `incident_close` ends it.
The runbook's response steps (acknowledge, assess, contain, resolve, communicate,
post-mortem) are read back from the timeline: each is done when the entry that
performs it is there, so `incident status` shows which are still open.

Drills (`--drill`) get ids starting with DRILL-, say [DRILL] in every message and
never page: PagerDuty is not called for them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
from e2ee_ops.status import Finding, Plan, Report, Status, Step

SEVERITIES = ("P0", "P1", "P2", "P3")
PAGER_SEVERITY = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info"}
STEPS = ("acknowledge", "assess", "contain", "resolve", "communicate", "postmortem")

# Journal commands whose successful outcome performs a response step.
ASSESS_COMMANDS = ("alerts check", "redis check", "doctor", "devices stuck", "abuse top-senders")
CONTAIN_COMMANDS = ("rollback flag", "abuse block")
RESOLVE_COMMANDS = ("redis recover", "rollback flag", "rollback migration", "rollback git")


@dataclass
class Channels:
    """How to announce: each is None when not configured. Both raise E2eeOpsError."""

    webhook: Callable[[str], None] | None = None
    # (action "trigger"|"resolve", dedup_key, summary, severity, details)
    pager: Callable[[str, str, str, str, Mapping[str, Any]], None] | None = None


@dataclass
class Incident:
    incident_id: str
    severity: str
    title: str
    drill: bool
    opened: Entry
    closed: Entry | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{'[DRILL] ' if self.drill else ''}{self.incident_id} {self.severity}: {self.title}"


def new_incident_id(now: datetime, *, drill: bool) -> str:
    return f"{'DRILL' if drill else 'INC'}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def load_incident(journal: Journal, incident_id: str | None = None) -> Incident | None:
    """The incident `incident_id`, else the open one, else the one opened last."""
    entries = list(journal.entries())
    opens = [e for e in entries if e.kind == INCIDENT_OPEN and e.incident_id]
    if incident_id is None:
        incident_id = journal.open_incident_id() or (opens[-1].incident_id if opens else None)
    opened = next((e for e in opens if e.incident_id == incident_id), None)
    if opened is None or incident_id is None:
        if incident_id is not None:
            raise UsageError(f"no incident {incident_id} in the journal {journal.path}")
        return None
    mine = [e for e in entries if e.incident_id == incident_id]
    return Incident(
        incident_id=incident_id,
        severity=str(opened.data.get("severity", "?")),
        title=str(opened.data.get("title", "")),
        drill=bool(opened.data.get("drill")),
        opened=opened,
        closed=next((e for e in mine if e.kind == INCIDENT_CLOSE), None),
        entries=mine,
    )


def _announce(
    journal: Journal,
    channels: Channels,
    incident: Incident,
    *,
    event: str,
    text: str,
    details: Mapping[str, Any],
) -> list[Step]:
    """Post to the channel and, unless a drill, page; each outcome is journaled."""
    steps: list[Step] = []
    webhook, pager = channels.webhook, channels.pager
    attempts: list[tuple[str, Callable[[], None] | None, str]] = [
        ("webhook", (lambda: webhook(text)) if webhook else None, "channel")
    ]
    action = "trigger" if event == "open" else "resolve"
    if incident.drill:
        attempts.append(("pagerduty", None, "drill: PagerDuty is never paged for a drill"))
    elif pager is None:
        attempts.append(("pagerduty", None, f"PagerDuty {action}"))
    else:
        severity = PAGER_SEVERITY.get(incident.severity, "critical")
        attempts.append(
            (
                "pagerduty",
                lambda: pager(action, incident.incident_id, text, severity, details),
                f"PagerDuty {action}",
            )
        )
    for channel, call, what in attempts:
        step = Step(f"notify {channel} ({event})")
        if call is None:
            step.status = Status.OK
            step.outcome = what if incident.drill and channel == "pagerduty" else "not configured"
            steps.append(step)
            continue
        step.executed = True
        try:
            call()
        except E2eeOpsError as exc:
            step.status, step.outcome = Status.WARNING, f"{what} failed: {exc.sentence}"
        else:
            step.status, step.outcome = Status.OK, f"{what} sent"
        journal.append(
            INCIDENT_NOTIFY,
            command=f"incident {event}",
            incident_id=incident.incident_id,
            data={
                "event": event,
                "channel": channel,
                "ok": step.status is Status.OK,
                "outcome": step.outcome,
            },
        )
        steps.append(step)
    return steps


def open_incident(
    *,
    journal: Journal,
    severity: str,
    title: str,
    drill: bool,
    channels: Channels,
    now: datetime,
) -> Plan:
    if severity not in SEVERITIES:
        raise UsageError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    if not title.strip():
        raise UsageError("give the incident a --title")
    incident_id = new_incident_id(now, drill=drill)
    # Refused under the journal's lock while another incident is open: atomic.
    opened = journal.append(
        INCIDENT_OPEN,
        command="incident open",
        incident_id=incident_id,
        data={"severity": severity, "title": title, "drill": drill},
    )
    incident = Incident(incident_id, severity, title, drill, opened)
    plan = Plan(title=f"incident open {incident_id}", executed=True)
    plan.steps.append(
        Step(
            f"record {incident.label} in the journal",
            executed=True,
            status=Status.OK,
            outcome=f"opened at {opened.ts:%Y-%m-%d %H:%M:%S} UTC by {opened.actor}",
        )
    )
    text = f"{'[DRILL] ' if drill else ''}Incident {incident_id} opened ({severity}): {title}"
    plan.steps += _announce(
        journal,
        channels,
        incident,
        event="open",
        text=text,
        details={"incident_id": incident_id, "severity": severity, "drill": drill},
    )
    plan.data = {"incident_id": incident_id, "severity": severity, "drill": drill}
    plan.summary = f"{incident.label} is open; every command's plan and outcome now joins it"
    return plan


def log_incident(*, journal: Journal, text: str, step: str | None) -> Plan:
    incident_id = journal.open_incident_id()
    if incident_id is None:
        raise UsageError("no incident is open", hint="open one with `e2ee-ops incident open`")
    if step is not None and step not in STEPS:
        raise UsageError(f"--step must be one of {', '.join(STEPS)}")
    entry = journal.append(INCIDENT_LOG, command="incident log", data={"text": text, "step": step})
    done = f" (step {step})" if step else ""
    return Plan(
        title=f"incident log {incident_id}",
        executed=True,
        steps=[Step(f"log to {incident_id}{done}", True, text, Status.OK)],
        summary=f"logged to {incident_id} at {entry.ts:%H:%M:%S}{done}",
        data={"incident_id": incident_id},
    )


def close_incident(*, journal: Journal, resolution: str, channels: Channels, now: datetime) -> Plan:
    incident = load_incident(journal)
    if incident is None or incident.closed is not None:
        raise UsageError("no incident is open")
    if not resolution.strip():
        raise UsageError("say how it was resolved with --resolution")
    duration = round((now - incident.opened.ts).total_seconds(), 1)
    closed = journal.append(
        INCIDENT_CLOSE,
        command="incident close",
        incident_id=incident.incident_id,
        data={
            "resolution": resolution,
            "severity": incident.severity,
            "title": incident.title,
            "drill": incident.drill,
            "duration_seconds": duration,
        },
    )
    plan = Plan(title=f"incident close {incident.incident_id}", executed=True)
    plan.steps.append(
        Step(
            f"close {incident.label}",
            executed=True,
            status=Status.OK,
            outcome=f"closed at {closed.ts:%H:%M:%S} UTC after {duration:g} s: {resolution}",
        )
    )
    text = (
        f"{'[DRILL] ' if incident.drill else ''}Incident {incident.incident_id} resolved "
        f"({incident.severity}): {incident.title}. Resolution: {resolution}"
    )
    plan.steps += _announce(
        journal,
        channels,
        incident,
        event="close",
        text=text,
        details={"resolution": resolution, "duration_seconds": duration},
    )
    plan.data = {"incident_id": incident.incident_id, "duration_seconds": duration}
    plan.summary = (
        f"{incident.label} closed; next: `e2ee-ops postmortem checklist "
        f"--incident {incident.incident_id}`"
    )
    return plan


# ---- status -------------------------------------------------------------------------------


def runs_command(command: str, names: tuple[str, ...]) -> bool:
    """Whether a journaled command line is one of `names` ("abuse block 14" is "abuse block")."""
    return any(command == name or command.startswith(name + " ") for name in names)


def _outcome_ok(entry: Entry, commands: tuple[str, ...], *, any_status: bool = False) -> bool:
    return (
        entry.kind == OUTCOME
        and runs_command(entry.command, commands)
        and (any_status or str(entry.data.get("status", "OK")) in ("OK", "WARNING"))
    )


def _record(e: Entry) -> str:
    """The journal record that proves a tick, as the checklist shows it."""
    when = f"{e.ts:%H:%M:%S}"
    if e.kind == OUTCOME:
        summary = e.data.get("summary") or ""
        return f"`{e.command}` at {when}: {e.data.get('status', '?')}" + (
            f" — {summary}" if summary else ""
        )
    if e.kind == INCIDENT_NOTIFY:
        return f"{e.data.get('channel')} at {when}: {e.data.get('outcome')}"
    if e.kind == INCIDENT_LOG:
        return f"logged by {e.actor} at {when}: {e.data.get('text', '')}"
    if e.kind == POSTMORTEM:
        return f"checklist written at {when} by {e.actor}"
    return f"{e.kind} at {when}"


def response_steps(incident: Incident) -> dict[str, str | None]:
    """For each response step, the journal record that proves it was done (None: still
    open). Acknowledge: a channel post or page that succeeded. Assess: any check's
    outcome. Contain: a containing action that succeeded. Resolve: a resolving action
    that succeeded (it verifies itself), or a check that passed after the last
    mitigation; closing alone proves nothing. Communicate: the resolution posted.
    An operator's `incident log --step S` is their own record of S."""
    done: dict[str, str | None] = dict.fromkeys(STEPS)
    mitigated = False
    for e in incident.entries:
        logged = e.data.get("step") if e.kind == INCIDENT_LOG else None
        if isinstance(logged, str) and logged in done and done[logged] is None:
            done[logged] = _record(e)
        if e.kind == INCIDENT_NOTIFY and e.data.get("ok"):
            step = "acknowledge" if e.data.get("event") == "open" else "communicate"
            done[step] = done[step] or _record(e)
        if e.kind == POSTMORTEM:
            done["postmortem"] = done["postmortem"] or _record(e)
        if e.kind not in (OUTCOME, PLAN):
            continue
        if runs_command(e.command, CONTAIN_COMMANDS + RESOLVE_COMMANDS):
            mitigated = True  # a mitigation was attempted: a later check may verify it
        if e.kind != OUTCOME:
            continue
        if done["assess"] is None and _outcome_ok(e, ASSESS_COMMANDS, any_status=True):
            done["assess"] = _record(e)
        if done["contain"] is None and _outcome_ok(e, CONTAIN_COMMANDS):
            done["contain"] = _record(e)
        if _outcome_ok(e, RESOLVE_COMMANDS):
            done["resolve"] = done["resolve"] or _record(e)
        elif (
            mitigated
            and done["resolve"] is None
            and runs_command(e.command, ASSESS_COMMANDS)
            and e.data.get("status") == "OK"
        ):
            done["resolve"] = _record(e) + " (a check that passed after the last mitigation)"
    return done


def describe_entry(e: Entry) -> str:
    """One line for the timeline: what the entry says, metadata only."""
    d = e.data
    if e.kind == INCIDENT_OPEN:
        return f"opened {d.get('severity')}: {d.get('title')}" + (
            " [DRILL]" if d.get("drill") else ""
        )
    if e.kind == INCIDENT_CLOSE:
        return f"closed: {d.get('resolution')}"
    if e.kind == INCIDENT_LOG:
        return (f"[{d['step']}] " if d.get("step") else "") + str(d.get("text", ""))
    if e.kind == INCIDENT_NOTIFY:
        return f"{d.get('channel')}: {d.get('outcome')}"
    if e.kind == PLAN:
        steps = d.get("steps") or []
        return f"plan of {len(steps)} step(s)" if isinstance(steps, list) else "plan"
    if e.kind == OUTCOME:
        return f"outcome {d.get('status', '?')}"
    if e.kind == REDIS_OUTAGE:
        duration = d.get("duration_seconds")
        return (
            f"Redis outage of {'unknown duration' if duration is None else f'{duration} s'} "
            f"(start: {d.get('start_source', '?')}; end: {d.get('redis_back_source', '?')}); "
            f"{d.get('stored')} stored, {d.get('deliverable_not_delivered')} deliverable but "
            f"not delivered, {d.get('waiting_offline')} waiting for offline devices"
        )
    return e.kind


def incident_status(*, journal: Journal, incident_id: str | None = None) -> Report:
    incident = load_incident(journal, incident_id)
    if incident is None:
        return Report(
            title="incident status", summary="no incident in the journal", data={"open": None}
        )
    report = Report(title=f"incident {incident.label}")
    steps = response_steps(incident)
    for step, how in steps.items():
        report.findings.append(
            Finding(
                f"step: {step}",
                Status.OK if how else Status.WARNING,
                "done" if how else "open",
                how or f"{step} is still to do",
            )
        )
    for e in incident.entries:
        # Timeline rows are history: a past CRITICAL outcome must not make `status` fail.
        status = e.data.get("status") if e.kind == OUTCOME else None
        report.findings.append(
            Finding(
                f"{e.ts:%H:%M:%S} {e.command}",
                Status.OK,
                f"{e.kind} {status}" if status else e.kind,
                f"{describe_entry(e)} ({e.actor})",
            )
        )
    still = [s for s, how in steps.items() if not how]
    state = "closed" if incident.closed else "open"
    report.summary = f"{incident.label} is {state}; " + (
        f"steps still open: {', '.join(still)}" if still else "every response step is done"
    )
    report.data = {
        "incident_id": incident.incident_id,
        "severity": incident.severity,
        "title": incident.title,
        "drill": incident.drill,
        "open": incident.closed is None,
        "steps": steps,
        "timeline": [
            {
                "ts": e.ts.isoformat(),
                "actor": e.actor,
                "command": e.command,
                "kind": e.kind,
                "text": describe_entry(e),
            }
            for e in incident.entries
        ],
    }
    return report
