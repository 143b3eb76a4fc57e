"""The post-mortem's Mermaid gantt: valid statement shapes, labels that cannot break it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from e2ee_ops.journal import INCIDENT_CLOSE, INCIDENT_OPEN, Entry
from e2ee_ops.outputs.mermaid import Event, gantt
from e2ee_ops.procedures.postmortem import timeline_events

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)
TASK = re.compile(
    r"^    [^:;#%]+ :((crit|done|active|milestone), )*"
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, (0s|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)$"
)


def test_every_task_line_has_the_gantt_shape_whatever_the_label() -> None:
    chart = gantt(
        "Incident #1: P1; 100%",
        [
            Event("Incident", "opened: <b>#1</b>; 100% %% not a comment", T0),
            Event("Outage", "Redis down", T0, T0 + timedelta(minutes=5), tag="crit"),
            Event("Outage", "same moment", T0, T0, tag="done"),
        ],
    )
    lines = chart.splitlines()
    assert lines[:5] == [
        "```mermaid",
        "gantt",
        "    title Incident 1 P1 100",
        "    dateFormat YYYY-MM-DD HH:mm:ss",
        "    axisFormat %H:%M",
    ]
    tasks = [line for line in lines[5:-1] if not line.startswith("    section ")]
    assert all(TASK.match(line) for line in tasks), tasks
    assert "    Redis down :crit, 2026-11-29 01:00:00, 2026-11-29 01:05:00" in lines
    assert "    same moment :done, milestone, 2026-11-29 01:00:00, 0s" in lines
    assert lines[-1] == "```"


def test_outage_without_recorded_sources_says_so() -> None:
    entries = [
        Entry(T0, "ops@h", "incident open", INCIDENT_OPEN, {"severity": "P1", "title": "x"}),
        Entry(
            T0 + timedelta(minutes=9),
            "ops@h",
            "redis recover",
            "redis_outage",
            {
                "start": (T0 + timedelta(minutes=1)).isoformat(),
                "redis_back_at": (T0 + timedelta(minutes=6)).isoformat(),
                "end": (T0 + timedelta(minutes=8)).isoformat(),
            },
        ),
        Entry(T0 + timedelta(minutes=10), "ops@h", "incident close", INCIDENT_CLOSE, {}),
    ]
    events = timeline_events(entries)
    down = next(e for e in events if e.label.startswith("Redis down"))
    assert "start from source not recorded" in down.label
    assert (down.start, down.end, down.tag) == (
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=6),
        "crit",
    )
    assert [e.section for e in events] == ["Incident", "Outage", "Outage", "Incident"]
