from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

from e2ee_ops.journal import (
    INCIDENT_CLOSE,
    INCIDENT_OPEN,
    NOTE,
    OUTCOME,
    PLAN,
    Journal,
    current_actor,
)

FIXED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_append_writes_one_json_line_per_entry(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state" / "journal.jsonl", clock=lambda: FIXED, actor="ann@box")
    journal.append(PLAN, command="rollback flag", data={"steps": ["a"]})
    journal.append(OUTCOME, command="rollback flag", data={"ok": True})
    lines = journal.path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == {
        "ts": "2026-01-02T03:04:05.000+00:00",
        "actor": "ann@box",
        "command": "rollback flag",
        "kind": "plan",
        "incident_id": None,
        "data": {"steps": ["a"]},
    }
    assert (journal.path.stat().st_mode & 0o777) == 0o600


def test_entries_filter_by_kind_and_incident_and_skip_damaged_lines(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", actor="a@b")
    journal.append(NOTE, command="incident log", data={"text": "before"})
    journal.append(INCIDENT_OPEN, command="incident open", incident_id="INC-1")
    journal.append(NOTE, command="incident log", data={"text": "during"})
    with journal.path.open("a") as fh:
        fh.write("{not json\n")
    journal.append(INCIDENT_CLOSE, command="incident close", incident_id="INC-1")
    journal.append(NOTE, command="incident log", data={"text": "after"})

    assert [e.data["text"] for e in journal.entries(kind=NOTE)] == ["before", "during", "after"]
    assert [e.kind for e in journal.entries(incident_id="INC-1")] == [
        INCIDENT_OPEN,
        NOTE,
        INCIDENT_CLOSE,
    ]
    assert journal.open_incident_id() is None


def test_open_incident_hook(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", actor="a@b")
    assert journal.open_incident_id() is None
    journal.append(INCIDENT_OPEN, command="incident open", incident_id="INC-7")
    assert journal.open_incident_id() == "INC-7"
    assert journal.append(NOTE, command="x").incident_id == "INC-7"


def test_the_open_incident_is_found_among_entries_that_only_mention_one(tmp_path: Path) -> None:
    # Only lines naming an incident kind are parsed for it: entries whose data or command
    # mention those words, or whose kind contains them, must not open or close anything.
    journal = Journal(tmp_path / "j.jsonl", actor="a@b")
    journal.append(INCIDENT_OPEN, command="incident open", incident_id="INC-1")
    journal.append(NOTE, command="incident_close INC-1", data={"kind": INCIDENT_CLOSE})
    journal.append(f"{INCIDENT_CLOSE}_draft", command="x", incident_id="INC-1")
    journal.append(NOTE, command="x", data={"text": "incident_open"}, incident_id="INC-2")
    with journal.path.open("a") as fh:
        fh.write('{"kind": "incident_close", damaged\n')
    assert journal.open_incident_id() == "INC-1"
    assert [e.kind for e in journal.entries(kind=INCIDENT_CLOSE)] == []
    assert journal.append(NOTE, command="y").incident_id == "INC-1"
    journal.append(INCIDENT_CLOSE, command="incident close", incident_id="INC-1")
    assert journal.open_incident_id() is None


def test_secrets_in_data_are_redacted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", actor="a@b")
    journal.append(NOTE, command="x", data={"curl": "-H 'Authorization: Bearer Tok123456789'"})
    assert "Tok123456789" not in journal.path.read_text()


def test_actor_from_environment_or_user_at_host() -> None:
    assert current_actor({"E2EE_OPS_ACTOR": "cron@ops"}) == "cron@ops"
    assert "@" in current_actor({})


def _append_many(path: str, worker: int, count: int) -> None:
    journal = Journal(Path(path), actor=f"w{worker}@test")
    payload = "x" * 5000  # larger than PIPE_BUF: interleaving would show
    for i in range(count):
        journal.append(NOTE, command="test", data={"worker": worker, "i": i, "pad": payload})


def test_concurrent_appends_from_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), w, 50)) for w in range(6)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 300
    seen = {(json.loads(line)["data"]["worker"], json.loads(line)["data"]["i"]) for line in lines}
    assert len(seen) == 300
    assert len(list(Journal(path).entries())) == 300


def test_entry_kinds_are_the_words_written_on_disk() -> None:
    # Journals already written name their entries so; renaming a kind orphans them.
    from e2ee_ops import journal

    kinds = {name: getattr(journal, name) for name in dir(journal) if name.isupper()}
    assert {k: v for k, v in kinds.items() if isinstance(v, str)} == {
        "PLAN": "plan",
        "OUTCOME": "outcome",
        "NOTE": "note",
        "REDIS_OUTAGE": "redis_outage",
        "REDIS_OBSERVATION": "redis_observation",
        "POSTMORTEM": "postmortem",
        "INCIDENT_OPEN": "incident_open",
        "INCIDENT_CLOSE": "incident_close",
        "INCIDENT_LOG": "incident_log",
        "INCIDENT_NOTIFY": "incident_notify",
    }
