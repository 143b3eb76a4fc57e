from __future__ import annotations

import pytest

from e2ee_ops import errors
from e2ee_ops.errors import REDACTED, redact, remember_secret
from e2ee_ops.status import (
    ExitCode,
    Finding,
    Plan,
    Report,
    Status,
    Step,
    StepRunner,
    classify,
    exit_code_for,
)


def test_redact_hides_bearer_tokens_url_passwords_and_key_values() -> None:
    text = (
        "Authorization: Bearer Zx9-abc.DEF_123 "
        "postgresql://ops:s3cret@db:5432/app https://x/?token=abc123&a=1 PASSWORD=hunter22"
    )
    cleaned = redact(text)
    for secret in ("Zx9-abc.DEF_123", "s3cret", "abc123", "hunter22"):
        assert secret not in cleaned
    assert f"postgresql://ops:{REDACTED}@db:5432/app" in cleaned


def test_redact_keeps_ordinary_prose() -> None:
    text = "missing or invalid bearer token; E2EE_DM_ENABLED=false; tokens.admin: not set"
    assert redact(text) == text


def test_remembered_secrets_are_redacted_anywhere() -> None:
    remember_secret("plain-looking-value-42")
    assert "plain-looking-value-42" not in redact("the server echoed plain-looking-value-42")


def test_error_sentence_joins_message_and_hint_and_is_redacted() -> None:
    exc = errors.UnreachableError(
        "cannot connect to redis://u:pw@h:6379.", host="h:6379", hint="check redis.url"
    )
    assert exc.sentence == f"cannot connect to redis://u:{REDACTED}@h:6379: check redis.url"
    assert str(exc) == exc.sentence
    assert exc.host == "h:6379"


def test_every_error_is_an_e2ee_ops_error() -> None:
    for cls in (
        errors.ConfigError,
        errors.UsageError,
        errors.GitError,
        errors.SkipReminder,
        errors.ActionFailed,
        errors.VerificationFailed,
    ):
        assert issubclass(cls, errors.E2eeOpsError)
    refused = errors.RefusedError("no", status_code=429, retry_in_seconds=3.0, code=None)
    assert isinstance(refused, errors.E2eeOpsError) and refused.retry_in_seconds == 3.0


def test_status_order_and_worst() -> None:
    assert Status.OK < Status.WARNING < Status.UNKNOWN < Status.CRITICAL
    assert Status.worst([]) is Status.OK
    assert Status.worst([Status.WARNING, Status.UNKNOWN, Status.OK]) is Status.UNKNOWN
    assert Status.worst([Status.CRITICAL, Status.UNKNOWN]) is Status.CRITICAL


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (Status.OK, 0),
        (Status.WARNING, 1),
        (Status.CRITICAL, 2),
        (Status.UNKNOWN, 3),
    ],
)
def test_status_exit_codes(status: Status, code: int) -> None:
    assert exit_code_for(status) == code == status.exit_code


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.ConfigError("bad"), ExitCode.UNKNOWN),
        (errors.UnreachableError("down", host="h"), ExitCode.UNKNOWN),
        (errors.TimedOutError("slow"), ExitCode.UNKNOWN),
        (errors.AuthError("401", status_code=401), ExitCode.UNKNOWN),
        (errors.UsageError("typo"), ExitCode.USAGE),
        (errors.VerificationFailed("still 200"), ExitCode.CRITICAL),
        (errors.ActionFailed("restart failed"), ExitCode.CRITICAL),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (RuntimeError("bug"), ExitCode.UNKNOWN),
    ],
)
def test_exception_exit_codes(exc: BaseException, code: ExitCode) -> None:
    assert exit_code_for(exc) is code


def test_exit_code_values_are_the_documented_ones() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 64, 130, 143]


def test_classify_higher_and_lower_is_worse() -> None:
    assert classify(600, warn=500) is Status.WARNING
    assert classify(500, warn=500) is Status.OK  # "p99 > 500 ms": 500 itself is fine
    assert classify(3, warn=10, crit=5, higher_is_worse=False) is Status.CRITICAL
    assert classify(7, warn=10, crit=5, higher_is_worse=False) is Status.WARNING
    assert classify(5, warn=10, crit=5, higher_is_worse=False) is Status.WARNING
    assert classify(None, warn=1) is Status.UNKNOWN


def test_report_status_is_the_worst_finding() -> None:
    report = Report(
        title="devices stuck",
        findings=[
            Finding("a", Status.OK, 12, "fine"),
            Finding("b", Status.WARNING, 8, "b low", threshold_warn=10, threshold_crit=5),
        ],
    )
    assert report.status is Status.WARNING
    assert report.exit_code == ExitCode.WARNING
    assert report.one_line_summary() == "b low"
    assert Report(title="empty").status is Status.OK


def test_the_summary_says_each_sentence_once_worst_first() -> None:
    # Two instances exporting the same fleet-wide figure give the same sentence.
    report = Report(
        title="alerts check",
        findings=[
            Finding("pool (api-1)", Status.CRITICAL, 3, "smallest pool is 3"),
            Finding("age (api-1)", Status.WARNING, 120, "age is 120 days"),
            Finding("pool (api-2)", Status.CRITICAL, 3, "smallest pool is 3"),
            Finding("age (api-2)", Status.WARNING, 120, "age is 120 days"),
            Finding("p99 (api-2)", Status.OK, 12, "p99 is 12 ms"),
        ],
    )
    assert report.one_line_summary() == "smallest pool is 3; age is 120 days"


def test_plan_status_counts_only_steps_with_a_status() -> None:
    plan = Plan(title="rollback flag", steps=[Step("set flag"), Step("restart")])
    assert plan.status is Status.OK
    assert "nothing changed" in plan.one_line_summary()
    plan.steps[0] = Step("set flag", executed=True, outcome="done", status=Status.OK)
    plan.steps[1] = Step("restart", executed=True, outcome="failed", status=Status.CRITICAL)
    plan.executed = True
    assert plan.exit_code == ExitCode.CRITICAL
    assert plan.one_line_summary() == "2 of 2 steps executed"


def test_step_runner_marks_steps_in_order_and_stops_at_a_failure() -> None:
    plan = Plan(title="t", steps=[Step("a"), Step("b"), Step("c"), Step("d")])
    seen: list[str] = []
    run = StepRunner(plan, seen.append)
    run.done("a done")
    run.skip("b skipped")
    assert run.fail("c failed", rest="not run: c failed") is plan
    a, b, c, d = plan.steps
    assert plan.executed
    assert (a.executed, a.status, a.outcome) == (True, Status.OK, "a done")
    assert (b.executed, b.status, b.outcome) == (False, Status.OK, "b skipped")
    assert (c.executed, c.status, c.outcome) == (True, Status.CRITICAL, "c failed")
    assert (d.executed, d.status, d.outcome) == (False, None, "not run: c failed")
    assert plan.status is Status.CRITICAL
    assert seen == ["OK: a done", "CRITICAL: c failed"]
