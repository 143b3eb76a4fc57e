"""Fixtures of the robustness suite: hostile servers, configs pointing at them, and the
CLI run as a real process (signals, races and hard deadlines need one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.robustness.fakes import Behaviour, FakeServer, hang
from tests.support import config as support_config

TOKEN_ENV = {"ROBUST_ADMIN": "admin-token-0123456789", "ROBUST_CANARY": "canary-token-0123456789"}
# Nothing listens here: a Redis the toolkit cannot reach.
DEAD_REDIS = "redis://127.0.0.1:9/0"


@pytest.fixture
def fake_server() -> Iterator[Any]:
    """Factory: `fake_server({"/dm/metrics": behaviour, ...})` → a running FakeServer."""
    servers: list[FakeServer] = []

    def make(routes: Mapping[str, Behaviour], default: Behaviour = hang) -> FakeServer:
        server = FakeServer(routes, default)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def write_config(directory: Path, **sections: Any) -> Path:
    """A config file: an API, admin and canary tokens, an unreachable Redis, a journal;
    `sections` override those key by key."""
    config: dict[str, Any] = {
        "api": {"base_urls": ["http://127.0.0.1:9"], "timeout_seconds": 1, "retries": 0},
        "tokens": {
            "admin": {"env": "ROBUST_ADMIN"},
            "canary_a": {"env": "ROBUST_CANARY"},
            "canary_b": {"env": "ROBUST_CANARY"},
        },
        "canary": {"device_a": "dev-a", "account_b": "2", "device_b": "dev-b"},
        "redis": {"url": DEAD_REDIS, "timeout_seconds": 0.5},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return support_config.write_config(directory, **config)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def cli_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2EE_OPS_")}
    env.update(TOKEN_ENV)
    env.update({"HOME": str(home), "NO_COLOR": "1", "E2EE_OPS_ACTOR": "robustness"})
    env.update(extra or {})
    return env


def start_cli(
    *args: str, home: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """`e2ee-ops ARGS` as its own process (in its own session, so it can be signalled)."""
    return subprocess.Popen(
        [sys.executable, "-m", "e2ee_ops", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(home, env),
        cwd=home,
        start_new_session=True,
    )


def finish_cli(process: subprocess.Popen[str], limit: float = 30) -> Run:
    """Wait for the process (a test bound, not an assertion on time); kill it if stuck."""
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"e2ee-ops did not exit within {limit} s\nstderr: {err}")
    return Run(process.returncode, out, err)


def run_cli(*args: str, home: Path, env: Mapping[str, str] | None = None, limit: float = 30) -> Run:
    return finish_cli(start_cli(*args, home=home, env=env), limit)
