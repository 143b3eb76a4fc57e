"""Outage instants from evidence: the server's record, log lines, the journal; else unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from e2ee_ops.journal import REDIS_OBSERVATION, Entry
from e2ee_ops.procedures.outage_evidence import (
    OutageWindow,
    first,
    journal_window,
    line_time,
    log_window,
    server_record,
)

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)


def test_log_timestamps_of_python_journalctl_and_kubectl() -> None:
    assert line_time("2026-11-29T01:00:00+00:00 host api[1]: x") == T0
    assert line_time("2026-11-29T01:00:00.123456789Z Redis unavailable") == T0 + timedelta(
        microseconds=123456
    )
    local = line_time("2026-11-29 01:00:00,500 WARNING relay Redis unavailable")
    assert local is not None and local.tzinfo is UTC
    assert line_time("Nov 29 01:00:00 host api: Redis unavailable") is None  # no year


def test_the_last_outage_in_the_log_names_its_lines() -> None:
    lines = [
        "2026-11-29T00:00:00Z Redis unavailable: old",
        "2026-11-29T00:00:05Z Redis available again",
        "2026-11-29T01:00:00Z Redis unavailable: refused",
        "2026-11-29T01:00:01Z Redis unavailable: refused",  # repeats do not move the start
        "2026-11-29T01:01:20Z Redis available again",
    ]
    found = log_window(lines, where="app.log")
    assert found is not None and found.lost and found.regained
    assert (found.lost.at, found.regained.at) == (T0, T0 + timedelta(seconds=80))
    assert "app.log" in found.lost.source
    ongoing = log_window(lines[:3], where="app.log")
    assert ongoing is not None and ongoing.regained is None
    assert log_window(["2026-11-29T01:00:00Z all fine"], where="app.log") is None


def test_the_server_record_merges_the_fleet_and_prefers_the_earliest_loss() -> None:
    answer = {
        "redis_outages_by_instance": [
            {
                "instance_id": "a",
                "redis_unavailable_since": None,
                "last_redis_outage": {
                    "lost_at": T0.isoformat(),
                    "regained_at": (T0 + timedelta(seconds=80)).isoformat(),
                },
            },
            {
                "instance_id": "b",
                "redis_unavailable_since": None,
                "last_redis_outage": {
                    "lost_at": (T0 + timedelta(seconds=2)).isoformat(),
                    "regained_at": (T0 + timedelta(seconds=81)).isoformat(),
                },
            },
        ]
    }
    record = server_record([answer])
    assert not record.down
    assert record.last_lost and record.last_lost.at == T0 and "(a)" in record.last_lost.source
    assert record.last_regained and record.last_regained.at == T0 + timedelta(seconds=81)
    assert server_record([{"redis_status": "ok"}]).last_lost is None


def _obs(ts: datetime, down: bool) -> Entry:
    return Entry(ts, "me", "redis check", REDIS_OBSERVATION, {"down": down})


def test_the_journal_dates_the_start_at_the_latest_and_the_end() -> None:
    entries = [
        _obs(T0 - timedelta(minutes=5), False),
        _obs(T0, True),
        _obs(T0 + timedelta(seconds=30), True),
    ]
    start, end = journal_window(entries)
    assert start and start.at == T0 and "at the latest" in start.source
    assert end is None
    start, end = journal_window([*entries, _obs(T0 + timedelta(seconds=90), False)])
    assert end and end.at == T0 + timedelta(seconds=90)
    assert journal_window([_obs(T0, False)]) == (None, None)


def test_no_evidence_is_unknown_never_a_guess() -> None:
    window = OutageWindow(first(None), first(None))
    assert window.duration_seconds is None
    assert window.as_dict()["duration"] == "unknown"
    assert window.as_dict()["start"] == {"at": None, "source": "unknown"}


def test_a_blocked_account_id_is_one_user_not_a_count() -> None:
    from e2ee_ops.journal import OUTCOME
    from e2ee_ops.procedures.postmortem import users_blocked

    block = Entry(T0, "me", "abuse block 343", OUTCOME, {"status": "OK", "account_id": 343})
    again = Entry(T0, "me", "abuse block 343", OUTCOME, {"status": "OK", "account_id": 343})
    assert users_blocked([block, again]) == (1, ["343"])
    assert users_blocked([]) is None
