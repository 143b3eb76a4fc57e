"""Dating a Redis outage from evidence, exactly: each instant's source as the operator
reads it, the fleet's records merged, log lines in time order, the journal's observations,
and when a check's observation is journaled again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from e2ee_ops.journal import INCIDENT_OPEN, NOTE, REDIS_OBSERVATION, Entry, Journal
from e2ee_ops.procedures.outage_evidence import (
    NO_EVIDENCE,
    Instant,
    OutageWindow,
    first,
    journal_window,
    line_time,
    log_window,
    record_observation,
    server_record,
)
from tests.support.clock import stop_clock

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ---- instants and windows ---------------------------------------------------------------


def test_an_instant_as_json_names_its_source() -> None:
    assert Instant(T0, "the log").as_dict() == {
        "at": "2026-11-29T01:00:00+00:00",
        "source": "the log",
    }
    assert NO_EVIDENCE.as_dict() == {"at": None, "source": "unknown"}


def test_a_window_with_both_ends_has_a_duration_to_a_tenth_of_a_second() -> None:
    window = OutageWindow(Instant(T0, "log"), Instant(at(80.26), "metrics"))
    assert window.duration_seconds == 80.3
    assert window.as_dict() == {
        "start": {"at": "2026-11-29T01:00:00+00:00", "source": "log"},
        "end": {"at": "2026-11-29T01:01:20.260000+00:00", "source": "metrics"},
        "duration_seconds": 80.3,
        "duration": "80.3 s",
    }
    assert window.sentence() == (
        "outage from 2026-11-29 01:00:00 UTC (log) to 2026-11-29 01:01:20 UTC (metrics); "
        "duration 80.3 s"
    )


@pytest.mark.parametrize("known", ["start", "end"])
def test_one_unknown_end_makes_the_duration_unknown(known: str) -> None:
    instant = Instant(T0, "log")
    window = (
        OutageWindow(instant, NO_EVIDENCE)
        if known == "start"
        else OutageWindow(NO_EVIDENCE, instant)
    )
    assert window.duration_seconds is None
    assert window.as_dict()["duration_seconds"] is None
    assert window.as_dict()["duration"] == "unknown"
    stamp = "2026-11-29 01:00:00 UTC (log)"
    sides = (stamp, "unknown") if known == "start" else ("unknown", stamp)
    assert window.sentence() == f"outage from {sides[0]} to {sides[1]}; duration unknown"


def test_the_first_candidate_with_a_time_wins() -> None:
    later = Instant(at(5), "journal")
    assert first(None, Instant(None, "log"), Instant(T0, "metrics"), later) == Instant(
        T0, "metrics"
    )
    assert first(None, Instant(None, "log")) is NO_EVIDENCE
    assert first() is NO_EVIDENCE


# ---- the server's record ----------------------------------------------------------------


def outage(lost: float | None, regained: float | None) -> dict[str, Any]:
    return {
        "lost_at": None if lost is None else at(lost).isoformat(),
        "regained_at": None if regained is None else at(regained).isoformat(),
    }


def fleet(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"redis_outages_by_instance": list(rows)}


def test_down_since_is_the_earliest_instance_and_names_it() -> None:
    record = server_record(
        [
            fleet(
                {"instance_id": "a", "redis_unavailable_since": at(5).isoformat()},
                {"instance_id": "b", "redis_unavailable_since": at(2).isoformat()},
                {"instance_id": "c", "redis_unavailable_since": None},
            )
        ]
    )
    assert record.down
    assert record.down_since == Instant(at(2), "/dm/metrics redis_unavailable_since (b)")
    assert (record.last_lost, record.last_regained) == (None, None)


def test_an_instance_without_an_id_is_an_instance_and_every_answer_counts() -> None:
    # Two API answers without a fleet list and without ids: both are read.
    record = server_record(
        [
            {"redis_unavailable_since": at(1).isoformat()},
            {"redis_unavailable_since": at(9).isoformat()},
        ]
    )
    assert record.down_since == Instant(at(1), "/dm/metrics redis_unavailable_since (an instance)")


def test_the_same_instance_reported_by_two_answers_is_one_row() -> None:
    one = {"instance_id": "a", "redis_unavailable_since": at(1).isoformat()}
    again = {"instance_id": "a", "redis_unavailable_since": None}
    # The later answer replaces the earlier one: instance a is up now.
    assert not server_record([fleet(one), fleet(again)]).down


def test_rows_that_are_not_records_and_times_that_are_not_times_are_ignored() -> None:
    record = server_record(
        [
            fleet(
                "junk",  # type: ignore[arg-type]
                {"instance_id": "a", "redis_unavailable_since": 1764378000},
                {"instance_id": "b", "redis_unavailable_since": "yesterday"},
                {"instance_id": "c", "last_redis_outage": "2026-11-29T01:00:00+00:00"},
                {"instance_id": "d", "last_redis_outage": outage(0, None)},
                {"instance_id": "e", "last_redis_outage": outage(None, 10)},
            )
        ]
    )
    assert record == type(record)(None, None, None)
    assert not record.down


def test_a_fleet_list_that_is_not_a_list_means_the_answer_is_the_record() -> None:
    answer = {"redis_outages_by_instance": None, "redis_unavailable_since": at(3).isoformat()}
    record = server_record([answer])
    assert record.down_since == Instant(at(3), "/dm/metrics redis_unavailable_since (an instance)")


def test_a_time_without_a_zone_is_utc() -> None:
    naive = T0.replace(tzinfo=None).isoformat()
    record = server_record([{"instance_id": "a", "redis_unavailable_since": naive}])
    assert record.down_since is not None and record.down_since.at == T0
    assert record.down_since.at.tzinfo is UTC


def test_the_last_outage_merges_the_windows_that_touch_it_and_names_both_ends() -> None:
    record = server_record(
        [
            fleet(
                {"instance_id": "old", "last_redis_outage": outage(-3600, -3500)},
                {"instance_id": "a", "last_redis_outage": outage(0, 80)},
                {"instance_id": "b", "last_redis_outage": outage(2, 81)},
                # Ends exactly when the latest began, and begins exactly when it ended.
                {"instance_id": "c", "last_redis_outage": outage(-10, 2)},
                {"instance_id": "d", "last_redis_outage": outage(81, 81)},
            )
        ]
    )
    assert record.last_lost == Instant(at(-10), "/dm/metrics last_redis_outage.lost_at (c)")
    assert record.last_regained == Instant(at(81), "/dm/metrics last_redis_outage.regained_at (d)")
    assert not record.down


# ---- the service log --------------------------------------------------------------------


def test_timestamps_in_every_writer_s_form() -> None:
    assert line_time("2026-11-29T01:00:00Z Redis unavailable") == T0
    assert line_time("  2026-11-29 01:00:00,500+00:00 relay") == at(0.5)
    assert line_time("2026-11-29T03:00:00+0200 x") == T0
    assert line_time("2026-11-29T01:00:00.123456789-01:00 x") == at(3600.123456)
    assert line_time("2026-13-29T01:00:00Z month 13") is None
    assert line_time("relay: 2026-11-29T01:00:00Z") is None
    stamp = line_time("2026-11-29T01:00:00Z x")
    assert stamp is not None and stamp.tzinfo is UTC


@pytest.fixture
def three_hours_east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local zone is UTC+3 for the test."""
    monkeypatch.setenv("TZ", "Etc/GMT-3")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_stamp_without_a_zone_is_the_local_time(three_hours_east: None) -> None:
    assert line_time("2026-11-29 04:00:00,250 WARNING relay") == at(0.25)


def test_the_log_sources_name_the_file_and_the_markers() -> None:
    lines = [
        "2026-11-29T01:00:00Z relay: REDIS UNAVAILABLE (connection refused)",
        "2026-11-29T01:01:20Z relay: redis available AGAIN",
    ]
    found = log_window(lines, where="api.log")
    assert found is not None
    assert found.lost == Instant(T0, "service log api.log: first 'Redis unavailable' line")
    assert found.regained == Instant(at(80), "service log api.log: 'Redis available again' line")


def test_custom_markers_are_matched_whatever_their_case() -> None:
    lines = ["2026-11-29T01:00:00Z lost the bus", "2026-11-29T01:00:09Z Bus Back"]
    found = log_window(lines, where="x", down="Lost The BUS", up="bus back")
    assert found is not None and found.lost and found.regained
    assert found.lost.source == "service log x: first 'Lost The BUS' line"
    assert found.regained == Instant(at(9), "service log x: 'bus back' line")


def test_interleaved_logs_are_read_in_time_order_not_text_order() -> None:
    lines = [
        # Neither the order given nor text order (space-separated stamps first) is time order.
        "2026-11-29 01:00:30+00:00 Redis available again",
        "2026-11-29T01:00:00Z Redis unavailable",
        "2026-11-29T00:59:00Z Redis available again",
        "no stamp: Redis unavailable",
    ]
    found = log_window(lines, where="k8s")
    assert found is not None and found.lost and found.regained
    assert (found.lost.at, found.regained.at) == (T0, at(30))


def test_lines_with_the_same_stamp_keep_their_order() -> None:
    lines = ["2026-11-29T01:00:00Z Redis unavailable", "2026-11-29T01:00:00Z Redis available again"]
    found = log_window(lines, where="x")
    assert found is not None and found.lost and found.regained
    assert found.regained.at == T0


def test_a_recovery_line_without_an_outage_before_it_is_no_outage() -> None:
    assert log_window(["2026-11-29T01:00:00Z Redis available again"], where="x") is None


def test_a_new_outage_after_a_recovery_is_the_one_reported_still_going_on() -> None:
    lines = [
        "2026-11-29T01:00:00Z Redis unavailable",
        "2026-11-29T01:00:10Z Redis available again",
        "2026-11-29T01:00:20Z Redis available again",
        "2026-11-29T01:05:00Z Redis unavailable",
    ]
    found = log_window(lines, where="x")
    assert found is not None
    assert found.lost == Instant(at(300), "service log x: first 'Redis unavailable' line")
    assert found.regained is None


# ---- e2ee-ops's own journal -------------------------------------------------------------


def obs(ts: datetime, down: bool, command: str = "redis check") -> Entry:
    return Entry(ts, "me", command, REDIS_OBSERVATION, {"down": down})


def test_the_journal_window_of_the_last_outage_with_its_sources() -> None:
    entries = [
        obs(at(-120), False),
        obs(at(-60), False, "alerts check"),
        Entry(at(-30), "me", "note", NOTE, {"down": True}),  # not an observation
        obs(T0, True, "redis watch"),
        obs(at(30), True),
        obs(at(90), False, "redis recover"),
        obs(at(100), False),
    ]
    start, end = journal_window(entries)
    assert start == Instant(
        T0,
        "journal: first seen down by `redis watch` (at the latest); "
        "last seen healthy at 00:59:00 UTC",
    )
    assert end == Instant(at(90), "journal: seen healthy again by `redis recover`")


def test_a_second_outage_starts_afresh_after_the_first_ended() -> None:
    entries = [obs(at(-60), True), obs(at(-50), False), obs(T0, True, "alerts check")]
    start, end = journal_window(entries)
    assert start == Instant(
        T0,
        "journal: first seen down by `alerts check` (at the latest); "
        "last seen healthy at 00:59:10 UTC",
    )
    assert end is None


def test_a_journal_that_never_saw_redis_healthy_says_so_by_saying_nothing() -> None:
    east = timezone(timedelta(hours=2))
    start, end = journal_window([obs(T0.astimezone(east), True)])
    assert start == Instant(T0, "journal: first seen down by `redis check` (at the latest)")
    assert start.at is not None and start.at.tzinfo is UTC
    assert end is None


def test_times_in_the_journal_window_are_utc_whatever_zone_the_entries_carry() -> None:
    east = timezone(timedelta(hours=2))
    entries = [
        obs(at(-60).astimezone(east), False),
        obs(T0, True),
        obs(at(5).astimezone(east), False),
    ]
    start, end = journal_window(entries)
    assert start is not None and start.source.endswith("last seen healthy at 00:59:00 UTC")
    assert end is not None and end.at is not None and end.at.tzinfo is UTC


# ---- journaling a check's observation ---------------------------------------------------


def journal_at(path: Path, *ages: tuple[float, bool]) -> Journal:
    """A journal whose observations were made `age` seconds ago (down or not)."""
    for age, down in ages:
        then = datetime.now(UTC) - timedelta(seconds=age)
        Journal(path, clock=lambda then=then: then, actor="me").append(  # type: ignore[misc]
            REDIS_OBSERVATION, command="redis check", data={"down": down}
        )
    return Journal(path, actor="me")


def observations(journal: Journal) -> list[tuple[str, dict[str, Any]]]:
    return [(e.command, e.data) for e in journal.entries(kind=REDIS_OBSERVATION)]


def test_a_first_observation_is_journaled_with_its_evidence(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", actor="me")
    record_observation(journal, "redis watch", True, ("PING refused", "redis_status=unavailable"))
    assert observations(journal) == [
        ("redis watch", {"down": True, "evidence": ["PING refused", "redis_status=unavailable"]})
    ]


def test_could_not_tell_is_not_an_observation(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", actor="me")
    record_observation(journal, "redis check", None, ["timed out"])
    assert observations(journal) == []
    record_observation(None, "redis check", True, ["PING refused"])  # no journal: nothing


def test_a_change_is_journaled_at_once(tmp_path: Path) -> None:
    journal = journal_at(tmp_path / "j.jsonl", (3, True))
    record_observation(journal, "redis check", False, [])
    assert observations(journal)[-1] == ("redis check", {"down": False, "evidence": []})
    assert len(observations(journal)) == 2


def test_the_last_observation_is_the_one_compared(tmp_path: Path) -> None:
    journal = journal_at(tmp_path / "j.jsonl", (20, True), (10, False))
    record_observation(journal, "redis check", False, [])
    assert len(observations(journal)) == 2


def test_an_unchanged_observation_is_not_repeated_without_an_incident(tmp_path: Path) -> None:
    journal = journal_at(tmp_path / "j.jsonl", (600, True))
    record_observation(journal, "redis check", True, [])
    assert len(observations(journal)) == 1


def test_an_observation_without_down_counts_as_healthy(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path, actor="me").append(REDIS_OBSERVATION, command="redis check", data={})
    record_observation(Journal(path, actor="me"), "redis check", False, [])
    assert len(observations(Journal(path, actor="me"))) == 1


def test_during_an_incident_an_unchanged_observation_is_repeated_once_a_minute(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path, actor="me").append(INCIDENT_OPEN, command="incident open", incident_id="INC-1")
    journal = journal_at(path, (30, True))
    record_observation(journal, "redis watch", True, ["PING refused"])
    assert len(observations(journal)) == 1  # 30 s ago: not yet
    journal = journal_at(tmp_path / "k.jsonl", (90, True))
    journal.append(INCIDENT_OPEN, command="incident open", incident_id="INC-2")
    record_observation(journal, "redis watch", True, ["PING refused"])
    assert observations(journal)[-1] == (
        "redis watch",
        {"down": True, "evidence": ["PING refused"]},
    )
    assert len(observations(journal)) == 2


def test_a_time_with_a_zone_keeps_it() -> None:
    record = server_record(
        [{"instance_id": "a", "redis_unavailable_since": "2026-11-29T03:00:00+02:00"}]
    )
    assert record.down_since is not None and record.down_since.at == T0


def test_an_instance_down_now_and_an_earlier_outage_are_both_reported() -> None:
    record = server_record(
        [
            fleet(
                {"instance_id": "a", "redis_unavailable_since": at(100).isoformat()},
                {"instance_id": "b", "last_redis_outage": outage(0, 80)},
            )
        ]
    )
    assert record.down_since == Instant(at(100), "/dm/metrics redis_unavailable_since (a)")
    assert record.last_lost == Instant(T0, "/dm/metrics last_redis_outage.lost_at (b)")


def test_a_window_lost_after_the_latest_outage_ended_is_not_part_of_it() -> None:
    # A record whose lost_at is after its regained_at cannot belong to the latest outage.
    record = server_record(
        [
            fleet(
                {"instance_id": "a", "last_redis_outage": outage(0, 80)},
                {"instance_id": "z", "last_redis_outage": outage(100, 80)},
            )
        ]
    )
    assert record.last_regained == Instant(at(80), "/dm/metrics last_redis_outage.regained_at (a)")


def test_the_last_healthy_time_is_written_in_utc_whatever_the_local_zone(
    three_hours_east: None,
) -> None:
    start, _ = journal_window([obs(at(-60), False), obs(T0, True)])
    assert start is not None and start.source.endswith("last seen healthy at 00:59:00 UTC")


def test_an_unchanged_observation_exactly_a_minute_old_is_repeated_during_an_incident(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from e2ee_ops.procedures import outage_evidence

    stop_clock(monkeypatch, outage_evidence, T0)
    journal = Journal(tmp_path / "j.jsonl", clock=lambda: at(-60), actor="me")
    journal.append(REDIS_OBSERVATION, command="redis watch", data={"down": True})
    journal.append(INCIDENT_OPEN, command="incident open", incident_id="INC-1")
    record_observation(journal, "redis watch", True, ["PING refused"])
    assert len(observations(journal)) == 2
    journal = Journal(tmp_path / "k.jsonl", clock=lambda: at(-59.999), actor="me")
    journal.append(REDIS_OBSERVATION, command="redis watch", data={"down": True})
    journal.append(INCIDENT_OPEN, command="incident open", incident_id="INC-2")
    record_observation(journal, "redis watch", True, ["PING refused"])
    assert len(observations(journal)) == 1
