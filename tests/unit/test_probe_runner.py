"""Probes side by side: each becomes findings in the probes' order, an error its one
sentence as UNKNOWN, a probe past the deadline UNKNOWN at once, a bug re-raised."""

from __future__ import annotations

import threading

import pytest

from e2ee_ops.errors import UnreachableError
from e2ee_ops.procedures.probes import run_probe, run_probes
from e2ee_ops.status import Finding, Status


def finding(name: str, status: Status = Status.OK) -> Finding:
    return Finding(name, status, 1, f"{name} fine")


def test_an_error_becomes_unknown_with_its_sentence() -> None:
    def probe() -> Finding:
        raise UnreachableError("api-1 does not answer", host="api-1", hint="check the VPN")

    assert run_probe("api", probe) == [
        Finding("api", Status.UNKNOWN, None, "api: api-1 does not answer: check the VPN")
    ]


def test_one_finding_or_several_come_back_as_a_list() -> None:
    assert run_probe("a", lambda: finding("a")) == [finding("a")]
    several = [finding("b1"), finding("b2", Status.WARNING)]
    assert run_probe("b", lambda: several) == several


def test_findings_come_back_in_the_probes_order_each_on_its_own_daemon_thread() -> None:
    threads: dict[str, tuple[str, bool]] = {}
    second_started = threading.Event()

    def slow_first() -> Finding:
        # Waits for the second probe: they run side by side, not one after the other.
        assert second_started.wait(30)
        me = threading.current_thread()
        threads["first"] = (me.name, me.daemon)
        return finding("first")

    def second() -> list[Finding]:
        second_started.set()
        me = threading.current_thread()
        threads["second"] = (me.name, me.daemon)
        return [finding("second a"), finding("second b")]

    def failing() -> Finding:
        raise UnreachableError("redis-1:6379 refused the connection", host="redis-1")

    found = run_probes({"first": slow_first, "second": second, "redis": failing})
    assert found == [
        finding("first"),
        finding("second a"),
        finding("second b"),
        Finding("redis", Status.UNKNOWN, None, "redis: redis-1:6379 refused the connection"),
    ]
    assert threads == {"first": ("probe first", True), "second": ("probe second", True)}


def test_a_probe_still_running_at_the_deadline_is_unknown_at_once() -> None:
    release = threading.Event()
    late = threading.Event()

    def stuck() -> Finding:
        release.wait(30)
        return finding("stuck")

    def answers_late() -> Finding:
        late.wait(30)
        return finding("late")

    # The second probe answers shortly after the (already passed) deadline: the call
    # must not wait for it.
    timer = threading.Timer(0.5, late.set)
    timer.start()
    try:
        found = run_probes({"stuck": stuck, "late": answers_late}, timeout=0.0)
        assert found == [
            Finding("stuck", Status.UNKNOWN, None, "stuck: no answer within 0 s"),
            Finding("late", Status.UNKNOWN, None, "late: no answer within 0 s"),
        ]
    finally:
        release.set()
        timer.cancel()
        late.set()


def test_the_deadline_message_says_the_timeout_given() -> None:
    release = threading.Event()

    def stuck() -> Finding:
        release.wait(30)
        return finding("stuck")

    try:
        found = run_probes({"db": stuck, "ok": lambda: finding("ok")}, timeout=0.25)
    finally:
        release.set()
    assert found[0] == Finding("db", Status.UNKNOWN, None, "db: no answer within 0.25 s")


def test_a_probe_that_answers_in_time_is_reported_under_a_deadline() -> None:
    assert run_probes({"a": lambda: finding("a")}, timeout=30) == [finding("a")]


def test_a_bug_in_a_probe_is_raised_in_the_caller() -> None:
    def buggy() -> Finding:
        raise KeyError("redis_status")

    with pytest.raises(KeyError, match="redis_status"):
        run_probes({"ok": lambda: finding("ok"), "buggy": buggy})
