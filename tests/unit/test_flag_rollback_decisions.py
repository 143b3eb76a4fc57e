"""`rollback_flag`'s decisions with API instances, streams and a restarter kept in memory
(the env file is a real file): when it restarts, when it watches a stream close, the exact
plan, and every outcome of acting and verifying."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from e2ee_ops.errors import ActionFailed, RefusedError, ServiceError, UnreachableError
from e2ee_ops.procedures.rollback_flag import FlagTargets, rollback_flag
from e2ee_ops.status import NOT_RUN, Plan, Status

DISABLED = {"detail": "E2EE DM is not enabled"}
NOW = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)


@dataclass
class Stream:
    host: str
    events: list[str] = field(default_factory=lambda: ["heartbeat"])
    ended: bool = False
    error: BaseException | None = None
    closed: bool = False
    waits: list[float] = field(default_factory=list)
    conditions: list[Callable[[Any], bool]] = field(default_factory=list)

    @property
    def opened(self) -> bool:
        return bool(self.events)

    def saw(self, event: str) -> bool:
        return event in self.events

    def wait_for(self, predicate: Callable[[Any], bool], deadline_seconds: float) -> bool:
        self.waits.append(deadline_seconds)
        self.conditions.append(predicate)
        return predicate(self)

    def close(self) -> None:
        self.closed = True


@dataclass
class Api:
    """One API instance: what /health says (or raises), what /dm/conversations answers."""

    host: str
    enabled: bool | None = True  # None: /health does not answer
    conversations: list[dict[str, str]] | Exception = field(default_factory=list)
    devices: list[dict[str, str]] | Exception = field(
        default_factory=lambda: [
            {"device_id": "d-revoked", "status": "revoked"},
            {"device_id": "d-1", "status": "active"},
            {"device_id": "d-2", "status": "active"},
        ]
    )
    stream: Stream | None = None
    opened: list[tuple[str, float]] = field(default_factory=list)
    on_health: Callable[[], None] = lambda: None

    def health(self) -> Any:
        self.on_health()
        if self.enabled is None:
            raise UnreachableError(f"cannot connect to the API at {self.host}", host=self.host)
        return SimpleNamespace(e2ee_dm_enabled=self.enabled)

    def list_conversations(self) -> list[dict[str, str]]:
        if isinstance(self.conversations, Exception):
            raise self.conversations
        return self.conversations

    def list_devices(self) -> list[dict[str, str]]:
        if isinstance(self.devices, Exception):
            raise self.devices
        return self.devices

    def open_stream(self, device_id: str, *, lifetime_seconds: float) -> Stream:
        self.opened.append((device_id, lifetime_seconds))
        self.stream = self.stream or Stream(self.host)
        return self.stream


@dataclass
class Restarter:
    """Restarting sets every instance's flag and ends their streams (with `closing`)."""

    apis: list[Api]
    then: bool | None = None  # what /health says after the restart
    closing: bool = True  # the server says `closing` before it ends a stream
    fails: bool = False
    timeout: float | None = 45.0
    restarts: int = 0

    @property
    def spec(self) -> Any:
        return None if self.timeout is None else SimpleNamespace(timeout_seconds=self.timeout)

    def describe(self) -> str:
        return "systemctl restart e2ee-api"

    def restart(self) -> Any:
        self.restarts += 1
        if self.fails:
            raise ActionFailed("systemctl exited 1")
        for api in self.apis:
            api.enabled = self.then
            if api.stream is not None:
                api.stream.ended = True
                if self.closing:
                    api.stream.events.append("closing")
        return SimpleNamespace(seconds=2.25)


@dataclass
class Clock:
    now: float = 100.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def setup(
    tmp_path: Path, env: str = "PORT=8000\nE2EE_DM_ENABLED=true\n", hosts: int = 2
) -> tuple[FlagTargets, list[Api], Restarter, Clock, list[str]]:
    env_file = tmp_path / "api.env"
    env_file.write_text(env)
    apis = [Api(f"api-{n}") for n in range(1, hosts + 1)]
    restarter = Restarter(apis)
    clock = Clock()
    progress: list[str] = []
    t = FlagTargets(
        env_file=env_file,
        apis=apis,  # type: ignore[arg-type]
        restarter=restarter,  # type: ignore[arg-type]
        health_deadline_seconds=3.0,
        stream_close_seconds=12.0,
        clock=lambda: NOW,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        progress=progress.append,
    )
    return t, apis, restarter, clock, progress


def outcomes(plan: Plan) -> list[tuple[str | None, str | None]]:
    return [(s.status.name if s.status else None, s.outcome) for s in plan.steps]


def disabled_everywhere(apis: list[Api]) -> None:
    for api in apis:
        api.conversations = RefusedError(
            "refused", status_code=403, detail=DISABLED["detail"], body=dict(DISABLED)
        )


# ---- the plan ------------------------------------------------------------------------------


def test_the_plan_to_disable_watches_a_stream_and_changes_nothing(tmp_path: Path) -> None:
    t, apis, restarter, _, progress = setup(tmp_path)
    plan = rollback_flag(t, enable=False, execute=False)
    env_file = tmp_path / "api.env"
    assert plan.title == "rollback flag --disable"
    assert [s.description for s in plan.steps] == [
        f"set E2EE_DM_ENABLED=false in {env_file} by rewriting line 2 (now true)",
        "open an SSE stream of the user's first active device on each API instance, to see "
        "the server close it when the flag goes off",
        "restart the API: systemctl restart e2ee-api",
        "wait until /health on every API instance says e2ee_dm_enabled=false (deadline 3 s)",
        'GET /dm/conversations with the user token: expect 403 {"detail": "E2EE DM is not '
        'enabled"} on every instance',
        "check that the server closed each stream opened before the restart (deadline 12 s)",
    ]
    assert plan.summary is None
    assert plan.executed is False
    assert plan.data == {
        "env_file": str(env_file),
        "variable": "E2EE_DM_ENABLED",
        "value": "false",
        "value_in_file": "true",
        "lines": [2],
        "running": {"api-1": True, "api-2": True},
        "restart": True,
    }
    assert env_file.read_text() == "PORT=8000\nE2EE_DM_ENABLED=true\n"
    assert restarter.restarts == 0 and progress == []
    assert apis[0].opened == []


def test_the_plan_names_the_configured_device_and_the_default_deadlines(tmp_path: Path) -> None:
    t, _, _, _, _ = setup(tmp_path)
    t = FlagTargets(t.env_file, t.apis, t.restarter, verify_device="d-9")
    steps = [s.description for s in rollback_flag(t, enable=False, execute=False).steps]
    assert steps[1].startswith("open an SSE stream of d-9 on each API instance")
    assert steps[3].endswith("(deadline 60 s)")
    assert steps[5].endswith("(deadline 15 s)")


def test_the_plan_to_enable_expects_200_and_watches_no_stream(tmp_path: Path) -> None:
    t, apis, _, _, _ = setup(tmp_path, env="E2EE_DM_ENABLED=false\n")
    for api in apis:
        api.enabled = False
    plan = rollback_flag(t, enable=True, execute=False)
    assert plan.title == "rollback flag --enable"
    assert [s.description for s in plan.steps] == [
        f"set E2EE_DM_ENABLED=true in {tmp_path / 'api.env'} by rewriting line 1 (now false)",
        "restart the API: systemctl restart e2ee-api",
        "wait until /health on every API instance says e2ee_dm_enabled=true (deadline 3 s)",
        "GET /dm/conversations with the user token: expect 200 on every instance",
    ]
    assert plan.data["value"] == "true" and plan.data["running"] == {"api-1": False, "api-2": False}


def test_nothing_to_change_means_no_restart_and_no_stream(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path, env="E2EE_DM_ENABLED=false\n")
    for api in apis:
        api.enabled = False
    disabled_everywhere(apis)
    plan = rollback_flag(t, enable=False, execute=False)
    assert plan.summary == "E2EE_DM_ENABLED is already false; nothing to change"
    assert plan.data["restart"] is False
    assert [s.description for s in plan.steps][:2] == [
        f"E2EE_DM_ENABLED is already false in {tmp_path / 'api.env'} (line 1): file unchanged",
        "no restart: every API instance already runs with E2EE_DM_ENABLED=false",
    ]
    assert len(plan.steps) == 4

    done = rollback_flag(t, enable=False, execute=True)
    assert outcomes(done) == [
        ("OK", f"E2EE_DM_ENABLED already false in {tmp_path / 'api.env'}: file unchanged"),
        ("OK", "not restarted: every instance already runs with E2EE_DM_ENABLED=false"),
        ("OK", "every API instance is up and says e2ee_dm_enabled=false"),
        ("OK", 'GET /dm/conversations answers 403 {"detail": "E2EE DM is not enabled"} on 2 '
               "instance(s)"),
    ]  # fmt: skip
    assert restarter.restarts == 0
    assert "backup" not in done.data
    assert apis[0].opened == []


@pytest.mark.parametrize(
    ("running", "restart", "watch"),
    [
        ((True, True), True, True),  # the file already says false, the instances do not
        ((False, None), True, False),  # one instance cannot tell: restart, no stream to see
        ((False, True), True, True),
    ],
)
def test_a_file_already_set_still_restarts_instances_that_run_otherwise(
    tmp_path: Path, running: tuple[bool | None, ...], restart: bool, watch: bool
) -> None:
    t, apis, _, _, _ = setup(tmp_path, env="E2EE_DM_ENABLED=false\n")
    for api, flag in zip(apis, running, strict=True):
        api.enabled = flag
    plan = rollback_flag(t, enable=False, execute=False)
    assert plan.data["restart"] is restart
    assert plan.data["running"] == {"api-1": running[0], "api-2": running[1]}
    assert any(s.description.startswith("open an SSE stream") for s in plan.steps) is watch


# ---- acting: disable -----------------------------------------------------------------------


def test_disable_writes_restarts_verifies_and_sees_every_stream_closed(tmp_path: Path) -> None:
    t, apis, restarter, clock, progress = setup(tmp_path)
    restarter.then = False
    disabled_everywhere(apis)
    plan = rollback_flag(t, enable=False, execute=True)
    backup = tmp_path / "api.env.20260504T030201123456Z.bak"
    assert plan.executed is True and plan.status is Status.OK
    assert outcomes(plan) == [
        ("OK", f"E2EE_DM_ENABLED=false written to {tmp_path / 'api.env'} (backup {backup.name})"),
        ("OK", "stream of device d-1 open on 2 instance(s)"),
        ("OK", "API restarted in 2.2 s"),
        ("OK", "every API instance is up and says e2ee_dm_enabled=false"),
        ("OK", 'GET /dm/conversations answers 403 {"detail": "E2EE DM is not enabled"} on 2 '
               "instance(s)"),
        ("OK", "the server sent `closing` and closed the stream on 2 instance(s)"),
    ]  # fmt: skip
    assert plan.data["backup"] == str(backup)
    assert backup.read_text() == "PORT=8000\nE2EE_DM_ENABLED=true\n"
    assert (tmp_path / "api.env").read_text() == "PORT=8000\nE2EE_DM_ENABLED=false\n"
    # lifetime: health 3 + close 12 + restart 45 + 30 s of margin
    assert [a.opened for a in apis] == [[("d-1", 90.0)], [("d-1", 90.0)]]
    streams = [a.stream for a in apis]
    assert all(s is not None and s.closed for s in streams)
    assert [s.waits for s in streams if s] == [[10.0, 12.0], [10.0, 12.0]]
    # It waits for the stream to open, then for it to end.
    opened, ended = streams[0].conditions if streams[0] else ()
    assert opened(Stream("h")) is True and opened(Stream("h", events=[])) is False
    assert ended(Stream("h", ended=True)) is True and ended(Stream("h")) is False
    assert clock.slept == []
    assert progress[0].startswith("OK: E2EE_DM_ENABLED=false written to ")


def test_the_stream_lifetime_without_a_restart_spec_counts_sixty_seconds(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path)
    restarter.timeout = None
    restarter.then = False
    disabled_everywhere(apis)
    t.stream_close_seconds = 4.0
    rollback_flag(t, enable=False, execute=True)
    assert apis[0].opened == [("d-1", 97.0)]  # 3 + 4 + 60 + 30
    assert apis[0].stream is not None and apis[0].stream.waits == [4.0, 4.0]


def test_the_configured_device_is_streamed_without_listing_devices(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path)
    t.verify_device = "d-9"
    restarter.then = False
    disabled_everywhere(apis)
    for api in apis:
        api.devices = ServiceError("must not be asked")
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[1] == ("OK", "stream of device d-9 open on 2 instance(s)")


@pytest.mark.parametrize(
    ("devices", "said"),
    [
        ([{"device_id": "d-0", "status": "revoked"}],
         "no stream opened: the user has no active device (set rollback.verify_device)"),
        (ServiceError("API at api-1 failed GET /devices with HTTP 500"),
         "no stream opened: cannot list the user's devices (API at api-1 failed GET /devices "
         "with HTTP 500)"),
    ],
)  # fmt: skip
def test_no_stream_to_watch_only_weakens_the_check(tmp_path: Path, devices: Any, said: str) -> None:
    t, apis, restarter, _, _ = setup(tmp_path)
    apis[0].devices = devices
    restarter.then = False
    disabled_everywhere(apis)
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[1] == ("WARNING", said)
    assert outcomes(plan)[5] == (
        "WARNING",
        "no stream was open: the server's closing of streams was not checked",
    )
    assert plan.status is Status.WARNING
    assert restarter.restarts == 1


def test_a_stream_that_does_not_open_is_dropped_with_a_warning(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path)
    apis[0].stream = Stream("api-1", events=[], ended=True, error=ConnectionError("reset"))
    apis[1].stream = Stream("api-2", events=[])
    restarter.then = False
    disabled_everywhere(apis)
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[1] == (
        "WARNING",
        "stream of device d-1 not opened on api-1: reset; api-2: no event",
    )
    assert apis[0].stream.closed and apis[1].stream.closed
    assert outcomes(plan)[5][0] == "WARNING"


def test_a_stream_that_opened_and_ended_at_once_is_not_counted(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path)
    apis[1].stream = Stream("api-2", ended=True)
    restarter.then = False
    disabled_everywhere(apis)
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[1] == ("WARNING", "stream of device d-1 not opened on api-2: no event")
    assert outcomes(plan)[5] == (
        "OK",
        "the server sent `closing` and closed the stream on 1 instance(s)",
    )


def test_a_stream_still_open_after_the_restart_fails(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path)
    restarter.then = False
    disabled_everywhere(apis)
    restart = restarter.restart

    def restart_keeping_the_streams() -> Any:
        result = restart()
        for api in apis:
            assert api.stream is not None
            api.stream.ended = False
        return result

    restarter.restart = restart_keeping_the_streams  # type: ignore[method-assign]
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[5] == (
        "CRITICAL",
        "the stream is still open after 12 s on api-1, api-2",
    )
    assert plan.status is Status.CRITICAL
    assert all(a.stream is not None and a.stream.closed for a in apis)


def test_a_stream_that_ran_out_its_lifetime_was_not_closed_by_the_server(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path)
    restarter.then = False
    restarter.closing = False
    disabled_everywhere(apis)
    for api in apis:
        api.stream = Stream(api.host, error=TimeoutError("the stream was still open"))
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[5] == (
        "CRITICAL",
        "the stream was never closed by the server on api-1, api-2",
    )


def test_streams_dropped_without_closing_are_a_warning(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path)
    restarter.then = False
    restarter.closing = False
    disabled_everywhere(apis)
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[5] == (
        "WARNING",
        "the server dropped the stream without a `closing` event on api-1, api-2",
    )
    assert plan.status is Status.WARNING


# ---- acting: what fails --------------------------------------------------------------------


def test_an_env_file_changed_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path, hosts=1)
    env_file = tmp_path / "api.env"
    apis[0].on_health = lambda: env_file.write_text("E2EE_DM_ENABLED=true\nEDITED=1\n")
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[0] == (
        "CRITICAL",
        f"env file not changed: the env file {env_file} changed while e2ee-ops was working on "
        "it; nothing written: run the command again",
    )
    assert [o for _, o in outcomes(plan)[1:]] == [NOT_RUN] * 5
    assert restarter.restarts == 0


def test_a_failed_restart_says_the_file_is_written_already(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path, env="E2EE_DM_ENABLED=false\n")
    for api in apis:
        api.enabled = False
    restarter.fails = True
    plan = rollback_flag(t, enable=True, execute=True)
    assert outcomes(plan)[1:] == [
        ("CRITICAL", "restart failed: systemctl exited 1 (E2EE_DM_ENABLED=true is in the file "
                     "already)"),
        (None, NOT_RUN),
        (None, NOT_RUN),
    ]  # fmt: skip


def test_health_is_polled_every_half_second_until_the_deadline(tmp_path: Path) -> None:
    t, apis, restarter, clock, _ = setup(tmp_path, hosts=3)
    restarter.then = False
    disabled_everywhere(apis)
    restart = restarter.restart

    def restart_leaving_two_behind() -> Any:
        result = restart()
        apis[1].enabled = None
        apis[2].enabled = True
        return result

    restarter.restart = restart_leaving_two_behind  # type: ignore[method-assign]
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[3:] == [
        ("CRITICAL", "after 3 s: api-2: no answer, api-3: e2ee_dm_enabled=true"),
        (None, NOT_RUN),
        (None, NOT_RUN),
    ]
    assert clock.slept == [0.5] * 6
    assert all(a.stream is not None and a.stream.closed for a in apis)


def test_health_that_comes_right_before_the_deadline_passes(tmp_path: Path) -> None:
    t, apis, restarter, clock, _ = setup(tmp_path, env="E2EE_DM_ENABLED=false\n", hosts=1)
    apis[0].enabled = False
    restarter.then = False  # still starting: /health says false for a while
    sleep = clock.sleep

    def sleep_then_enable(seconds: float) -> None:
        sleep(seconds)
        if clock.now >= 102.5:
            apis[0].enabled = True

    t.sleep = sleep_then_enable
    plan = rollback_flag(t, enable=True, execute=True)
    assert outcomes(plan)[2] == ("OK", "every API instance is up and says e2ee_dm_enabled=true")
    assert clock.slept == [0.5] * 5


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ([{"conversation_id": "c"}], "api-1 still answers 200 with 1 conversation(s)"),
        (RefusedError("refused", status_code=403, body={"detail": "blocked"}),
         "api-1 answered HTTP 403 {'detail': 'blocked'}"),
        (RefusedError("refused", status_code=404, body=DISABLED),
         "api-1 answered HTTP 404 {'detail': 'E2EE DM is not enabled'}"),
        (ServiceError("API at api-1 failed GET /dm/conversations with HTTP 502"),
         "API at api-1 failed GET /dm/conversations with HTTP 502"),
    ],
)  # fmt: skip
def test_disable_fails_on_any_answer_but_the_disabled_403(
    tmp_path: Path, answer: Any, said: str
) -> None:
    t, apis, restarter, _, _ = setup(tmp_path)
    restarter.then = False
    disabled_everywhere(apis)
    apis[0].conversations = answer
    plan = rollback_flag(t, enable=False, execute=True)
    assert outcomes(plan)[4:] == [("CRITICAL", said), (None, NOT_RUN)]


def test_enable_passes_on_200_and_joins_every_failure(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path, env="E2EE_DM_ENABLED=false\n", hosts=3)
    for api in apis:
        api.enabled = False
    restarter.then = True
    plan = rollback_flag(t, enable=True, execute=True)
    assert outcomes(plan)[-1] == ("OK", "GET /dm/conversations answers 200 on 3 instance(s)")
    assert (tmp_path / "api.env").read_text() == "E2EE_DM_ENABLED=true\n"
    assert len(plan.steps) == 4

    disabled_everywhere(apis[1:])
    plan = rollback_flag(t, enable=True, execute=True)
    assert outcomes(plan)[-1] == (
        "CRITICAL",
        "api-2 answered HTTP 403 {'detail': 'E2EE DM is not enabled'}; "
        "api-3 answered HTTP 403 {'detail': 'E2EE DM is not enabled'}",
    )


def test_the_default_clock_stamps_the_backup(tmp_path: Path) -> None:
    t, apis, restarter, _, _ = setup(tmp_path, hosts=1)
    t = FlagTargets(t.env_file, t.apis, t.restarter, health_deadline_seconds=0.0)
    restarter.then = False
    disabled_everywhere(apis)
    plan = rollback_flag(t, enable=False, execute=True)
    assert plan.status is Status.OK, outcomes(plan)
    backup = Path(plan.data["backup"])
    assert re.fullmatch(r"api\.env\.\d{8}T\d{12}Z\.bak", backup.name)
    assert backup.read_text() == "PORT=8000\nE2EE_DM_ENABLED=true\n"
