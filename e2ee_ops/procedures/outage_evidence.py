"""When a Redis outage began and ended, from evidence only, each instant naming its source.

The sources, best first:

- the service's own record of its relay (`/dm/metrics`: `redis_unavailable_since`
  while an instance cannot reach Redis, `last_redis_outage` with `lost_at` and
  `regained_at` once it can again, `redis_outages_by_instance` for the fleet);
- the service log, as the runbook greps it: the first "Redis unavailable" line after
  the last "Redis available again" line, and the next "available again" line;
- e2ee-ops's own journal: the first `redis check`/`watch`/`alerts check` that saw
  Redis down after the last one that saw it healthy (the outage began before it);
- the operator's `--since` (which, when given, overrides the start).

Where no source says, the instant is "unknown" and so is the duration: nothing here
estimates. No outage, no record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from e2ee_ops.journal import REDIS_OBSERVATION, Entry, Journal

UNKNOWN = "unknown"
# The runbook's own marker (`grep "Redis unavailable"`), and the reference server's line
# when its relay reaches Redis again.
DOWN_MARKER = "Redis unavailable"
UP_MARKER = "Redis available again"
REPEAT_SECONDS = 60.0  # an unchanged observation is journaled again after this long


@dataclass(frozen=True)
class Instant:
    """A point in time and what says so; `at` None means no evidence."""

    at: datetime | None
    source: str = UNKNOWN

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat() if self.at else None, "source": self.source}


NO_EVIDENCE = Instant(None, UNKNOWN)


@dataclass(frozen=True)
class OutageWindow:
    start: Instant
    end: Instant

    @property
    def duration_seconds(self) -> float | None:
        if self.start.at is None or self.end.at is None:
            return None
        return round((self.end.at - self.start.at).total_seconds(), 1)

    def as_dict(self) -> dict[str, Any]:
        duration = self.duration_seconds
        return {
            "start": self.start.as_dict(),
            "end": self.end.as_dict(),
            "duration_seconds": duration,
            "duration": UNKNOWN if duration is None else f"{duration:g} s",
        }

    def sentence(self) -> str:
        def when(i: Instant) -> str:
            return f"{i.at:%Y-%m-%d %H:%M:%S} UTC ({i.source})" if i.at else "unknown"

        duration = self.duration_seconds
        return f"outage from {when(self.start)} to {when(self.end)}; duration " + (
            "unknown" if duration is None else f"{duration:g} s"
        )


def first(*candidates: Instant | None) -> Instant:
    """The first candidate that has a time, else no evidence."""
    for c in candidates:
        if c is not None and c.at is not None:
            return c
    return NO_EVIDENCE


# ---- the server's record ----------------------------------------------------------------


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _instances(metrics: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Per-instance records: the fleet's list when reported, else each answer itself."""
    rows: dict[str, Mapping[str, Any]] = {}
    for i, answer in enumerate(metrics):
        fleet = answer.get("redis_outages_by_instance")
        for row in fleet if isinstance(fleet, list) else [answer]:
            if isinstance(row, Mapping):
                rows[str(row.get("instance_id") or f"#{i}")] = row
    return list(rows.values())


@dataclass(frozen=True)
class ServerRecord:
    """What the service's instances say about their relay: since when it is down (now),
    and the last completed outage window."""

    down_since: Instant | None  # earliest redis_unavailable_since among instances
    last_lost: Instant | None  # the last completed outage (merged across instances)
    last_regained: Instant | None

    @property
    def down(self) -> bool:
        return self.down_since is not None


def server_record(metrics: Iterable[Mapping[str, Any]]) -> ServerRecord:
    down: list[tuple[datetime, str]] = []
    windows: list[tuple[datetime, datetime, str]] = []
    for row in _instances(metrics):
        name = str(row.get("instance_id") or "an instance")
        since = _time(row.get("redis_unavailable_since"))
        if since is not None:
            down.append((since, name))
        last = row.get("last_redis_outage")
        if isinstance(last, Mapping):
            lost, regained = _time(last.get("lost_at")), _time(last.get("regained_at"))
            if lost is not None and regained is not None:
                windows.append((lost, regained, name))
    down_since = None
    if down:
        at, name = min(down)
        down_since = Instant(at, f"/dm/metrics redis_unavailable_since ({name})")
    if not windows:
        return ServerRecord(down_since, None, None)
    # The latest outage, merged with the instances' windows that overlap it.
    latest = max(windows, key=lambda w: w[1])
    overlapping = [w for w in windows if w[0] <= latest[1] and w[1] >= latest[0]]
    lost, lost_name = min((w[0], w[2]) for w in overlapping)
    regained, regained_name = max((w[1], w[2]) for w in overlapping)
    return ServerRecord(
        down_since,
        Instant(lost, f"/dm/metrics last_redis_outage.lost_at ({lost_name})"),
        Instant(regained, f"/dm/metrics last_redis_outage.regained_at ({regained_name})"),
    )


# ---- the service log --------------------------------------------------------------------

_STAMP = re.compile(
    r"^\s*(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
)


def line_time(line: str) -> datetime | None:
    """The timestamp a log line starts with (ISO 8601, Python logging's `asctime`,
    `journalctl -o short-iso`, `kubectl logs --timestamps`); local time when it names
    no zone."""
    match = _STAMP.match(line)
    if not match:
        return None
    # Python 3.11's fromisoformat reads a decimal comma, "Z" and any number of fractional
    # digits (kubectl writes 9; it keeps 6).
    try:
        parsed = datetime.fromisoformat(match.group(1))
    except ValueError:
        return None
    # astimezone takes a stamp that names no zone as local time, as the log's writer used it.
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class LogWindow:
    lost: Instant | None
    regained: Instant | None  # None while the log shows the outage still going on


def log_window(
    lines: Sequence[str], *, where: str, down: str = DOWN_MARKER, up: str = UP_MARKER
) -> LogWindow | None:
    """The last outage the log shows, or None when it shows none."""
    lost: datetime | None = None
    result: LogWindow | None = None
    dated = [(at, line) for line in lines if (at := line_time(line)) is not None]
    # Several instances' logs may come interleaved (kubectl logs -l ...): by time.
    for at, line in sorted(dated, key=lambda d: d[0]):
        low = line.lower()
        if down.lower() in low and lost is None:
            lost = at
            result = LogWindow(Instant(at, f"service log {where}: first {down!r} line"), None)
        elif up.lower() in low and lost is not None:
            result = LogWindow(
                result.lost if result else None,
                Instant(at, f"service log {where}: {up!r} line"),
            )
            lost = None
    return result


# ---- e2ee-ops's own journal -------------------------------------------------------------


def journal_window(entries: Iterable[Entry]) -> tuple[Instant | None, Instant | None]:
    """From earlier observations: the first one that saw Redis down after the last one
    that saw it healthy (the outage began at the latest then), and the first healthy one
    after that (it had ended by then)."""
    first_down: Entry | None = None
    last_up: Entry | None = None
    back: Entry | None = None
    for e in entries:
        if e.kind != REDIS_OBSERVATION:
            continue
        if e.data.get("down"):
            if first_down is None:
                first_down = e
            elif back is not None:  # a new outage after the last one ended
                last_up, first_down, back = back, e, None
        else:
            if first_down is None:
                last_up = e
            elif back is None:
                back = e
    if first_down is None:
        return None, None
    healthy = f"; last seen healthy at {last_up.ts.astimezone(UTC):%H:%M:%S} UTC" if last_up else ""
    start = Instant(
        first_down.ts.astimezone(UTC),
        f"journal: first seen down by `{first_down.command}` (at the latest){healthy}",
    )
    end = (
        Instant(back.ts.astimezone(UTC), f"journal: seen healthy again by `{back.command}`")
        if back
        else None
    )
    return start, end


def record_observation(
    journal: Journal | None, command: str, down: bool | None, evidence: Sequence[str]
) -> None:
    """Journal what a check saw of Redis (down or healthy; nothing when it could not
    tell) when it differs from the last observation, or, while an incident is open, at
    most once a minute (`redis watch` refreshes every few seconds): later outage
    records and `alerts check` date an outage from these."""
    if journal is None or down is None:
        return
    last = None
    for entry in journal.entries(kind=REDIS_OBSERVATION):
        last = entry
    if last is not None and bool(last.data.get("down")) == down:
        recent = (datetime.now(UTC) - last.ts).total_seconds() < REPEAT_SECONDS
        if recent or journal.open_incident_id() is None:
            return
    journal.append(
        REDIS_OBSERVATION, command=command, data={"down": down, "evidence": list(evidence)}
    )
