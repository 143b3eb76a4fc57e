"""Start-up stays at typer + rich: `--help` paths import no pydantic (typer's adapters),
no rich console, no HTTP, database or Redis client and only the command group used; a
command that runs with options and a config file and prints JSON imports neither
pydantic nor rich. The time itself is measured by `bench/startup.py`, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "httpx", "psycopg", "redis", "yaml", "rich.console", "nagiosplugin")

# The console script ends the process without the interpreter's teardown, after the
# atexit handlers: the probe reports from one.
PROBE = """
import atexit, json, sys
sys.argv = ["e2ee-ops", *json.loads(sys.argv[1])]
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
from e2ee_ops.cli.main import run
run()
"""


def _run(*args: str) -> tuple[int, str, set[str]]:
    """Exit code, stdout and the modules loaded of `e2ee-ops ARGS` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules = json.loads(done.stderr.strip().splitlines()[-1])
    return done.returncode, done.stdout, set(modules)


def _modules_after(*args: str) -> set[str]:
    return _run(*args)[2]


@pytest.mark.parametrize("args", [["--help"], ["redis", "check", "--help"]])
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    loaded = _modules_after(*args)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == []


def test_a_subcommand_builds_only_its_own_group() -> None:
    loaded = _modules_after("redis", "check", "--help")
    groups = {m for m in loaded if m.startswith("e2ee_ops.cli.")}
    assert "e2ee_ops.cli.redis" in groups
    assert not groups & {"e2ee_ops.cli.abuse", "e2ee_ops.cli.rollback", "e2ee_ops.cli.sandbox"}


def test_a_json_run_with_options_and_a_config_file_imports_no_pydantic_nor_rich(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    config = tmp_path / "e2ee-ops.yaml"
    config.write_text("thresholds: {otpk_critical: 4}\n", encoding="utf-8")
    code, stdout, loaded = _run(
        "--config", str(config), "-o", "json", "--timeout", "30", "config", "show"
    )
    shown = {item["key"]: item for item in json.loads(stdout)["items"]}
    assert code == 0 and shown["thresholds.otpk_critical"]["value"] == "4"
    assert sorted(m for m in loaded if m.split(".")[0] in ("pydantic", "rich")) == []
