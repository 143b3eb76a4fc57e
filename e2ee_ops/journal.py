"""The incident journal: an append-only JSON Lines file every command writes to.

Each line is one entry: `{"ts", "actor", "command", "kind", "incident_id", "data"}`.
Appends are safe across processes (cron runs next to an operator): the file is
opened with O_APPEND, locked with flock, and each entry is one write() of one line.
Strings in `data` are redacted before they are written.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from e2ee_ops.errors import ActionFailed, ConfigError, UsageError, redact

# Entry kinds: every writer and reader names them from here. Readers must ignore kinds
# they do not know (a newer version may add some).
PLAN = "plan"  # an acting command's plan, before it acts (--execute)
OUTCOME = "outcome"  # what came of it, or of a read-only check worth keeping
NOTE = "note"
REDIS_OUTAGE = "redis_outage"  # one outage recorded by `redis recover`
REDIS_OBSERVATION = "redis_observation"  # what a check saw of Redis (down or healthy)
POSTMORTEM = "postmortem"  # a post-mortem checklist written for an incident
INCIDENT_OPEN = "incident_open"
INCIDENT_CLOSE = "incident_close"
INCIDENT_LOG = "incident_log"  # a note the operator adds to the open incident's timeline
INCIDENT_NOTIFY = "incident_notify"  # the outcome of announcing an incident (webhook, pager)
INCIDENT_KINDS = (INCIDENT_OPEN, INCIDENT_CLOSE)  # the kinds that say which incident is open

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def current_actor(environ: Mapping[str, str] | None = None) -> str:
    """$E2EE_OPS_ACTOR, else user@host."""
    environ = os.environ if environ is None else environ
    if environ.get("E2EE_OPS_ACTOR"):
        return environ["E2EE_OPS_ACTOR"]
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in a container
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Entry:
    ts: datetime
    actor: str
    command: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    incident_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "ts": self.ts.astimezone(UTC).isoformat(timespec="milliseconds"),
                "actor": self.actor,
                "command": self.command,
                "kind": self.kind,
                "incident_id": self.incident_id,
                "data": _redacted(self.data),
            },
            ensure_ascii=False,
            sort_keys=False,
            default=str,
        )

    @classmethod
    def from_json(cls, line: str) -> Entry:
        raw = json.loads(line)
        return cls(
            ts=datetime.fromisoformat(raw["ts"]),
            actor=str(raw["actor"]),
            command=str(raw["command"]),
            kind=str(raw["kind"]),
            data=dict(raw.get("data") or {}),
            incident_id=raw.get("incident_id"),
        )


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


class Journal:
    """Append to and read back one journal file."""

    def __init__(self, path: Path, *, clock: Clock = utc_now, actor: str | None = None) -> None:
        self.path = path.expanduser()
        self._clock = clock
        self._actor = actor

    def append(
        self,
        kind: str,
        *,
        command: str,
        data: Mapping[str, Any] | None = None,
        incident_id: str | None = None,
    ) -> Entry:
        """Append one entry; it joins the open incident unless `incident_id` is given.

        An `incident_open` entry is refused (UsageError) while another incident is open:
        the check and the append happen under one lock, so of two `incident open` run at
        the same instant exactly one opens an incident.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = _open_incident_id(_parse(_read_all(fd), kinds=INCIDENT_KINDS))
            if kind == INCIDENT_OPEN and current is not None:
                raise UsageError(
                    f"incident {current} is still open",
                    hint="log to it with `e2ee-ops incident log`, or close it first",
                )
            entry = Entry(
                ts=self._clock(),
                actor=self._actor or current_actor(),
                command=command,
                kind=kind,
                data=dict(data or {}),
                incident_id=incident_id
                if incident_id is not None or kind == INCIDENT_OPEN
                else current,
            )
            line = (entry.to_json() + "\n").encode("utf-8")
            written = os.write(fd, line)  # one write: readers never see half a line
            if written != len(line):
                raise ActionFailed(f"short write to the journal {self.path}")
        finally:
            os.close(fd)  # closing releases the lock
        return entry

    def entries(
        self, *, kind: str | None = None, incident_id: str | None = None
    ) -> Iterator[Entry]:
        """Entries in file order, optionally filtered; unreadable lines are skipped."""
        for entry in _parse(self._read(), kinds=None if kind is None else (kind,)):
            if kind is not None and entry.kind != kind:
                continue
            if incident_id is not None and entry.incident_id != incident_id:
                continue
            yield entry

    def _read(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return _read_all(fd)
        except OSError as exc:  # e.g. EISDIR: journal.path is a directory
            raise self._unusable(exc) from None
        finally:
            os.close(fd)

    def _unusable(self, exc: OSError) -> ConfigError:
        # A journal that cannot be written is a configuration problem (exit 3), found
        # before anything acts: the plan entry is written first.
        return ConfigError(
            f"cannot use the journal {self.path} ({exc.strerror or type(exc).__name__})",
            hint="set journal.path to a writable file",
        )

    def open_incident_id(self) -> str | None:
        """The id of the incident opened last and not yet closed, if any."""
        return _open_incident_id(_parse(self._read(), kinds=INCIDENT_KINDS))


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes, *, kinds: tuple[str, ...] | None = None) -> Iterator[Entry]:
    """The entries of `raw`; with `kinds`, only lines that name one of them are parsed (a
    line without the word cannot be of that kind): the journal grows by every cron run,
    and every append and most commands look for the open incident."""
    lines = raw.splitlines() if kinds is None else _lines_naming(raw, kinds)
    for line in lines:
        try:
            yield Entry.from_json(line.decode("utf-8"))
        except (ValueError, KeyError, TypeError):
            continue  # a foreign or damaged line must not hide the rest


def _lines_naming(raw: bytes, words: Iterable[str]) -> list[bytes]:
    """The lines of `raw` that contain one of `words`, in file order: found by searching
    the whole text, not by splitting it (a year of cron runs is millions of lines)."""
    spans: set[tuple[int, int]] = set()
    for word in words:
        needle = word.encode("utf-8")
        at = raw.find(needle)
        while at != -1:
            start = raw.rfind(b"\n", 0, at) + 1
            end = raw.find(b"\n", at)
            end = len(raw) if end == -1 else end
            spans.add((start, end))
            at = raw.find(needle, end)
    return [raw[start:end] for start, end in sorted(spans)]


def _open_incident_id(entries: Iterable[Entry]) -> str | None:
    """An `incident_open` entry carries its id in `incident_id`; an `incident_close`
    entry with the same id closes it. The last one still open wins."""
    open_ids: list[str] = []
    for entry in entries:
        if entry.incident_id is None:
            continue
        if entry.kind == INCIDENT_OPEN:
            open_ids.append(entry.incident_id)
        elif entry.kind == INCIDENT_CLOSE and entry.incident_id in open_ids:
            open_ids.remove(entry.incident_id)
    return open_ids[-1] if open_ids else None
