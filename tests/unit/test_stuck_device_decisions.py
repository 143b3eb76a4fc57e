"""`devices stuck` decisions on given rows: which device is stuck and why, what the report,
the reminders and the watch say, with the database, the notifiers and the clock replaced by
small stand-ins that record what they are asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from e2ee_ops.adapters.devices_db import DeviceRow, StuckQueryResult
from e2ee_ops.config import Thresholds
from e2ee_ops.errors import MaybeDelivered, ServiceError, SkipReminder, UsageError
from e2ee_ops.procedures.devices import (
    REMINDER_SUBJECT,
    WATCH_LIMIT,
    NotifyOptions,
    StuckOptions,
    WatchTick,
    find_stuck_devices,
    judge,
    notify_stuck_devices,
    reminder_for,
    stuck_options,
    watch_stuck_devices,
)
from e2ee_ops.status import Finding, Report, Status

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPTIONS = StuckOptions(critical=5, warning=10, spk_max_age_days=90, inactive_days=30, limit=50)


def row(
    device_id: str,
    prekeys: int,
    *,
    spk_days: float = 1.0,
    seen_days: float = 0.5,
    user_id: int = 7,
    username: str = "alice",
    email: str | None = "alice@example.com",
    name: str = "phone",
    status: str = "active",
) -> DeviceRow:
    return DeviceRow(
        device_id=device_id,
        user_id=user_id,
        username=username,
        email=email,
        device_name=name,
        prekeys_remaining=prekeys,
        signed_prekey_uploaded_at=NOW - timedelta(days=spk_days),
        last_seen_at=NOW - timedelta(days=seen_days),
        status=status,
    )


class Devices:
    """The devices database: the stuck query's answer, then each watch check's rows."""

    def __init__(
        self,
        rows: list[DeviceRow],
        *,
        total: int | None = None,
        critical_total: int = 0,
        checks: list[dict[str, DeviceRow]] | None = None,
    ) -> None:
        self.rows = rows
        self.total = len(rows) if total is None else total
        self.critical_total = critical_total
        self.checks = checks or []
        self.queries: list[dict[str, Any]] = []
        self.asked: list[list[str]] = []
        self.log = Log()
        self.lock_waits: list[float] = []
        self.wait_first = False

    def stuck_devices(self, params: dict[str, Any]) -> StuckQueryResult:
        self.queries.append(params)
        return StuckQueryResult(self.rows[: params["limit"]], self.total, self.critical_total, NOW)

    def now(self) -> datetime:
        return NOW

    def devices(self, device_ids: list[str]) -> dict[str, DeviceRow]:
        self.asked.append(device_ids)
        return self.checks.pop(0)

    @contextmanager
    def notify_lock(self, *, wait_seconds: float, on_wait: Any) -> Iterator[Log]:
        self.lock_waits.append(wait_seconds)
        if self.wait_first:
            on_wait()
        yield self.log


class Log:
    """The reminder table: what was recorded, withdrawn and asked about."""

    def __init__(self) -> None:
        self.already: set[tuple[str, str]] = set()
        self.records: list[tuple[str, int, str, str]] = []
        self.forgotten: list[int] = []
        self.asked: list[tuple[list[str], float]] = []

    def recently_sent(self, device_ids: list[str], window_hours: float) -> set[tuple[str, str]]:
        self.asked.append((device_ids, window_hours))
        return self.already

    def record(self, device_id: str, user_id: int, channel: str, severity: str) -> int:
        self.records.append((device_id, user_id, channel, severity))
        return 100 + len(self.records)

    def forget(self, record_id: int) -> None:
        self.forgotten.append(record_id)


class Channel:
    """A notifier that records what it sends and fails as told, by device id."""

    def __init__(self, channel: str, fails: dict[str, Exception] | None = None) -> None:
        self.channel = channel
        self.fails = fails or {}
        self.sent: list[Any] = []

    def send(self, reminder: Any) -> None:
        if reminder.device_id in self.fails:
            raise self.fails[reminder.device_id]
        self.sent.append(reminder)

    def close(self) -> None:
        pass


# ---- options and verdicts ----------------------------------------------------------------


def test_stuck_options_take_the_configured_thresholds() -> None:
    th = Thresholds(otpk_critical=4, otpk_warning=12, signed_prekey_max_age_days=60)
    assert stuck_options(th) == StuckOptions(
        critical=4, warning=12, spk_max_age_days=60, inactive_days=30, user_id=None, limit=50
    )
    assert stuck_options(
        th, threshold=4, inactive_days=3, user_id=9, limit=2, pools_only=True
    ) == StuckOptions(
        critical=4,
        warning=4,
        spk_max_age_days=60,
        inactive_days=3,
        user_id=9,
        limit=2,
        pools_only=True,
    )


def test_a_threshold_under_the_critical_one_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as refused:
        stuck_options(Thresholds(), threshold=4)
    assert refused.value.sentence == (
        "--threshold 4 is below the critical threshold (5); every critical device would be missed"
    )


@pytest.mark.parametrize(
    ("prekeys", "status", "reasons"),
    [
        (4, Status.CRITICAL, ["prekeys 4 < 5 (critical)"]),
        (5, Status.WARNING, ["prekeys 5 < 10 (warning)"]),
        (9, Status.WARNING, ["prekeys 9 < 10 (warning)"]),
        (10, Status.OK, []),
    ],
)
def test_pool_thresholds_are_exclusive(prekeys: int, status: Status, reasons: list[str]) -> None:
    verdict = judge(row("d1", prekeys), OPTIONS, NOW)
    assert (verdict.status, verdict.reasons) == (status, reasons)


def test_ages_are_measured_in_days_and_exclusive() -> None:
    at_limit = judge(row("d1", 20, spk_days=90, seen_days=30), OPTIONS, NOW)
    assert (at_limit.status, at_limit.reasons) == (Status.OK, [])
    assert (at_limit.spk_age_days, at_limit.seen_days_ago) == (90.0, 30.0)
    stale = judge(row("d1", 20, spk_days=100, seen_days=45), OPTIONS, NOW)
    assert stale.status is Status.WARNING
    assert stale.reasons == ["signed prekey 100 d old > 90 d", "not seen for 45 d > 30 d"]
    assert not judge(row("d1", 20, seen_days=45), OPTIONS, NOW).needs_keys
    assert stale.needs_keys


def test_an_old_key_does_not_lower_a_critical_pool() -> None:
    verdict = judge(row("d1", 1, spk_days=100, seen_days=45), OPTIONS, NOW)
    assert verdict.status is Status.CRITICAL and len(verdict.reasons) == 3
    assert verdict.needs_keys


def test_a_device_inactive_only_needs_no_keys_but_is_a_warning() -> None:
    verdict = judge(row("d1", 20, seen_days=31), OPTIONS, NOW)
    assert (verdict.status, verdict.needs_keys) == (Status.WARNING, False)


def test_a_verdict_as_data_names_every_documented_key() -> None:
    verdict = judge(row("d1", 3, spk_days=1.23456, seen_days=2.34567), OPTIONS, NOW)
    assert verdict.as_data() == {
        "device_id": "d1",
        "user_id": 7,
        "username": "alice",
        "device_name": "phone",
        "prekeys_remaining": 3,
        "signed_prekey_age_days": 1.2,
        "last_seen_at": (NOW - timedelta(days=2.34567)).isoformat(),
        "last_seen_days_ago": 2.3,
        "status": "CRITICAL",
        "reasons": ["prekeys 3 < 5 (critical)"],
    }


# ---- the report --------------------------------------------------------------------------


def test_the_query_gets_the_thresholds_in_seconds() -> None:
    db = Devices([])
    options = StuckOptions(
        critical=4, warning=8, spk_max_age_days=2, inactive_days=3, user_id=11, limit=6
    )
    find_stuck_devices(db=db, options=options)
    assert db.queries == [
        {
            "critical": 4,
            "warning": 8,
            "spk_max_age_seconds": 172800.0,
            "inactive_seconds": 259200.0,
            "user_id": 11,
            "limit": 6,
            "at": None,
        }
    ]
    find_stuck_devices(db=db, options=StuckOptions(4, 8, 2, 3, pools_only=True))
    assert db.queries[1]["spk_max_age_seconds"] is None
    assert db.queries[1]["inactive_seconds"] is None


def test_report_lists_devices_with_their_reasons() -> None:
    rows = [
        row("d1", 2, spk_days=100, seen_days=1.26, name="old phone"),
        row("d2", 7, user_id=8, username="bob", name="tablet"),
    ]
    report = find_stuck_devices(db=Devices(rows, critical_total=1), options=OPTIONS)
    assert report.title == "devices stuck"
    assert report.findings == [
        Finding(
            name="device d1",
            status=Status.CRITICAL,
            value=2,
            summary="user alice (#7), device 'old phone': 2 prekeys left, signed prekey "
            "100 d old, last seen 1.3 d ago; prekeys 2 < 5 (critical); "
            "signed prekey 100 d old > 90 d",
        ),
        Finding(
            name="device d2",
            status=Status.WARNING,
            value=7,
            summary="user bob (#8), device 'tablet': 7 prekeys left, signed prekey 1 d old, "
            "last seen 0.5 d ago; prekeys 7 < 10 (warning)",
        ),
    ]
    assert report.summary == "2 stuck device(s), 1 critical (prekeys < 5), 1 warning"
    data = report.data
    assert [d["device_id"] for d in data.pop("devices")] == ["d1", "d2"]
    assert data == {
        "total": 2,
        "critical": 1,
        "thresholds": {
            "otpk_critical": 5,
            "otpk_warning": 10,
            "signed_prekey_max_age_days": 90,
            "device_inactive_days": 30,
        },
        "stuck_ids": ["d1", "d2"],
        "stuck_total": 2,
    }


def test_report_says_how_many_are_shown_when_limited() -> None:
    report = find_stuck_devices(
        db=Devices([row("d1", 1)], total=4, critical_total=3), options=OPTIONS
    )
    assert report.summary == (
        "4 stuck device(s), 3 critical (prekeys < 5), 1 warning (showing the worst 1)"
    )


def test_report_of_a_healthy_fleet_is_one_ok_finding() -> None:
    report = find_stuck_devices(db=Devices([]), options=OPTIONS)
    assert report.findings == [Finding("stuck devices", Status.OK, 0, "no active device is stuck")]
    assert report.summary == "no active device is stuck"
    assert (report.data["total"], report.data["stuck_ids"], report.data["devices"]) == (0, [], [])


def test_every_id_reads_every_stuck_device_but_lists_the_limit() -> None:
    rows = [row(f"d{i}", i) for i in range(4)]
    db = Devices(rows, critical_total=4)
    options = StuckOptions(5, 10, 90, 30, limit=2)
    report = find_stuck_devices(db=db, options=options, every_id=True)
    assert report.title == "devices stuck"
    assert [q["limit"] for q in db.queries] == [WATCH_LIMIT]
    assert [f.name for f in report.findings] == ["device d0", "device d1"]
    assert report.data["stuck_ids"] == ["d0", "d1", "d2", "d3"]
    assert report.summary == (
        "4 stuck device(s), 4 critical (prekeys < 5), 0 warning (showing the worst 2)"
    )
    listed = find_stuck_devices(db=db, options=options)
    assert [q["limit"] for q in db.queries] == [WATCH_LIMIT, 2]
    assert listed.data["stuck_ids"] == ["d0", "d1"] and listed.data["stuck_total"] == 4


# ---- reminders ---------------------------------------------------------------------------


def _notify(
    db: Devices, channels: list[Channel], *, execute: bool = True, **kw: Any
) -> tuple[NotifyOptions, Any]:
    progress: list[str] = []
    notify = NotifyOptions(
        channels=[c.channel for c in channels],
        dedup_window_hours=kw.pop("window", 6.0),
        lock_wait_seconds=kw.pop("lock_wait", 12.5),
        progress=progress.append,
    )
    plan = notify_stuck_devices(
        db=db,
        notifiers=channels,
        options=kw.pop("options", OPTIONS),
        notify=notify,
        execute=execute,
    )
    return notify, (plan, progress)


def test_reminder_carries_the_runbook_text_and_a_per_window_key() -> None:
    verdict = judge(row("d1", 2, name='my "phone"', email=None), OPTIONS, NOW)
    before = int(datetime.now(UTC).timestamp() // (6 * 3600))
    reminder = reminder_for(verdict, 6.0)
    after = int(datetime.now(UTC).timestamp() // (6 * 3600))
    assert reminder.key in {f"e2ee-ops-reminder-d1-{w}" for w in (before, after)}
    assert (reminder.user_id, reminder.username, reminder.email) == (7, "alice", None)
    assert (reminder.device_id, reminder.device_name) == ("d1", 'my "phone"')
    assert (reminder.prekeys_remaining, reminder.severity) == (2, "CRITICAL")
    assert reminder.subject == REMINDER_SUBJECT
    assert reminder.text == (
        'Your device "my "phone"" needs to refresh its security keys. Please open the app.'
    )


def test_notify_plan_names_each_owner_and_changes_nothing() -> None:
    rows = [
        row("d1", 2, name="phone"),
        row("d2", 20, user_id=8, username="bob", name="tablet", seen_days=40),
    ]
    db = Devices(rows, total=5)
    _, (plan, progress) = _notify(db, [Channel("push"), Channel("email")], execute=False)
    assert plan.title == "devices stuck --notify"
    assert [s.description for s in plan.steps] == [
        "remind user alice (#7) about device 'phone' (d1, CRITICAL: prekeys 2 < 5 (critical))"
        " by push, email"
    ]
    assert plan.summary == (
        "1 device owner(s) to remind by push, email; 1 inactive-only device(s) listed, "
        "not reminded; 3 more beyond --limit; at most one reminder per device and channel "
        "per 6 h"
    )
    assert plan.data["channels"] == ["push", "email"]
    assert [d["device_id"] for d in plan.data["devices"]] == ["d1"]
    assert plan.executed is False and "notifications" not in plan.data
    assert (db.lock_waits, progress) == ([], [])


def test_notify_with_nothing_due_takes_no_lock() -> None:
    db = Devices([row("d2", 20, seen_days=40)])
    _, (plan, _) = _notify(db, [Channel("push")])
    assert (
        plan.summary
        == "0 device owner(s) to remind by push; 1 inactive-only device(s) listed, not reminded"
    )
    assert plan.steps == [] and db.lock_waits == [] and plan.executed is False


def test_notify_sends_records_and_sums_up() -> None:
    rows = [row("d1", 2), row("d2", 7, user_id=8, username="bob", email=None, name="tablet")]
    db = Devices(rows)
    push, email = Channel("push"), Channel("email", {"d2": SkipReminder("user bob has no email")})
    notify, (plan, progress) = _notify(db, [push, email], window=6.0, lock_wait=12.5)
    assert db.lock_waits == [12.5]
    assert db.log.asked == [(["d1", "d2"], 6.0)]
    assert db.log.records == [
        ("d1", 7, "push", "CRITICAL"),
        ("d1", 7, "email", "CRITICAL"),
        ("d2", 8, "push", "WARNING"),
        ("d2", 8, "email", "WARNING"),
    ]
    assert db.log.forgotten == [104]
    assert [r.device_id for r in push.sent] == ["d1", "d2"]
    assert [r.device_id for r in email.sent] == ["d1"]
    assert notify.sent == [
        {"device_id": "d1", "user_id": 7, "channel": "push", "result": "sent"},
        {"device_id": "d1", "user_id": 7, "channel": "email", "result": "sent"},
        {"device_id": "d2", "user_id": 8, "channel": "push", "result": "sent"},
        {
            "device_id": "d2",
            "user_id": 8,
            "channel": "email",
            "result": "skipped",
            "detail": "user bob has no email",
        },
    ]
    assert [(s.executed, s.status, s.outcome) for s in plan.steps] == [
        (True, Status.OK, "push: sent; email: sent"),
        (True, Status.OK, "push: sent; email: skipped (user bob has no email)"),
    ]
    assert progress == [
        "alice/phone: push: sent; email: sent",
        "bob/tablet: push: sent; email: skipped (user bob has no email)",
    ]
    assert plan.data["notifications"] is notify.sent
    assert plan.data["notified"] == ["d1", "d2"]
    assert plan.summary == "3 reminder(s) sent, 0 failed, 0 already sent within 6 h, 1 skipped"


def test_notify_skips_what_was_sent_in_the_window() -> None:
    db = Devices([row("d1", 2)])
    db.log.already = {("d1", "push")}
    db.wait_first = True
    notify, (plan, progress) = _notify(db, [Channel("push"), Channel("webhook")], window=0.5)
    assert db.log.records == [("d1", 7, "webhook", "CRITICAL")]
    assert notify.sent == [
        {"device_id": "d1", "user_id": 7, "channel": "push", "result": "deduplicated"},
        {"device_id": "d1", "user_id": 7, "channel": "webhook", "result": "sent"},
    ]
    assert plan.steps[0].outcome == "push: already reminded; webhook: sent"
    assert progress[0] == "another notify run holds the lock; waiting for it"
    assert plan.summary == "1 reminder(s) sent, 0 failed, 1 already sent within 0.5 h, 0 skipped"


def test_a_failed_reminder_is_withdrawn_and_critical() -> None:
    db = Devices([row("d1", 2), row("d2", 3, user_id=8, username="bob")])
    hook = Channel(
        "webhook",
        {
            "d1": ServiceError("webhook answered 500", hint="check the receiver"),
            "d2": MaybeDelivered("no answer from hooks.example in 10 s"),
        },
    )
    notify, (plan, _) = _notify(db, [hook])
    assert db.log.forgotten == [101]
    assert notify.sent == [
        {
            "device_id": "d1",
            "user_id": 7,
            "channel": "webhook",
            "result": "failed",
            "detail": "webhook answered 500: check the receiver",
        },
        {
            "device_id": "d2",
            "user_id": 8,
            "channel": "webhook",
            "result": "sent",
            "detail": "unconfirmed: no answer from hooks.example in 10 s",
        },
    ]
    assert [(s.status, s.outcome) for s in plan.steps] == [
        (Status.CRITICAL, "webhook: FAILED (webhook answered 500: check the receiver)"),
        (
            Status.WARNING,
            "webhook: sent, unconfirmed (no answer from hooks.example in 10 s); not sent again",
        ),
    ]
    assert plan.data["notified"] == ["d2"]
    assert plan.summary == (
        "1 reminder(s) sent, 1 failed, 0 already sent within 6 h, 0 skipped; "
        "contact the owners whose reminders failed by hand"
    )


def test_an_unconfirmed_send_does_not_hide_a_failure_on_another_channel() -> None:
    db = Devices([row("d1", 2)])
    failing = Channel("push", {"d1": ServiceError("push gateway answered 502")})
    unsure = Channel("webhook", {"d1": MaybeDelivered("no answer in 10 s")})
    _, (plan, _) = _notify(db, [failing, unsure])
    assert plan.steps[0].status is Status.CRITICAL


# ---- watch -------------------------------------------------------------------------------


class Clock:
    """monotonic() and sleep() of a watch: time moves only when the watch sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def _watch(
    db: Devices,
    clock: Clock,
    ticks: list[WatchTick],
    *,
    timeout: float,
    interval: float,
    options: StuckOptions = OPTIONS,
) -> Report:
    """`devices stuck --watch` on the stand-in database and clock, ticks collected."""
    return watch_stuck_devices(
        db=db,
        options=options,
        timeout_seconds=timeout,
        interval_seconds=interval,
        on_tick=ticks.append,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )


def test_watch_tick_message() -> None:
    assert WatchTick(1, 3, 2, 4.0).message == "1 of 3 device(s) recovered; waiting for 2"
    assert WatchTick(3, 3, 0, 4.0).message == "3 of 3 device(s) recovered"


def test_watch_follows_every_device_until_each_recovers() -> None:
    stuck = [row("d1", 2, name="phone"), row("d2", 7, user_id=8, username="bob", name="tab")]
    db = Devices(
        stuck,
        total=2,
        checks=[
            {"d1": row("d1", 2), "d2": row("d2", 7, status="revoked")},
            {"d1": row("d1", 40)},
        ],
    )
    clock, ticks = Clock(), []
    report = _watch(
        db, clock, ticks, timeout=60, interval=5, options=StuckOptions(5, 10, 90, 30, limit=1)
    )
    assert [q["limit"] for q in db.queries] == [WATCH_LIMIT]
    assert db.asked == [["d1", "d2"], ["d1"]]
    assert ticks == [WatchTick(1, 2, 1, 0.0), WatchTick(2, 2, 0, 5.0)]
    assert clock.slept == [5]
    assert report.title == "devices stuck --watch"
    assert report.findings == [
        Finding(
            "device d1",
            Status.OK,
            40,
            "user alice, device 'phone': recovered: 40 prekeys after 5 s",
        ),
        Finding(
            "device d2",
            Status.OK,
            7,
            "user bob, device 'tab': revoked, no longer needs keys after 0 s",
        ),
    ]
    assert report.summary == "2 of 2 device(s) recovered within 5 s"
    assert report.data["recovered"] == ["d1", "d2"] == report.data["remediated"]
    assert report.data["still_stuck"] == []
    assert (report.data["total"], report.data["critical"]) == (2, 1)


def test_watch_stops_at_the_timeout_with_the_devices_still_stuck() -> None:
    db = Devices([row("d1", 2)], checks=[{"d1": row("d1", 3)} for _ in range(4)])
    clock, ticks = Clock(), []
    report = _watch(db, clock, ticks, timeout=8.5, interval=4)
    # Checks at 0, 4, 8 and (the last, shortened sleep) 8.5 s; none after the timeout.
    assert clock.slept == [4, 4, 0.5]
    assert [t.elapsed_seconds for t in ticks] == [0, 4, 8, 8.5]
    assert ticks[-1] == WatchTick(0, 1, 1, 8.5)
    assert report.findings == [
        Finding(
            "device d1",
            Status.CRITICAL,
            3,
            "user alice (#7), device 'phone': 3 prekeys left, signed prekey 1 d old, "
            "last seen 0.5 d ago; prekeys 3 < 5 (critical)",
        )
    ]
    assert report.summary == (
        "0 of 1 device(s) recovered within 8 s; still stuck: 1 (manual step: contact the owners)"
    )
    assert report.data["still_stuck"] == ["d1"] and report.data["recovered"] == []
    assert (report.data["total"], report.data["critical"]) == (1, 1)


def test_watch_with_nothing_stuck_checks_nothing() -> None:
    db = Devices([])
    clock, ticks = Clock(), []
    report = _watch(db, clock, ticks, timeout=10, interval=4)
    assert (db.asked, ticks, clock.slept) == ([], [], [])
    assert report.findings == [Finding("stuck devices", Status.OK, 0, "no active device is stuck")]
    assert report.summary == "no active device is stuck"


def test_notify_plan_joins_every_reason_and_says_nothing_of_skips_when_none() -> None:
    db = Devices([row("d1", 2, spk_days=100, name="phone")])
    _, (plan, _) = _notify(db, [Channel("webhook")], execute=False)
    assert [s.description for s in plan.steps] == [
        "remind user alice (#7) about device 'phone' (d1, CRITICAL: prekeys 2 < 5 (critical); "
        "signed prekey 100 d old > 90 d) by webhook"
    ]
    assert plan.summary == (
        "1 device owner(s) to remind by webhook; at most one reminder per device and channel "
        "per 6 h"
    )


def test_watch_checks_every_device_of_a_round_after_a_revoked_one() -> None:
    db = Devices(
        [row("d0", 1), row("d1", 2)],
        checks=[{"d0": row("d0", 1, status="revoked"), "d1": row("d1", 30)}],
    )
    clock, ticks = Clock(), []
    report = _watch(db, clock, ticks, timeout=10, interval=4)
    assert ticks == [WatchTick(2, 2, 0, 0.0)] and clock.slept == []
    assert report.data["recovered"] == ["d0", "d1"]
