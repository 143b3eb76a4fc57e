"""Runbook: Abuse Burst Response. Who is bursting (`top_senders`), and the manual block
(`block_user`, `unblock_user`) through the admin API, verified.

Metadata only, as the runbook insists: message counts, distinct recipients (fan-out),
conversations opened (churn) and 429s. Nothing here reads or decrypts a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from e2ee_ops.errors import AuthError, E2eeOpsError, RefusedError, UsageError
from e2ee_ops.status import Finding, Plan, Report, Status, Step, StepRunner, classify

if TYPE_CHECKING:
    from e2ee_ops.adapters.abuse_db import AbuseDatabase, SenderActivity
    from e2ee_ops.adapters.api import ApiClient
    from e2ee_ops.config import Thresholds

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# No conversation has id 0 (BIGSERIAL starts at 1): a send there is refused by the block
# check (403 USER_BLOCKED) or, for a sender who may send, by the conversation lookup
# (404). Either way nothing is stored and no one receives anything.
PROBE_CONVERSATION = "0"
PROBE_DEVICE = "00000000-0000-0000-0000-000000000000"
BLOCKED_CODE = "USER_BLOCKED"


MAX_WINDOW_DAYS = 366  # metadata older than a year is not an abuse burst


def parse_window(text: str) -> float:
    """`90s`, `30m`, `1h`, `2d` (or plain seconds) → seconds, at most MAX_WINDOW_DAYS."""
    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,6})?)\s*([smhd]?)\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"--window {text[:40]!r} is not a duration such as 30m, 1h or 2d")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds > MAX_WINDOW_DAYS * 86400:
        raise UsageError(f"--window {text!r} is longer than {MAX_WINDOW_DAYS} days")
    return seconds


# ---- detection --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Measure:
    label: str
    value: int
    warn: float
    crit: float


def _limits(rate_warn: float, rate_crit: float, floor: int, hours: float) -> tuple[float, float]:
    """Warning and critical counts for a window of `hours`: the hourly rates scaled to
    the window, never below the minimum count (twice the minimum for critical)."""
    return max(rate_warn * hours, float(floor)), max(rate_crit * hours, 2.0 * floor)


def _measures(s: SenderActivity, th: Thresholds, hours: float) -> list[_Measure]:
    def measure(label: str, value: int, warn: float, crit: float, floor: int) -> _Measure:
        return _Measure(label, value, *_limits(warn, crit, floor, hours))

    return [
        measure(
            "messages",
            s.messages,
            th.abuse_messages_per_hour_warning,
            th.abuse_messages_per_hour_critical,
            th.abuse_messages_min,
        ),
        measure(
            "recipients",
            s.recipients,
            th.abuse_fanout_per_hour_warning,
            th.abuse_fanout_per_hour_critical,
            th.abuse_fanout_min,
        ),
        measure(
            "new conversations",
            s.new_conversations,
            th.abuse_new_conversations_per_hour_warning,
            th.abuse_new_conversations_per_hour_critical,
            th.abuse_new_conversations_min,
        ),
        measure(
            "429s",
            s.rate_limited,
            th.abuse_rate_limited_per_hour_warning,
            th.abuse_rate_limited_per_hour_critical,
            th.abuse_rate_limited_min,
        ),
    ]


def top_senders(
    *, db: AbuseDatabase, thresholds: Thresholds, window_seconds: float, limit: int
) -> Report:
    hours = window_seconds / 3600.0
    senders = db.top_senders(window_seconds=window_seconds, limit=limit)
    judged = []
    for s in senders:
        measures = _measures(s, thresholds, hours)
        statuses = [classify(m.value, warn=m.warn, crit=m.crit) for m in measures]
        status = Status.worst(statuses)
        over = [
            f"{m.label} {m.value} > {m.crit if st is Status.CRITICAL else m.warn:g}"
            for m, st in zip(measures, statuses, strict=True)
            if st is not Status.OK
        ]
        judged.append((s, status, over))
    # Worst first, then the runbook's order: most messages first.
    judged.sort(key=lambda j: (-j[1].severity, -j[0].messages, -j[0].recipients, j[0].user_id))
    judged = judged[:limit]
    window = _window_text(window_seconds)
    message_limits = _limits(
        thresholds.abuse_messages_per_hour_warning,
        thresholds.abuse_messages_per_hour_critical,
        thresholds.abuse_messages_min,
        hours,
    )
    findings = [
        Finding(
            name=f"sender #{s.user_id}",  # the username, chosen by a user, stays in the summary
            status=status,
            value=s.messages,
            summary=(
                f"{s.username} (#{s.user_id}) in {window}: {s.messages} messages to "
                f"{s.recipients} recipients, {s.new_conversations} new conversations, "
                f"{s.rate_limited} 429s"
                + (" [blocked]" if s.blocked else "")
                + (f"; over: {', '.join(over)}" if over else "")
            ),
            threshold_warn=message_limits[0],
            threshold_crit=message_limits[1],
        )
        for s, status, over in judged
    ]
    if not findings:
        findings = [Finding("senders", Status.OK, 0, f"no messages in {window}")]
    flagged = [f for f in findings if f.status is not Status.OK]
    report = Report(
        title="abuse top-senders",
        findings=findings,
        summary=(
            f"{len(flagged)} sender(s) over the thresholds in {window}; review their metadata, "
            "then `e2ee-ops abuse block USER --reason ...` if severe"
            if flagged
            else f"no sender over the thresholds in {window}"
        ),
        data={
            "window_seconds": window_seconds,
            "senders": [
                {
                    "user_id": s.user_id,
                    "username": s.username,
                    "blocked": s.blocked,
                    "messages": s.messages,
                    "recipients": s.recipients,
                    "new_conversations": s.new_conversations,
                    "rate_limited": s.rate_limited,
                    "status": status.value,
                }
                for s, status, _ in judged
            ],
        },
    )
    return report


def _window_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"the last {seconds / size:g}{unit}"
    return f"the last {seconds:g}s"


# ---- block / unblock --------------------------------------------------------------------


def _probe_send(client: ApiClient) -> str:
    """Try a send that stores nothing: 'blocked' (403 USER_BLOCKED) or 'allowed'."""
    try:
        client.send_message(
            PROBE_CONVERSATION,
            sender_device_id=PROBE_DEVICE,
            client_message_id="e2ee-ops-block-probe",
            # One opaque byte to a device that does not exist: no message content at all.
            envelopes=[{"device_id": PROBE_DEVICE, "bundle_version": 1, "ciphertext": "AA=="}],
        )
    except RefusedError as exc:
        if exc.status_code == 403 and exc.code == BLOCKED_CODE:
            return "blocked"
        if exc.status_code in (404, 429):
            return "allowed"  # past the block check: refused for the conversation or the rate
        raise
    return "allowed"


def block_user(
    *,
    admin: ApiClient,
    account_id: int,
    reason: str | None,
    execute: bool,
    block: bool = True,
    verifier: ApiClient | None = None,
    verifier_name: str | None = None,
    protected: Mapping[str, str] | None = None,
    force: bool = False,
) -> Plan:
    """Block (or, with block=False, unblock) a user through the admin API, then verify.

    Verification: the admin API must show the new state with its reason. When a token
    of that user is configured (`verifier`), the user's own send is tried too: it must
    answer 403 USER_BLOCKED after a block and pass the block check after an unblock.
    Production rarely has the user's token, so that proof is optional and the plan says
    which verification runs.
    """
    verb = "block" if block else "unblock"
    if block and not (reason and reason.strip()):
        raise UsageError("abuse block needs --reason: it goes to the service and the journal")
    guarded = (protected or {}).get(str(account_id))
    if block and guarded and not force:
        raise UsageError(
            f"account {account_id} is {guarded}: blocking it breaks the toolkit's own "
            "checks (the canary of `redis recover`, the admin API)",
            hint="add --force if that is what you want",
        )
    before = admin.get_user(str(account_id))
    name = f"{before.get('username')} (#{account_id})"
    state = (
        f"blocked since {before.get('blocked_at')} ({before.get('block_reason')})"
        if before.get("blocked")
        else "not blocked"
    )
    probe_text = (
        f"verify by the user's own send with tokens.{verifier_name}: "
        + ("expect 403 USER_BLOCKED" if block else "expect it to pass the block check")
        + " (a probe to a conversation that does not exist: nothing is stored)"
        if verifier is not None
        else "no token of this user is configured (--verify-token): the admin API's "
        "answer is the verification; the user's next send is not tried"
    )
    endpoint = "POST" if block else "DELETE"
    plan = Plan(
        title=f"abuse {verb}",
        steps=[
            Step(f"user {name} is {state} now"),
            Step(
                f"{verb} {name} through the admin API ({endpoint} /admin/users/{account_id}/block)"
                + (f" with reason {reason!r}" if block else "")
            ),
            Step(
                f"verify through the admin API: GET /admin/users/{account_id} shows "
                + ("blocked=true with the reason" if block else "blocked=false")
            ),
            Step(probe_text),
        ],
        data={"account_id": account_id, "username": before.get("username"), "reason": reason},
    )
    plan.steps[0].status = Status.OK
    if not execute:
        return plan
    run = StepRunner(plan)
    run.done(state)
    try:
        answer = (
            admin.block_user(str(account_id), reason=reason or "")
            if block
            else admin.unblock_user(str(account_id))
        )
    except E2eeOpsError as exc:
        return run.fail(f"failed: {exc.sentence}", rest="not run: the action failed")
    run.done(f"the admin API answered blocked={str(answer.get('blocked')).lower()}")
    after = admin.get_user(str(account_id))
    held = bool(after.get("blocked")) is block and (
        not block or after.get("block_reason") == reason
    )
    run.done(
        f"GET /admin/users/{account_id}: blocked={str(after.get('blocked')).lower()}"
        + (f", reason {after.get('block_reason')!r}" if after.get("blocked") else ""),
        Status.OK if held else Status.CRITICAL,
    )
    if verifier is None:
        run.skip("skipped: no token of this user configured")
    else:
        want = "blocked" if block else "allowed"
        try:
            seen = _probe_send(verifier)
        except (AuthError, RefusedError) as exc:
            run.done(f"the probe failed: {exc.sentence}", Status.CRITICAL)
        else:
            run.done(
                (
                    "the user's send answers 403 USER_BLOCKED"
                    if seen == "blocked"
                    else "the user's send passes the block check"
                )
                + ("" if seen == want else f" (expected {want}: is --verify-token this user's?)"),
                Status.OK if seen == want else Status.CRITICAL,
            )
    plan.summary = (
        f"{name} {verb}ed and verified"
        if plan.status is Status.OK
        else f"{name}: {verb} NOT verified; see the steps"
    )
    return plan
