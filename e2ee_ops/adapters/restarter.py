"""Restart a service the way the config says: systemctl, docker, kubernetes, or a
custom command.

Each command runs through `process.run_process`: no shell, its own process group, so a
timeout kills it and everything it started. A non-zero exit or a timeout is an error;
the caller then verifies the service came back (restarting is not recovering).

Kubernetes takes two commands: `kubectl rollout restart KIND/NAME`, then `kubectl
rollout status KIND/NAME --timeout=Ns`, whose N is what is left of the deadline, so
kubectl itself reports a rollout that did not finish.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from e2ee_ops.adapters.kubernetes import kubectl_prefix
from e2ee_ops.adapters.process import run_process
from e2ee_ops.errors import ActionFailed, ConfigError, TimedOutError, redact

OUTPUT_TAIL_CHARS = 400
KUBECTL_GRACE_SECONDS = 5.0


def _shown(argv: list[str]) -> str:
    return redact(" ".join(argv))


@dataclass(frozen=True)
class RestartSpec:
    """How to restart one service: `method` systemctl (a `unit`), docker (a `container`),
    kubernetes (a `kind` deployment/statefulset `name` in `namespace`, optional kubectl
    `context`) or command (an argv); `sudo` prefixes systemctl/docker with `sudo -n`."""

    method: str
    unit: str | None = None
    container: str | None = None
    command: list[str] | None = None
    sudo: bool = False
    timeout_seconds: float = 60.0
    kind: str = "deployment"
    name: str | None = None
    namespace: str = "default"
    context: str | None = None


@dataclass(frozen=True)
class RestartResult:
    service: str
    argv: list[str]
    returncode: int
    seconds: float
    output_tail: str  # the end of stdout+stderr, redacted, for the journal
    commands: tuple[str, ...] = ()  # every command run, as shown (kubernetes: two)


def restart_argv(spec: RestartSpec) -> list[str]:
    """The argv that restarts the service described by `spec`."""
    sudo = ["sudo", "-n"] if spec.sudo else []
    if spec.method == "systemctl":
        assert spec.unit is not None  # guaranteed by the config's validation
        return [*sudo, "systemctl", "restart", spec.unit]
    if spec.method == "docker":
        assert spec.container is not None
        return [*sudo, "docker", "restart", spec.container]
    if spec.method == "kubernetes":
        return [
            *kubectl_prefix(spec.namespace, spec.context),
            "rollout",
            "restart",
            _resource(spec),
        ]
    assert spec.command is not None
    return list(spec.command)


def _resource(spec: RestartSpec) -> str:
    assert spec.name is not None  # guaranteed by the config's validation
    return f"{spec.kind}/{spec.name}"


def rollout_status_argv(spec: RestartSpec, seconds: float) -> list[str]:
    """`kubectl rollout status` waiting at most `seconds` (whole seconds, at least 1)."""
    return [
        *kubectl_prefix(spec.namespace, spec.context),
        "rollout",
        "status",
        _resource(spec),
        f"--timeout={max(1, int(seconds))}s",
    ]


class Restarter:
    """Restarts one service (`service` names it in messages: "redis", "api")."""

    def __init__(
        self,
        service: str,
        spec: RestartSpec | None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        remaining: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.service = service
        self.spec = spec
        self._monotonic = monotonic
        self._remaining = remaining  # seconds left before --timeout, None without one

    def _limit(self, timeout: float | None) -> float:
        """The restart's own limit, cut to what is left of the run's deadline."""
        limit = timeout if timeout is not None else self._spec().timeout_seconds
        left = self._remaining()
        return limit if left is None else min(limit, left)

    def describe(self) -> str:
        """The command(s) as shown in a plan."""
        spec = self._spec()
        shown = " ".join(restart_argv(spec))
        if spec.method == "kubernetes":
            # The wait gets what is left of the deadline; shown here with all of it.
            return f"{shown}, then {' '.join(rollout_status_argv(spec, self._limit(None)))}"
        return shown

    def restart(self, *, timeout: float | None = None) -> RestartResult:
        """Run the restart command(s); raises ActionFailed or TimedOutError when they fail."""
        spec = self._spec()
        limit = self._limit(timeout)
        started = self._monotonic()
        argv = restart_argv(spec)
        first = self._run(argv, limit)
        if spec.method != "kubernetes":
            return RestartResult(
                self.service, argv, 0, self._monotonic() - started, first, (_shown(argv),)
            )
        left = limit - (self._monotonic() - started)
        if left < 1:
            raise TimedOutError(
                f"{self.service}: `{_shown(argv)}` left no time for `kubectl rollout status` "
                f"within {limit:g} s",
                hint=f"raise --timeout or services.{self.service}.restart.timeout_seconds",
            )
        status = rollout_status_argv(spec, left)
        # kubectl gives up at --timeout itself and says so; the process limit is a backstop.
        tail = self._run(status, left + KUBECTL_GRACE_SECONDS)
        return RestartResult(
            self.service,
            argv,
            0,
            self._monotonic() - started,
            tail,
            (_shown(argv), _shown(status)),
        )

    def _run(self, argv: list[str], limit: float) -> str:
        """Run one command; its redacted output tail, or ActionFailed / TimedOutError."""
        shown = _shown(argv)
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
        tail = redact(done.stdout.strip()[-OUTPUT_TAIL_CHARS:])
        if done.returncode != 0:
            last_line = tail.splitlines()[-1] if tail else "no output"
            raise ActionFailed(
                f"restarting {self.service} with `{shown}` failed "
                f"(exit {done.returncode}: {last_line})",
                hint="run the command by hand to see why",
            )
        return tail

    def _spec(self) -> RestartSpec:
        if self.spec is None:
            raise ConfigError(
                f"no restart method is configured for {self.service}",
                hint=f"set services.{self.service}.restart "
                "({method: systemctl, unit: NAME} or docker, kubernetes or command)",
            )
        return self.spec
