"""Runbook: Stuck Device Remediation. Find (`find_stuck_devices`), remind the owners
(`notify_stuck_devices`) and follow them until they refill (`watch_stuck_devices`).

A device is stuck when its one-time prekey pool is under the critical threshold
(CRITICAL: nobody can start a session with it) or the warning threshold (WARNING: the
runbook's proactive reminder), when its signed prekey is older than the maximum age,
or when it has not been seen for a while. The CRITICAL set is exactly the runbook's
"Identify Affected Devices" query.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from e2ee_ops.errors import E2eeOpsError, UsageError
from e2ee_ops.status import Finding, Plan, Report, Status, Step, StepRunner

if TYPE_CHECKING:
    from e2ee_ops.adapters.devices_db import DeviceRow, DevicesDatabase, ReminderLog
    from e2ee_ops.adapters.notifiers import Notifier, Reminder
    from e2ee_ops.config import Thresholds

# The runbook's own words for the push and the email.
REMINDER_SUBJECT = "Please open the app to refresh your security keys"
REMINDER_TEXT = 'Your device "{device}" needs to refresh its security keys. Please open the app.'


@dataclass(frozen=True)
class StuckOptions:
    critical: int
    warning: int
    spk_max_age_days: float
    inactive_days: float
    user_id: int | None = None
    limit: int = 50
    pools_only: bool = False  # skip stale signed prekeys and inactive devices


def stuck_options(
    thresholds: Thresholds,
    *,
    threshold: int | None = None,
    inactive_days: float | None = None,
    user_id: int | None = None,
    limit: int = 50,
    pools_only: bool = False,
) -> StuckOptions:
    """Options from the configured thresholds; `threshold` replaces the warning one."""
    warning = thresholds.otpk_warning if threshold is None else threshold
    if warning < thresholds.otpk_critical:
        raise UsageError(
            f"--threshold {warning} is below the critical threshold "
            f"({thresholds.otpk_critical}); every critical device would be missed"
        )
    return StuckOptions(
        critical=thresholds.otpk_critical,
        warning=warning,
        spk_max_age_days=thresholds.signed_prekey_max_age_days,
        inactive_days=thresholds.device_inactive_days if inactive_days is None else inactive_days,
        user_id=user_id,
        limit=limit,
        pools_only=pools_only,
    )


@dataclass(frozen=True)
class DeviceVerdict:
    row: DeviceRow
    status: Status
    reasons: list[str]
    spk_age_days: float
    seen_days_ago: float

    @property
    def needs_keys(self) -> bool:
        """Worth a reminder: its pool or its signed prekey needs the app opened."""
        return any(r.startswith(("prekeys", "signed prekey")) for r in self.reasons)

    def as_data(self) -> dict[str, Any]:
        r = self.row
        return {
            "device_id": r.device_id,
            "user_id": r.user_id,
            "username": r.username,
            "device_name": r.device_name,
            "prekeys_remaining": r.prekeys_remaining,
            "signed_prekey_age_days": round(self.spk_age_days, 1),
            "last_seen_at": r.last_seen_at.isoformat(),
            "last_seen_days_ago": round(self.seen_days_ago, 1),
            "status": self.status.value,
            "reasons": self.reasons,
        }


def judge(row: DeviceRow, o: StuckOptions, now: datetime) -> DeviceVerdict:
    spk_age = (now - row.signed_prekey_uploaded_at).total_seconds() / 86400.0
    seen = (now - row.last_seen_at).total_seconds() / 86400.0
    reasons: list[str] = []
    status = Status.OK
    if row.prekeys_remaining < o.critical:
        status = Status.CRITICAL
        reasons.append(f"prekeys {row.prekeys_remaining} < {o.critical} (critical)")
    elif row.prekeys_remaining < o.warning:
        status = Status.WARNING
        reasons.append(f"prekeys {row.prekeys_remaining} < {o.warning} (warning)")
    if spk_age > o.spk_max_age_days:
        status = Status.worst([status, Status.WARNING])
        reasons.append(f"signed prekey {spk_age:.0f} d old > {o.spk_max_age_days:g} d")
    if seen > o.inactive_days:
        status = Status.worst([status, Status.WARNING])
        reasons.append(f"not seen for {seen:.0f} d > {o.inactive_days:g} d")
    return DeviceVerdict(row, status, reasons, spk_age, seen)


def _query(db: DevicesDatabase, o: StuckOptions) -> tuple[list[DeviceVerdict], int, int]:
    from e2ee_ops.adapters.devices_db import stuck_params

    result = db.stuck_devices(
        stuck_params(
            critical=o.critical,
            warning=o.warning,
            spk_max_age_seconds=None if o.pools_only else o.spk_max_age_days * 86400.0,
            inactive_seconds=None if o.pools_only else o.inactive_days * 86400.0,
            user_id=o.user_id,
            limit=o.limit,
        )
    )
    verdicts = [judge(r, o, result.now) for r in result.rows]
    return verdicts, result.total, result.critical_total


def device_label(device_id: str) -> str:
    """A finding's name (and perfdata label): the device id, never user-chosen text."""
    return f"device {device_id}"


def _finding(v: DeviceVerdict) -> Finding:
    r = v.row
    return Finding(
        name=device_label(r.device_id),  # names are chosen by users: kept to the summary
        status=v.status,
        value=r.prekeys_remaining,
        summary=(
            f"user {r.username} (#{r.user_id}), device {r.device_name!r}: "
            f"{r.prekeys_remaining} prekeys left, signed prekey {v.spk_age_days:.0f} d old, "
            f"last seen {v.seen_days_ago:.1f} d ago; " + "; ".join(v.reasons)
        ),
    )


def find_stuck_devices(
    *, db: DevicesDatabase, options: StuckOptions, every_id: bool = False
) -> Report:
    """The stuck devices, the --limit worst listed. With `every_id` (an incident is open,
    and its timeline counts remediation from them) `stuck_ids` names every stuck device;
    otherwise only the listed ones, and the query stays limit-first."""
    if not every_id:
        shown, total, critical_total = _query(db, options)
        return _report("devices stuck", shown, total, critical_total, options)
    every, total, critical_total = _query(db, replace(options, limit=WATCH_LIMIT))
    report = _report("devices stuck", every[: options.limit], total, critical_total, options)
    report.data["stuck_ids"] = [v.row.device_id for v in every]
    return report


def _report(
    title: str, verdicts: list[DeviceVerdict], total: int, critical_total: int, o: StuckOptions
) -> Report:
    findings = [_finding(v) for v in verdicts]
    if not findings:
        findings = [Finding("stuck devices", Status.OK, 0, "no active device is stuck")]
    shown = f" (showing the worst {len(verdicts)})" if total > len(verdicts) else ""
    summary = (
        f"{total} stuck device(s), {critical_total} critical (prekeys < {o.critical}), "
        f"{total - critical_total} warning{shown}"
        if total
        else "no active device is stuck"
    )
    return Report(
        title=title,
        findings=findings,
        summary=summary,
        data={
            "total": total,
            "critical": critical_total,
            "thresholds": {
                "otpk_critical": o.critical,
                "otpk_warning": o.warning,
                "signed_prekey_max_age_days": o.spk_max_age_days,
                "device_inactive_days": o.inactive_days,
            },
            "devices": [v.as_data() for v in verdicts],
            # What an incident's timeline keeps: which devices were stuck, all of them
            # when stuck_total equals their number.
            "stuck_ids": [v.row.device_id for v in verdicts],
            "stuck_total": total,
        },
    )


# ---- notification -----------------------------------------------------------------------


def reminder_for(v: DeviceVerdict, window_hours: float) -> Reminder:
    from e2ee_ops.adapters.notifiers import Reminder

    r = v.row
    window = int(datetime.now(UTC).timestamp() // (window_hours * 3600))
    return Reminder(
        user_id=r.user_id,
        username=r.username,
        email=r.email,
        device_id=r.device_id,
        device_name=r.device_name,
        prekeys_remaining=r.prekeys_remaining,
        severity=v.status.value,
        subject=REMINDER_SUBJECT,
        text=REMINDER_TEXT.format(device=r.device_name),
        key=f"e2ee-ops-reminder-{r.device_id}-{window}",
    )


@dataclass
class NotifyOptions:
    channels: Sequence[str]
    dedup_window_hours: float
    lock_wait_seconds: float
    progress: Callable[[str], None] = lambda _m: None
    sent: list[dict[str, Any]] = field(default_factory=list)


def notify_stuck_devices(
    *,
    db: DevicesDatabase,
    notifiers: Sequence[Notifier],
    options: StuckOptions,
    notify: NotifyOptions,
    execute: bool,
) -> Plan:
    """Remind each stuck device's owner on each channel, once per device, channel and window.

    Under --execute the whole run holds a PostgreSQL advisory lock, so a second run
    started at the same moment waits, then finds the reminders already recorded.
    """
    verdicts, total, _ = _query(db, options)
    due = [v for v in verdicts if v.needs_keys]
    channels = ", ".join(n.channel for n in notifiers)
    plan = Plan(
        title="devices stuck --notify",
        steps=[
            Step(
                f"remind user {v.row.username} (#{v.row.user_id}) about device "
                f"{v.row.device_name!r} ({v.row.device_id}, {v.status.value}: "
                f"{'; '.join(v.reasons)}) by {channels}"
            )
            for v in due
        ],
        data={"devices": [v.as_data() for v in due], "channels": list(notify.channels)},
    )
    skipped = len(verdicts) - len(due)
    plan.summary = (
        f"{len(due)} device owner(s) to remind by {channels}"
        + (f"; {skipped} inactive-only device(s) listed, not reminded" if skipped else "")
        + (f"; {total - len(verdicts)} more beyond --limit" if total > len(verdicts) else "")
        + (
            f"; at most one reminder per device and channel per {notify.dedup_window_hours:g} h"
            if due
            else ""
        )
    )
    if not execute or not due:
        return plan
    run = StepRunner(plan)
    with db.notify_lock(
        wait_seconds=notify.lock_wait_seconds,
        on_wait=lambda: notify.progress("another notify run holds the lock; waiting for it"),
    ) as log:
        already = log.recently_sent([v.row.device_id for v in due], notify.dedup_window_hours)
        for v in due:
            outcome, status = _remind(v, notifiers, log, already, notify)
            run.done(outcome, status)
            notify.progress(f"{v.row.username}/{v.row.device_name}: {outcome}")
    sent = sum(1 for s in notify.sent if s["result"] == "sent")
    failed = sum(1 for s in notify.sent if s["result"] == "failed")
    plan.data["notifications"] = notify.sent
    # The owners actually reminded, by device: what the journal and post-mortem keep.
    plan.data["notified"] = sorted(
        {str(n["device_id"]) for n in notify.sent if n.get("result") == "sent"}
    )
    plan.summary = (
        f"{sent} reminder(s) sent, {failed} failed, "
        f"{sum(1 for s in notify.sent if s['result'] == 'deduplicated')} already sent "
        f"within {notify.dedup_window_hours:g} h, "
        f"{sum(1 for s in notify.sent if s['result'] == 'skipped')} skipped"
        + ("; contact the owners whose reminders failed by hand" if failed else "")
    )
    return plan


def _remind(
    v: DeviceVerdict,
    notifiers: Sequence[Notifier],
    log: ReminderLog,
    already: set[tuple[str, str]],
    notify: NotifyOptions,
) -> tuple[str, Status]:
    """Remind the owner of `v` on every channel; the step's outcome and status.

    At most once: each reminder is recorded before it is sent, so a run that dies or
    loses PostgreSQL after the send cannot send it again; the record is withdrawn only
    when the send certainly failed. A timeout after sending counts as sent.
    """
    from e2ee_ops.errors import MaybeDelivered, SkipReminder

    reminder = reminder_for(v, notify.dedup_window_hours)
    outcomes: list[str] = []
    status = Status.OK
    for notifier in notifiers:
        record = {"device_id": v.row.device_id, "user_id": v.row.user_id}
        record["channel"] = notifier.channel
        if (v.row.device_id, notifier.channel) in already:
            record |= {"result": "deduplicated"}
            outcomes.append(f"{notifier.channel}: already reminded")
        else:
            attempt = log.record(v.row.device_id, v.row.user_id, notifier.channel, v.status.value)
            try:
                notifier.send(reminder)
            except SkipReminder as exc:
                log.forget(attempt)
                record |= {"result": "skipped", "detail": exc.message}
                outcomes.append(f"{notifier.channel}: skipped ({exc.message})")
            except MaybeDelivered as exc:
                status = Status.worst([status, Status.WARNING])
                record |= {"result": "sent", "detail": f"unconfirmed: {exc.sentence}"}
                outcomes.append(
                    f"{notifier.channel}: sent, unconfirmed ({exc.sentence}); not sent again"
                )
            except E2eeOpsError as exc:
                log.forget(attempt)
                status = Status.CRITICAL
                record |= {"result": "failed", "detail": exc.sentence}
                outcomes.append(f"{notifier.channel}: FAILED ({exc.sentence})")
            else:
                record |= {"result": "sent"}
                outcomes.append(f"{notifier.channel}: sent")
        notify.sent.append(record)
    return "; ".join(outcomes), status


# ---- watch ------------------------------------------------------------------------------

WATCH_LIMIT = 100_000  # --watch follows every stuck device, up to this many


@dataclass(frozen=True)
class WatchTick:
    """Where a watch stands after one check of the listed devices."""

    recovered: int
    total: int
    waiting: int
    elapsed_seconds: float

    @property
    def message(self) -> str:
        return f"{self.recovered} of {self.total} device(s) recovered" + (
            f"; waiting for {self.waiting}" if self.waiting else ""
        )


def watch_stuck_devices(
    *,
    db: DevicesDatabase,
    options: StuckOptions,
    timeout_seconds: float,
    interval_seconds: float,
    on_tick: Callable[[WatchTick], None] = lambda _t: None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Report:
    """Follow every device stuck at the start (not only the --limit worst) until each is
    healthy again or the timeout passes."""
    verdicts, _, _ = _query(db, replace(options, limit=WATCH_LIMIT))
    start = monotonic()
    pending = {v.row.device_id: v for v in verdicts}
    recovered: dict[str, tuple[DeviceVerdict, float]] = {}
    revoked: set[str] = set()
    while pending:
        now = db.now()
        current = db.devices(list(pending))
        for device_id in list(pending):
            row = current.get(device_id)
            if row is None or row.status != "active":
                revoked.add(device_id)
                recovered[device_id] = (pending.pop(device_id), monotonic() - start)
                continue
            verdict = judge(row, options, now)
            if verdict.status is Status.OK:
                pending.pop(device_id)
                recovered[device_id] = (verdict, monotonic() - start)
            else:
                pending[device_id] = verdict
        on_tick(WatchTick(len(recovered), len(verdicts), len(pending), monotonic() - start))
        if not pending or monotonic() - start >= timeout_seconds:
            break
        sleep(min(interval_seconds, max(0.0, timeout_seconds - (monotonic() - start))))
    findings = []
    for v in verdicts:
        device_id = v.row.device_id
        if device_id in recovered:
            after, seconds = recovered[device_id]
            what = (
                "revoked, no longer needs keys"
                if device_id in revoked
                else f"recovered: {after.row.prekeys_remaining} prekeys"
            )
            findings.append(
                Finding(
                    device_label(device_id),
                    Status.OK,
                    after.row.prekeys_remaining,
                    f"user {v.row.username}, device {v.row.device_name!r}: {what} "
                    f"after {seconds:.0f} s",
                )
            )
        else:
            findings.append(_finding(pending[device_id]))
    critical = sum(1 for v in verdicts if v.status is Status.CRITICAL)
    report = _report("devices stuck --watch", verdicts, len(verdicts), critical, options)
    report.findings = findings or report.findings
    waited = monotonic() - start
    report.summary = (
        f"{len(recovered)} of {len(verdicts)} device(s) recovered within {waited:.0f} s"
        + (f"; still stuck: {len(pending)} (manual step: contact the owners)" if pending else "")
        if verdicts
        else "no active device is stuck"
    )
    report.data["recovered"] = sorted(recovered)
    report.data["remediated"] = sorted(recovered)
    report.data["still_stuck"] = sorted(pending)
    return report
