"""`abuse` decisions on given counts and answers: the window, who is over which threshold
and in what order, and what a block or an unblock plans, does and proves. The database
and the API are replaced by small stand-ins that record what they are asked."""

from __future__ import annotations

from typing import Any

import pytest

from e2ee_ops.adapters.abuse_db import SenderActivity
from e2ee_ops.config import Thresholds
from e2ee_ops.errors import AuthError, RefusedError, ServiceError, UsageError
from e2ee_ops.procedures.abuse import block_user, parse_window, top_senders
from e2ee_ops.status import Finding, Status

# ---- the window --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("1h", 3600.0),
        ("0.5m", 30.0),
        ("45", 45.0),
        ("30m", 1800.0),
        (" 1.5H ", 5400.0),
        ("2d", 172800.0),
        ("366d", 31622400.0),
        ("31622400", 31622400.0),
    ],
)
def test_windows_in_every_unit(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["0", "0.0s", "soon", "-5m", "1w"])
def test_a_window_that_is_no_duration_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_window(text)
    assert refused.value.sentence == (f"--window {text!r} is not a duration such as 30m, 1h or 2d")


def test_a_bad_window_is_quoted_cut_short() -> None:
    text = "in-a-while-" * 6
    with pytest.raises(UsageError) as refused:
        parse_window(text)
    assert refused.value.sentence == (
        f"--window {text[:40]!r} is not a duration such as 30m, 1h or 2d"
    )
    assert len(text) == 66 and "in-a-while-in-a-while-in-a-while-in-a-wh'" in refused.value.sentence


@pytest.mark.parametrize("text", ["367d", "31622401"])
def test_a_window_over_a_year_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_window(text)
    assert refused.value.sentence == f"--window {text!r} is longer than 366 days"


# ---- top senders -------------------------------------------------------------------------


class Senders:
    """The abuse database: the candidates it answers, and what it was asked."""

    def __init__(self, senders: list[SenderActivity]) -> None:
        self.senders = senders
        self.asked: list[tuple[float, int]] = []

    def top_senders(self, *, window_seconds: float, limit: int) -> list[SenderActivity]:
        self.asked.append((window_seconds, limit))
        return self.senders


def sender(
    user_id: int,
    messages: int = 0,
    recipients: int = 0,
    conversations: int = 0,
    refused: int = 0,
    *,
    blocked: bool = False,
) -> SenderActivity:
    return SenderActivity(
        user_id, f"user{user_id}", blocked, messages, recipients, conversations, refused
    )


def test_an_hour_uses_the_hourly_rates() -> None:
    db = Senders([sender(1, 201, 3, 2, 0), sender(2, 5, 51, 31, 21, blocked=True)])
    report = top_senders(db=db, thresholds=Thresholds(), window_seconds=3600, limit=10)
    assert db.asked == [(3600, 10)]
    assert report.title == "abuse top-senders"
    assert report.findings == [
        Finding(
            name="sender #2",
            status=Status.CRITICAL,
            value=5,
            summary="user2 (#2) in the last 1h: 5 messages to 51 recipients, "
            "31 new conversations, 21 429s [blocked]; over: recipients 51 > 50, "
            "new conversations 31 > 30, 429s 21 > 20",
            threshold_warn=200.0,
            threshold_crit=1000.0,
        ),
        Finding(
            name="sender #1",
            status=Status.WARNING,
            value=201,
            summary="user1 (#1) in the last 1h: 201 messages to 3 recipients, "
            "2 new conversations, 0 429s; over: messages 201 > 200",
            threshold_warn=200.0,
            threshold_crit=1000.0,
        ),
    ]
    assert report.summary == (
        "2 sender(s) over the thresholds in the last 1h; review their metadata, "
        "then `e2ee-ops abuse block USER --reason ...` if severe"
    )
    assert report.data == {
        "window_seconds": 3600,
        "senders": [
            {
                "user_id": 2,
                "username": "user2",
                "blocked": True,
                "messages": 5,
                "recipients": 51,
                "new_conversations": 31,
                "rate_limited": 21,
                "status": "CRITICAL",
            },
            {
                "user_id": 1,
                "username": "user1",
                "blocked": False,
                "messages": 201,
                "recipients": 3,
                "new_conversations": 2,
                "rate_limited": 0,
                "status": "WARNING",
            },
        ],
    }


@pytest.mark.parametrize(
    ("counts", "status", "over"),
    [
        ((200, 20, 10, 1), Status.OK, ""),
        (
            (1000, 50, 30, 20),
            Status.WARNING,
            "messages 1000 > 200, recipients 50 > 20, new conversations 30 > 10, 429s 20 > 1",
        ),
        ((1001, 0, 0, 0), Status.CRITICAL, "messages 1001 > 1000"),
        ((0, 0, 11, 0), Status.WARNING, "new conversations 11 > 10"),
        ((0, 21, 0, 0), Status.WARNING, "recipients 21 > 20"),
        ((0, 0, 0, 2), Status.WARNING, "429s 2 > 1"),
    ],
)
def test_each_measure_against_its_own_thresholds(
    counts: tuple[int, int, int, int], status: Status, over: str
) -> None:
    db = Senders([sender(1, *counts)])
    [finding] = top_senders(db=db, thresholds=Thresholds(), window_seconds=3600, limit=5).findings
    assert finding.status is status
    assert finding.summary.endswith(f"; over: {over}" if over else " 429s")


def test_a_short_window_never_goes_under_the_minimum_counts() -> None:
    # 5 minutes: every hourly rate scaled down is under its minimum count, so the minimum
    # warns and twice the minimum is critical.
    db = Senders([sender(1, 101, 20, 10, 1), sender(2, 50, 21, 11, 2), sender(3, 0, 10, 0, 0)])
    report = top_senders(db=db, thresholds=Thresholds(), window_seconds=300, limit=5)
    assert [(f.name, f.status) for f in report.findings] == [
        ("sender #1", Status.CRITICAL),
        ("sender #2", Status.CRITICAL),
        ("sender #3", Status.OK),
    ]
    assert report.findings[0].summary.endswith("; over: messages 101 > 100, recipients 20 > 10")
    assert report.findings[1].summary.endswith(
        "; over: recipients 21 > 20, new conversations 11 > 10, 429s 2 > 1"
    )
    assert (report.findings[0].threshold_warn, report.findings[0].threshold_crit) == (50.0, 100.0)
    assert "in the last 5m" in report.findings[0].summary


def test_a_long_window_scales_the_hourly_rates_up() -> None:
    th = Thresholds(abuse_messages_min=1)
    db = Senders([sender(1, 401), sender(2, 400)])
    report = top_senders(db=db, thresholds=th, window_seconds=7200, limit=5)
    assert [(f.name, f.status) for f in report.findings] == [
        ("sender #1", Status.WARNING),
        ("sender #2", Status.OK),
    ]
    assert (report.findings[0].threshold_warn, report.findings[0].threshold_crit) == (
        400.0,
        2000.0,
    )
    assert report.findings[0].summary.endswith("; over: messages 401 > 400")


def test_worst_first_then_most_messages_then_fan_out_then_id() -> None:
    db = Senders(
        [
            sender(5, 10, 1),
            sender(4, 10, 2),
            sender(3, 30),
            sender(2, 10, 2),
            sender(9, 1, 0, 0, 5),
        ]
    )
    report = top_senders(db=db, thresholds=Thresholds(), window_seconds=3600, limit=4)
    assert [f.name for f in report.findings] == ["sender #9", "sender #3", "sender #2", "sender #4"]
    assert [s["user_id"] for s in report.data["senders"]] == [9, 3, 2, 4]


def test_no_sender_over_the_thresholds() -> None:
    report = top_senders(
        db=Senders([sender(1, 3)]), thresholds=Thresholds(), window_seconds=86400, limit=5
    )
    assert report.summary == "no sender over the thresholds in the last 1d"
    assert report.findings[0].summary == (
        "user1 (#1) in the last 1d: 3 messages to 0 recipients, 0 new conversations, 0 429s"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (60, "the last 1m"),
        (90, "the last 90s"),
        (5400, "the last 90m"),
        (90000, "the last 25h"),
        (172800, "the last 2d"),
        (0.5, "the last 0.5s"),
    ],
)
def test_no_messages_names_the_window(seconds: float, text: str) -> None:
    report = top_senders(db=Senders([]), thresholds=Thresholds(), window_seconds=seconds, limit=5)
    assert report.findings == [Finding("senders", Status.OK, 0, f"no messages in {text}")]
    assert report.summary == f"no sender over the thresholds in {text}"
    assert report.data == {"window_seconds": seconds, "senders": []}


# ---- block / unblock ---------------------------------------------------------------------


class Admin:
    """The admin API: a user's state before and after, and the calls it received."""

    def __init__(
        self, before: dict[str, Any], after: dict[str, Any], fail: Exception | None = None
    ):
        self.states = [before, after]
        self.fail = fail
        self.calls: list[tuple[Any, ...]] = []

    def get_user(self, account_id: str) -> dict[str, Any]:
        self.calls.append(("get", account_id))
        return self.states.pop(0)

    def block_user(self, account_id: str, *, reason: str) -> dict[str, Any]:
        self.calls.append(("block", account_id, reason))
        if self.fail:
            raise self.fail
        return {"blocked": True}

    def unblock_user(self, account_id: str) -> dict[str, Any]:
        self.calls.append(("unblock", account_id))
        if self.fail:
            raise self.fail
        return {"blocked": False}


class User:
    """The user's own client: the probe send, answered as told."""

    def __init__(self, answer: Exception | None = None) -> None:
        self.answer = answer
        self.sends: list[tuple[Any, ...]] = []

    def send_message(self, conversation_id: str, **kw: Any) -> dict[str, Any]:
        self.sends.append((conversation_id, kw))
        if self.answer:
            raise self.answer
        return {"message_id": "1"}


FREE = {"username": "mallory", "blocked": False}
HELD = {"username": "mallory", "blocked": True, "block_reason": "spam", "blocked_at": "T1"}
BLOCKED = RefusedError("blocked", status_code=403, code="USER_BLOCKED")


def test_block_plan_names_each_step_and_changes_nothing() -> None:
    admin = Admin(FREE, HELD)
    plan = block_user(
        admin=admin,
        account_id=42,
        reason="spam",
        execute=False,
        verifier=User(),
        verifier_name="user",
    )
    assert plan.title == "abuse block"
    assert [s.description for s in plan.steps] == [
        "user mallory (#42) is not blocked now",
        "block mallory (#42) through the admin API (POST /admin/users/42/block) with reason 'spam'",
        "verify through the admin API: GET /admin/users/42 shows blocked=true with the reason",
        "verify by the user's own send with tokens.user: expect 403 USER_BLOCKED (a probe to a "
        "conversation that does not exist: nothing is stored)",
    ]
    assert [s.status for s in plan.steps] == [Status.OK, None, None, None]
    assert plan.data == {"account_id": 42, "username": "mallory", "reason": "spam"}
    assert plan.executed is False and admin.calls == [("get", "42")]


def test_unblock_plan_without_the_users_token() -> None:
    plan = block_user(
        admin=Admin(HELD, FREE), account_id=42, reason=None, execute=False, block=False
    )
    assert plan.title == "abuse unblock"
    assert [s.description for s in plan.steps] == [
        "user mallory (#42) is blocked since T1 (spam) now",
        "unblock mallory (#42) through the admin API (DELETE /admin/users/42/block)",
        "verify through the admin API: GET /admin/users/42 shows blocked=false",
        "no token of this user is configured (--verify-token): the admin API's answer is the "
        "verification; the user's next send is not tried",
    ]


def test_unblock_plan_with_the_users_token() -> None:
    plan = block_user(
        admin=Admin(HELD, FREE),
        account_id=42,
        reason=None,
        execute=False,
        block=False,
        verifier=User(),
        verifier_name="mallory",
    )
    assert plan.steps[3].description == (
        "verify by the user's own send with tokens.mallory: expect it to pass the block check "
        "(a probe to a conversation that does not exist: nothing is stored)"
    )


@pytest.mark.parametrize("reason", [None, "", "  "])
def test_block_needs_a_reason(reason: str | None) -> None:
    with pytest.raises(UsageError) as refused:
        block_user(admin=Admin(FREE, HELD), account_id=42, reason=reason, execute=False)
    assert refused.value.sentence == (
        "abuse block needs --reason: it goes to the service and the journal"
    )


def test_a_protected_account_is_blocked_only_with_force() -> None:
    protected = {"42": "the canary account", "7": "in abuse.protected_accounts"}
    with pytest.raises(UsageError) as refused:
        block_user(
            admin=Admin(FREE, HELD), account_id=42, reason="x", execute=False, protected=protected
        )
    assert refused.value.sentence == (
        "account 42 is the canary account: blocking it breaks the toolkit's own checks (the "
        "canary of `redis recover`, the admin API): add --force if that is what you want"
    )
    forced = block_user(
        admin=Admin(FREE, HELD),
        account_id=42,
        reason="x",
        execute=False,
        protected=protected,
        force=True,
    )
    assert forced.steps[0].description == "user mallory (#42) is not blocked now"
    unblock = block_user(
        admin=Admin(HELD, FREE),
        account_id=42,
        reason=None,
        execute=False,
        block=False,
        protected=protected,
    )
    assert unblock.title == "abuse unblock"


def test_block_executed_and_proved_by_the_users_own_send() -> None:
    admin, user = Admin(FREE, HELD), User(BLOCKED)
    plan = block_user(
        admin=admin,
        account_id=42,
        reason="spam",
        execute=True,
        verifier=user,
        verifier_name="user",
    )
    assert admin.calls == [("get", "42"), ("block", "42", "spam"), ("get", "42")]
    assert user.sends == [
        (
            "0",
            {
                "sender_device_id": "00000000-0000-0000-0000-000000000000",
                "client_message_id": "e2ee-ops-block-probe",
                "envelopes": [
                    {
                        "device_id": "00000000-0000-0000-0000-000000000000",
                        "bundle_version": 1,
                        "ciphertext": "AA==",
                    }
                ],
            },
        )
    ]
    assert plan.executed is True
    assert [(s.executed, s.status, s.outcome) for s in plan.steps] == [
        (True, Status.OK, "not blocked"),
        (True, Status.OK, "the admin API answered blocked=true"),
        (True, Status.OK, "GET /admin/users/42: blocked=true, reason 'spam'"),
        (True, Status.OK, "the user's send answers 403 USER_BLOCKED"),
    ]
    assert plan.summary == "mallory (#42) blocked and verified"


def test_block_with_another_reason_on_record_is_not_verified() -> None:
    admin = Admin(FREE, {**HELD, "block_reason": "older reason"})
    plan = block_user(admin=admin, account_id=42, reason="spam", execute=True)
    assert [(s.status, s.outcome) for s in plan.steps[2:]] == [
        (Status.CRITICAL, "GET /admin/users/42: blocked=true, reason 'older reason'"),
        (Status.OK, "skipped: no token of this user configured"),
    ]
    assert plan.steps[3].executed is False
    assert plan.summary == "mallory (#42): block NOT verified; see the steps"


def test_block_that_did_not_hold_is_critical() -> None:
    plan = block_user(admin=Admin(FREE, FREE), account_id=42, reason="spam", execute=True)
    assert (plan.steps[2].status, plan.steps[2].outcome) == (
        Status.CRITICAL,
        "GET /admin/users/42: blocked=false",
    )


def test_unblock_executed_and_proved() -> None:
    admin = Admin(HELD, FREE)
    user = User(RefusedError("no such conversation", status_code=404, code="NOT_FOUND"))
    plan = block_user(
        admin=admin,
        account_id=42,
        reason=None,
        execute=True,
        block=False,
        verifier=user,
        verifier_name="user",
    )
    assert admin.calls == [("get", "42"), ("unblock", "42"), ("get", "42")]
    assert [(s.status, s.outcome) for s in plan.steps] == [
        (Status.OK, "blocked since T1 (spam)"),
        (Status.OK, "the admin API answered blocked=false"),
        (Status.OK, "GET /admin/users/42: blocked=false"),
        (Status.OK, "the user's send passes the block check"),
    ]
    assert plan.summary == "mallory (#42) unblocked and verified"


def test_unblock_that_did_not_hold_is_critical() -> None:
    plan = block_user(
        admin=Admin(HELD, HELD), account_id=42, reason=None, execute=True, block=False
    )
    assert plan.steps[2].status is Status.CRITICAL
    assert plan.summary == "mallory (#42): unblock NOT verified; see the steps"


@pytest.mark.parametrize(
    ("answer", "block", "status", "outcome"),
    [
        (None, False, Status.OK, "the user's send passes the block check"),
        (
            RefusedError("slow down", status_code=429, code="RATE_LIMITED"),
            False,
            Status.OK,
            "the user's send passes the block check",
        ),
        (
            None,
            True,
            Status.CRITICAL,
            "the user's send passes the block check (expected blocked: is --verify-token "
            "this user's?)",
        ),
        (
            BLOCKED,
            False,
            Status.CRITICAL,
            "the user's send answers 403 USER_BLOCKED (expected allowed: is --verify-token "
            "this user's?)",
        ),
        (
            RefusedError("forbidden", status_code=403, code="NOT_A_MEMBER"),
            True,
            Status.CRITICAL,
            "the probe failed: forbidden",
        ),
        (
            RefusedError("stale", status_code=409, code="USER_BLOCKED"),
            True,
            Status.CRITICAL,
            "the probe failed: stale",
        ),
        (
            AuthError("the token was refused (401)", status_code=401),
            True,
            Status.CRITICAL,
            "the probe failed: the token was refused (401)",
        ),
    ],
)
def test_the_probe_answer_decides_the_last_step(
    answer: Exception | None, block: bool, status: Status, outcome: str
) -> None:
    before, after = (FREE, HELD) if block else (HELD, FREE)
    plan = block_user(
        admin=Admin(before, after),
        account_id=42,
        reason="spam" if block else None,
        execute=True,
        block=block,
        verifier=User(answer),
        verifier_name="user",
    )
    assert (plan.steps[3].status, plan.steps[3].outcome) == (status, outcome)


def test_a_refused_block_stops_the_plan() -> None:
    admin = Admin(FREE, HELD, fail=ServiceError("the admin API answered 500"))
    plan = block_user(admin=admin, account_id=42, reason="spam", execute=True, verifier=User())
    assert admin.calls == [("get", "42"), ("block", "42", "spam")]
    assert [(s.status, s.outcome) for s in plan.steps] == [
        (Status.OK, "not blocked"),
        (Status.CRITICAL, "failed: the admin API answered 500"),
        (None, "not run: the action failed"),
        (None, "not run: the action failed"),
    ]
    assert plan.summary is None
