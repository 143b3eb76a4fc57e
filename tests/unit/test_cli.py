from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from e2ee_ops.config import LoadedConfig
from e2ee_ops.context import AppContext
from e2ee_ops.errors import UsageError, VerificationFailed
from tests.support.cli import cli

GROUPS = [
    "redis",
    "rollback",
    "devices",
    "abuse",
    "alerts",
    "incident",
    "postmortem",
    "runbook",
    "sandbox",
    "config",
]


class FailingContext(AppContext):
    """Whatever a command asks of the config, `action` happens instead."""

    action: Any = None

    @property
    def config(self) -> LoadedConfig:
        self.action()
        raise AssertionError("action should have raised")


def failing(action: Any) -> FailingContext:
    ctx = FailingContext.create()
    ctx.action = action
    return ctx


def raiser(exc: BaseException) -> Any:
    def action() -> None:
        raise exc

    return action


def test_help_lists_every_group(isolated_env: dict[str, str]) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for name in [*GROUPS, "doctor", "demo"]:
        assert name in result.stdout
    assert "--output" in result.stdout and "--install-completion" in result.stdout


def test_version(isolated_env: dict[str, str]) -> None:
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("e2ee-ops 0.")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["no-such-command"],
        ["--output", "xml", "config", "show"],
        ["--timeout", "soon", "config", "show"],
        ["config", "show", "--bogus"],
    ],
)
def test_usage_errors_exit_64_not_2(args: list[str], isolated_env: dict[str, str]) -> None:
    result = cli(*args)
    assert result.exit_code == 64
    assert result.stdout == ""


def test_config_show_json_with_provenance(isolated_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("tokens: {admin: {env: ADMIN_T}}\napi: {retries: 5}\n")
    env = {"ADMIN_T": "very-secret-token-1", "E2EE_OPS_API__TIMEOUT_SECONDS": "4"}
    result = cli("--config", str(config), "config", "show", "--output", "json", env=env)
    assert result.exit_code == 0, result.stderr
    data = result.json
    assert data["kind"] == "list" and data["status"] == "OK"
    items = {item["key"]: item for item in data["items"]}
    assert items["api.retries"] == {"key": "api.retries", "value": "5", "source": f"file {config}"}
    assert items["api.timeout_seconds"]["source"] == "env E2EE_OPS_API__TIMEOUT_SECONDS"
    assert items["tokens.admin"]["value"] == "env:ADMIN_T"
    assert "very-secret-token-1" not in result.stdout


def test_output_format_from_environment(isolated_env: dict[str, str]) -> None:
    result = cli("config", "show", env={"E2EE_OPS_OUTPUT": "json"})
    assert result.exit_code == 0 and result.json["kind"] == "list"


def test_config_show_table_goes_to_stdout(isolated_env: dict[str, str]) -> None:
    result = cli("config", "show")
    assert result.exit_code == 0
    assert "thresholds.otpk_critical" in result.stdout and result.stderr == ""


def test_invalid_config_is_one_sentence_and_unknown(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("thresholds: {otpk_critical: lots}\n")
    result = cli("--config", str(config), "config", "show")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1
    assert "thresholds.otpk_critical: Input should be a valid integer" in result.stderr
    assert "Traceback" not in result.stderr

    debug = cli("--debug", "--config", str(config), "config", "show")
    assert debug.exit_code == 3 and "Traceback" in debug.stderr


def test_config_validate_warns_on_missing_secrets(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("tokens: {admin: {env: NOT_SET_ANYWHERE}}\n")
    result = cli("-o", "nagios", "--config", str(config), "config", "validate")
    assert result.exit_code == 1
    assert result.stdout.startswith("E2EE-OPS CONFIG_VALIDATE WARNING - tokens.admin:")


@pytest.mark.parametrize(
    ("exc", "code", "said"),
    [
        (VerificationFailed("endpoint still answers 200"), 2, "error: endpoint still answers"),
        (UsageError("--execute needs --yes under cron"), 64, "error: --execute needs"),
        (KeyboardInterrupt(), 130, "interrupted by SIGINT"),
        (RuntimeError("bug with Bearer Abc123456789"), 3, "internal error: RuntimeError"),
    ],
)
def test_top_level_handler_maps_each_outcome(
    exc: BaseException, code: int, said: str, isolated_env: dict[str, str]
) -> None:
    result = cli("config", "show", obj=failing(raiser(exc)))
    assert result.exit_code == code
    assert said in result.stderr
    assert "Abc123456789" not in result.stderr
    assert result.exception is None


def test_sigterm_unwinds_like_ctrl_c_with_exit_143(isolated_env: dict[str, str]) -> None:
    def terminate() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises before this ends

    result = cli("config", "show", obj=failing(terminate))
    assert result.exit_code == 143
    assert "interrupted by SIGTERM" in result.stderr
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored afterwards


def test_without_timeout_a_read_only_command_still_ends(isolated_env: dict[str, str]) -> None:
    slow = failing(lambda: time.sleep(30))
    slow.default_bound = 0.2
    result = cli("config", "show", obj=slow)
    assert result.exit_code == 3
    assert "gave up after 0.2 s (the default bound of a read-only command" in result.stderr


def test_timeout_kills_a_slow_command_with_unknown(isolated_env: dict[str, str]) -> None:
    started = time.monotonic()
    result = cli("--timeout", "0.2", "config", "show", obj=failing(lambda: time.sleep(30)))
    assert result.exit_code == 3
    assert "gave up after 0.2 s (--timeout)" in result.stderr
    assert time.monotonic() - started < 10


def test_help_imports_no_heavy_library(tmp_path: Path) -> None:
    heavy = ["httpx", "httpx_sse", "psycopg", "redis", "alembic", "fastapi", "pydantic", "yaml"]
    code = (
        "import atexit, sys\n"
        "sys.argv = ['e2ee-ops', '--help']\n"
        "atexit.register(lambda: print(sorted(m for m in "
        f"{heavy!r} if m in sys.modules), file=sys.stderr))\n"
        "from e2ee_ops.cli.main import run\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert "Usage: e2ee-ops" in done.stdout


def test_console_script_exit_codes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from e2ee_ops.cli.main import run; run()", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 64


def test_canary_tokens_without_its_accounts_are_a_config_error(
    isolated_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is discovered from the canary tokens (config.example.yaml says so)."""
    monkeypatch.setenv("CANARY_A_FOR_TESTS", "canary-a-token")
    monkeypatch.setenv("CANARY_B_FOR_TESTS", "canary-b-token")
    monkeypatch.setenv("ADMIN_FOR_TESTS", "admin-token")
    config = tmp_path / "c.yaml"
    config.write_text(
        "api: {base_urls: ['http://127.0.0.1:9']}\nredis: {url: 'redis://127.0.0.1:9/0'}\n"
        "tokens: {admin: {env: ADMIN_FOR_TESTS}, canary_a: {env: CANARY_A_FOR_TESTS},"
        " canary_b: {env: CANARY_B_FOR_TESTS}}\n"
    )
    result = cli("--config", str(config), "redis", "check")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1
    assert (
        "the canary is half configured: canary.device_a, canary.account_b, canary.device_b missing"
        in result.stderr
    )
    assert "canary-a-token" not in result.stdout + result.stderr
    example = (Path(__file__).parents[2] / "config.example.yaml").read_text()
    assert "discovered" not in example
