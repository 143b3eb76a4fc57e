"""Restart a service the way the config says: systemctl, docker, or a custom command.

The command runs through `process.run_process`: no shell, its own process group, so a
timeout kills it and everything it started. A non-zero exit or a timeout is an error;
the caller then verifies the service came back (restarting is not recovering).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from e2ee_ops.adapters.process import run_process
from e2ee_ops.errors import ActionFailed, ConfigError, TimedOutError, redact

OUTPUT_TAIL_CHARS = 400


@dataclass(frozen=True)
class RestartSpec:
    """How to restart one service: `method` systemctl (a `unit`), docker (a `container`)
    or command (an argv); `sudo` prefixes systemctl/docker with `sudo -n`."""

    method: str
    unit: str | None = None
    container: str | None = None
    command: list[str] | None = None
    sudo: bool = False
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class RestartResult:
    service: str
    argv: list[str]
    returncode: int
    seconds: float
    output_tail: str  # the end of stdout+stderr, redacted, for the journal


def restart_argv(spec: RestartSpec) -> list[str]:
    """The argv that restarts the service described by `spec`."""
    sudo = ["sudo", "-n"] if spec.sudo else []
    if spec.method == "systemctl":
        assert spec.unit is not None  # guaranteed by the config's validation
        return [*sudo, "systemctl", "restart", spec.unit]
    if spec.method == "docker":
        assert spec.container is not None
        return [*sudo, "docker", "restart", spec.container]
    assert spec.command is not None
    return list(spec.command)


class Restarter:
    """Restarts one service (`service` names it in messages: "redis", "api")."""

    def __init__(
        self,
        service: str,
        spec: RestartSpec | None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.spec = spec
        self._monotonic = monotonic

    def describe(self) -> str:
        """The command as shown in a plan."""
        return " ".join(restart_argv(self._spec()))

    def restart(self, *, timeout: float | None = None) -> RestartResult:
        """Run the restart command; raises ActionFailed or TimedOutError when it fails."""
        spec = self._spec()
        argv = restart_argv(spec)
        limit = timeout if timeout is not None else spec.timeout_seconds
        shown = redact(" ".join(argv))
        started = self._monotonic()
        try:
            done = run_process(argv, timeout=limit, merge_stderr=True)
        except FileNotFoundError as exc:
            raise ActionFailed(
                f"cannot restart {self.service}: {argv[0]} is not installed or not on PATH",
                hint=f"fix services.{self.service}.restart in the config",
            ) from exc
        except PermissionError as exc:
            raise ActionFailed(
                f"cannot restart {self.service}: {argv[0]} is not executable"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise TimedOutError(
                f"restarting {self.service} with `{shown}` did not finish within {limit:g} s",
                hint=f"check the host, or raise services.{self.service}.restart.timeout_seconds",
            ) from exc
        seconds = self._monotonic() - started
        tail = redact(done.stdout.strip()[-OUTPUT_TAIL_CHARS:])
        if done.returncode != 0:
            last_line = tail.splitlines()[-1] if tail else "no output"
            raise ActionFailed(
                f"restarting {self.service} with `{shown}` failed "
                f"(exit {done.returncode}: {last_line})",
                hint="run the command by hand to see why",
            )
        return RestartResult(self.service, argv, done.returncode, seconds, tail)

    def _spec(self) -> RestartSpec:
        if self.spec is None:
            raise ConfigError(
                f"no restart method is configured for {self.service}",
                hint=f"set services.{self.service}.restart "
                "({method: systemctl, unit: NAME} or docker or command)",
            )
        return self.spec
