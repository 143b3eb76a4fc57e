"""A Mermaid `gantt` chart (rendered by GitHub, GitLab and most wikis) of timed events:
milestones for moments, bars for spans, grouped in sections.

Mermaid reads `:` as the start of a task's data, `;` as a statement end and `#` and
`%%` as entity or comment markers, so labels are cleaned of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Event", "gantt"]

DATE_FORMAT = "YYYY-MM-DD HH:mm:ss"
_UNSAFE = re.compile(r"[:;#%\n\r`]+")


@dataclass(frozen=True)
class Event:
    section: str
    label: str
    start: datetime
    end: datetime | None = None  # None: a moment (milestone)
    tag: str = ""  # "", "done", "active" or "crit"


def _label(text: str) -> str:
    return " ".join(_UNSAFE.sub(" ", text).split()) or "-"


def _when(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def gantt(title: str, events: Sequence[Event]) -> str:
    """The ```mermaid block: events in time order within each section (UTC)."""
    lines = [
        "```mermaid",
        "gantt",
        f"    title {_label(title)}",
        f"    dateFormat {DATE_FORMAT}",
        "    axisFormat %H:%M",
    ]
    sections: dict[str, list[Event]] = {}
    for event in events:
        sections.setdefault(event.section, []).append(event)
    for section, members in sections.items():
        lines.append(f"    section {_label(section)}")
        for e in sorted(members, key=lambda e: e.start):
            tags = [t for t in (e.tag, "" if e.end else "milestone") if t]
            span = f"{_when(e.end)}" if e.end and e.end > e.start else "0s"
            if e.end is not None and span == "0s":
                tags.append("milestone")
            lines.append(f"    {_label(e.label)} :{', '.join([*tags, _when(e.start), span])}")
    lines.append("```")
    return "\n".join(lines)
