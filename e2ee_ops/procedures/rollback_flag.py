"""Runbook: Rollback/Hotfix, Feature Flag Rollback. `rollback_flag` sets E2EE_DM_ENABLED.

Steps, as the runbook orders them: set the variable in the env file (one line rewritten,
never appended twice), restart the API by the configured method, verify. With the flag
off, verification is the runbook's own: a user's `GET /dm/conversations` answers 403
`{"detail": "E2EE DM is not enabled"}`, and an SSE stream opened before the restart has
been closed by the server (gracefully: a `closing` event first). With the flag on, the
same call succeeds.

Nothing is restarted when the file already says so and every instance already runs that
way, so running it twice is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from e2ee_ops.adapters.envfile import EnvEdit, apply_env_edit, plan_env_edit
from e2ee_ops.errors import E2eeOpsError, RefusedError
from e2ee_ops.status import Plan, Status, Step, StepRunner

if TYPE_CHECKING:
    from e2ee_ops.adapters.api import ApiClient, EventStream
    from e2ee_ops.adapters.restarter import Restarter

FLAG = "E2EE_DM_ENABLED"
DISABLED_BODY = {"detail": "E2EE DM is not enabled"}


@dataclass
class FlagTargets:
    env_file: Path
    apis: Sequence[ApiClient]  # user token, one per API instance
    restarter: Restarter
    verify_device: str | None = None
    health_deadline_seconds: float = 60.0
    stream_close_seconds: float = 15.0
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    progress: Callable[[str], None] = lambda _m: None


def _word(enable: bool) -> str:
    return "true" if enable else "false"


def _running_flags(apis: Sequence[ApiClient]) -> dict[str, bool | None]:
    """What each instance's /health says about the flag now (None: could not tell)."""
    flags: dict[str, bool | None] = {}
    for api in apis:
        try:
            flags[api.host] = api.health().e2ee_dm_enabled
        except E2eeOpsError:
            flags[api.host] = None
    return flags


@dataclass(frozen=True)
class _Assessment:
    edit: EnvEdit
    running: dict[str, bool | None]

    def restart_needed(self, enable: bool) -> bool:
        return self.edit.changes or any(v is not enable for v in self.running.values())

    def watch_streams(self, enable: bool) -> bool:
        """Whether to see the server close a stream: switching off, by a restart, and only
        while some instance still serves streams (a disabled one refuses to open one)."""
        return (
            not enable
            and self.restart_needed(enable)
            and any(v is True for v in self.running.values())
        )


def _assess(t: FlagTargets, enable: bool) -> _Assessment:
    return _Assessment(plan_env_edit(t.env_file, FLAG, _word(enable)), _running_flags(t.apis))


def _plan(t: FlagTargets, a: _Assessment, enable: bool) -> Plan:
    word = _word(enable)
    steps = [Step(a.edit.describe())]
    watch = a.watch_streams(enable)
    if watch:
        device = t.verify_device or "the user's first active device"
        steps.append(
            Step(
                f"open an SSE stream of {device} on each API instance, to see the server "
                "close it when the flag goes off"
            )
        )
    if a.restart_needed(enable):
        steps.append(Step(f"restart the API: {t.restarter.describe()}"))
    else:
        steps.append(Step(f"no restart: every API instance already runs with {FLAG}={word}"))
    steps.append(
        Step(
            f"wait until /health on every API instance says e2ee_dm_enabled={word} "
            f"(deadline {t.health_deadline_seconds:g} s)"
        )
    )
    if enable:
        steps.append(
            Step("GET /dm/conversations with the user token: expect 200 on every instance")
        )
    else:
        steps.append(
            Step(
                "GET /dm/conversations with the user token: expect 403 "
                '{"detail": "E2EE DM is not enabled"} on every instance'
            )
        )
    if watch:
        steps.append(
            Step(
                "check that the server closed each stream opened before the restart "
                f"(deadline {t.stream_close_seconds:g} s)"
            )
        )
    return Plan(
        title=f"rollback flag --{'enable' if enable else 'disable'}",
        steps=steps,
        data={
            "env_file": str(a.edit.path),
            "variable": FLAG,
            "value": word,
            "value_in_file": a.edit.current,
            "lines": list(a.edit.lines),
            "running": dict(a.running),
            "restart": a.restart_needed(enable),
        },
        summary=None
        if a.restart_needed(enable)
        else f"{FLAG} is already {word}; nothing to change",
    )


def rollback_flag(t: FlagTargets, *, enable: bool, execute: bool) -> Plan:
    """The plan; with `execute`, set the flag, restart, verify."""
    a = _assess(t, enable)
    plan = _plan(t, a, enable)
    if not execute:
        return plan
    streams: list[EventStream] = []
    try:
        return _execute(t, a, plan, enable, streams)
    finally:
        for stream in streams:
            stream.close()


def _execute(
    t: FlagTargets, a: _Assessment, plan: Plan, enable: bool, streams: list[EventStream]
) -> Plan:
    run = StepRunner(plan, t.progress)
    word = _word(enable)
    watch = a.watch_streams(enable)

    try:
        backup = apply_env_edit(a.edit, now=t.clock())
    except E2eeOpsError as exc:
        return run.fail(f"env file not changed: {exc}")
    if backup is None:
        run.done(f"{FLAG} already {word} in {a.edit.path}: file unchanged")
    else:
        run.done(f"{FLAG}={word} written to {a.edit.path} (backup {backup.name})")
        plan.data["backup"] = str(backup)

    if watch:
        outcome, status = _open_streams(t, streams)
        run.done(outcome, status)

    if a.restart_needed(enable):
        try:
            result = t.restarter.restart()
        except E2eeOpsError as exc:
            return run.fail(f"restart failed: {exc} ({FLAG}={word} is in the file already)")
        run.done(f"API restarted in {result.seconds:.1f} s")
    else:
        run.skip(f"not restarted: every instance already runs with {FLAG}={word}")

    waited = _wait_for_health(t, enable)
    if waited is not None:
        return run.fail(waited)
    run.done(f"every API instance is up and says e2ee_dm_enabled={word}")

    failures = [problem for api in t.apis if (problem := _check_conversations(api, enable))]
    if failures:
        return run.fail("; ".join(failures))
    run.done(
        "GET /dm/conversations answers "
        + ("200" if enable else '403 {"detail": "E2EE DM is not enabled"}')
        + f" on {len(t.apis)} instance(s)"
    )

    if watch:
        outcome, status = _streams_closed(t, streams)
        if status is Status.CRITICAL:
            return run.fail(outcome)
        run.done(outcome, status)
    return plan


# ---- verification ----------------------------------------------------------------------


def _wait_for_health(t: FlagTargets, enable: bool) -> str | None:
    """None once every instance answers /health with the flag as wanted; else the failure."""
    end = t.monotonic() + t.health_deadline_seconds
    while True:
        flags = _running_flags(t.apis)
        if all(v is enable for v in flags.values()):
            return None
        if t.monotonic() >= end:
            wrong = ", ".join(
                f"{h}: {'no answer' if v is None else f'e2ee_dm_enabled={_word(v)}'}"
                for h, v in flags.items()
                if v is not enable
            )
            return f"after {t.health_deadline_seconds:g} s: {wrong}"
        t.sleep(0.5)


def _check_conversations(api: ApiClient, enable: bool) -> str | None:
    """The runbook's check on one instance: None when it holds, else what was seen."""
    try:
        conversations = api.list_conversations()
    except RefusedError as exc:
        if not enable and exc.status_code == 403 and exc.body == DISABLED_BODY:
            return None
        return f"{api.host} answered HTTP {exc.status_code} {exc.body!r}"
    except E2eeOpsError as exc:
        return str(exc)
    if enable:
        return None
    return f"{api.host} still answers 200 with {len(conversations)} conversation(s)"


def _device(t: FlagTargets) -> str | None:
    if t.verify_device:
        return t.verify_device
    devices = t.apis[0].list_devices()
    active = [d for d in devices if d.get("status") == "active"]
    return str(active[0]["device_id"]) if active else None


def _open_streams(t: FlagTargets, streams: list[EventStream]) -> tuple[str, Status]:
    """Open one stream per instance into `streams` (the caller closes them). A stream that
    cannot be opened only weakens the verification (WARNING): it must never hold up
    switching the feature off."""
    try:
        device = _device(t)
    except E2eeOpsError as exc:
        return f"no stream opened: cannot list the user's devices ({exc})", Status.WARNING
    if device is None:
        return (
            "no stream opened: the user has no active device (set rollback.verify_device)",
            Status.WARNING,
        )
    lifetime = t.health_deadline_seconds + t.stream_close_seconds + _restart_timeout(t) + 30.0
    streams.extend(api.open_stream(device, lifetime_seconds=lifetime) for api in t.apis)
    for stream in streams:
        stream.wait_for(lambda s: s.opened, min(t.stream_close_seconds, 10.0))
    failed = [s for s in streams if not s.opened or s.ended]
    if failed:
        why = "; ".join(f"{s.host}: {s.error or 'no event'}" for s in failed)
        for s in failed:
            s.close()
            streams.remove(s)
        return f"stream of device {device} not opened on {why}", Status.WARNING
    return f"stream of device {device} open on {len(streams)} instance(s)", Status.OK


def _restart_timeout(t: FlagTargets) -> float:
    spec = t.restarter.spec
    return spec.timeout_seconds if spec is not None else 60.0


def _streams_closed(t: FlagTargets, streams: list[EventStream]) -> tuple[str, Status]:
    if not streams:
        return "no stream was open: the server's closing of streams was not checked", Status.WARNING
    end = t.monotonic() + t.stream_close_seconds
    for stream in streams:
        stream.wait_for(lambda s: s.ended, end - t.monotonic())
    still_open = [s.host for s in streams if not s.ended]
    if still_open:
        return (
            f"the stream is still open after {t.stream_close_seconds:g} s on "
            + ", ".join(still_open),
            Status.CRITICAL,
        )
    timed_out = [s.host for s in streams if isinstance(s.error, TimeoutError)]
    if timed_out:
        return "the stream was never closed by the server on " + ", ".join(timed_out), (
            Status.CRITICAL
        )
    abrupt = [s.host for s in streams if not s.saw("closing")]
    if abrupt:
        return (
            "the server dropped the stream without a `closing` event on " + ", ".join(abrupt),
            Status.WARNING,
        )
    return (
        f"the server sent `closing` and closed the stream on {len(streams)} instance(s)",
        Status.OK,
    )
