from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from e2ee_ops.adapters.restarter import Restarter, RestartSpec, restart_argv
from e2ee_ops.errors import ActionFailed, ConfigError, TimedOutError


def spec(method: str, **values: Any) -> RestartSpec:
    return RestartSpec(method, **values)


def test_argv_per_method() -> None:
    assert restart_argv(spec(method="systemctl", unit="redis")) == [
        "systemctl",
        "restart",
        "redis",
    ]
    assert restart_argv(spec(method="systemctl", unit="redis", sudo=True))[:3] == [
        "sudo",
        "-n",
        "systemctl",
    ]
    assert restart_argv(spec(method="docker", container="redis")) == ["docker", "restart", "redis"]
    assert restart_argv(spec(method="command", command=["x", "y z"])) == ["x", "y z"]


def test_successful_command() -> None:
    result = Restarter("redis", spec(method="command", command=["true"])).restart()
    assert result.returncode == 0 and result.argv == ["true"]


def test_failing_command_is_action_failed_with_its_output() -> None:
    command = [sys.executable, "-c", "import sys; print('unit redis not found'); sys.exit(5)"]
    with pytest.raises(ActionFailed, match=r"failed \(exit 5: unit redis not found\)"):
        Restarter("redis", spec(method="command", command=command)).restart()
    with pytest.raises(ActionFailed, match="failed"):
        Restarter("redis", spec(method="command", command=["false"])).restart()


def test_slow_command_is_killed_at_the_timeout() -> None:
    # The shell's child `sleep` must die too: the whole process group is killed.
    command = ["sh", "-c", "sleep 30 & sleep 30"]
    started = time.monotonic()
    with pytest.raises(TimedOutError, match=r"did not finish within 0.3 s"):
        Restarter("api", spec(method="command", command=command)).restart(timeout=0.3)
    assert time.monotonic() - started < 10


def test_missing_program_and_missing_config() -> None:
    with pytest.raises(ActionFailed, match="not installed or not on PATH"):
        Restarter("redis", spec(method="command", command=["no-such-program-xyz"])).restart()
    with pytest.raises(ConfigError, match="no restart method is configured for redis"):
        Restarter("redis", None).restart()
