"""Extreme arguments and hostile local files: a sentence and the right exit code,
never an internal error, and nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2ee_ops import sandbox
from tests.integration.robustness.conftest import run_cli, write_config
from tests.support.cli import cli
from tests.unit.conftest import isolated_env

__all__ = ["isolated_env"]  # the fixture, used by name below

HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "inf", "alerts", "check"],
        ["--timeout", "nan", "alerts", "check"],
        ["--timeout", "1e300", "redis", "check"],
        ["abuse", "top-senders", "--window", "99999999999d"],
        ["abuse", "top-senders", "--limit", HUGE],
        ["abuse", "block", HUGE, "--reason", "spam"],
        ["devices", "stuck", "--user", HUGE],
        ["devices", "stuck", "--limit", HUGE],
        ["devices", "stuck", "--inactive-days", "1e308"],
        ["devices", "stuck", "--watch", "--interval", "inf"],
        ["redis", "watch", "--interval", "inf"],
        ["redis", "watch", "--count", HUGE],
        ["rollback", "migration", "--steps", HUGE],
        ["sandbox", "restart", "api", "--instance", HUGE],
        ["sandbox", "up", "--api-instances", HUGE],
    ],
    ids=lambda a: " ".join(a),
)
def test_out_of_range_numbers_are_usage_errors(
    isolated_env: dict[str, str], args: list[str]
) -> None:
    result = cli(*args)
    assert result.exit_code == 64, result.stderr
    assert "internal error" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "Invalid value" in result.stderr or "--window" in result.stderr


def test_config_that_is_not_utf8_is_a_config_error(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("api:\n  base_urls: ['http://caf\xe9:8000']\n".encode("latin-1"))
    result = cli("--config", str(config), "config", "show")
    assert result.exit_code == 3
    assert "is not UTF-8 text" in result.stderr
    assert "internal error" not in result.stderr


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    # A "billion laughs": 9 levels of 9 aliases, 3^18 leaves once expanded.
    lines = ['a0: &a0 ["lol", "lol", "lol"]']
    for level in range(1, 10):
        prev = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([prev] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1024
    result = run_cli("--config", str(bomb), "config", "show", home=tmp_path, limit=20)
    assert result.returncode == 3, result.stderr
    assert "expands to more than" in result.stderr


@pytest.mark.parametrize("where", ["directory", "missing-directory"])
def test_unusable_journal_is_a_config_error_and_nothing_is_done(
    isolated_env: dict[str, str], tmp_path: Path, where: str
) -> None:
    if where == "directory":
        journal = tmp_path / "journal-dir"
        journal.mkdir()
    else:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where a directory should be\n")
        journal = blocker / "sub" / "journal.jsonl"
    config = write_config(tmp_path, journal={"path": str(journal)})
    result = cli("--config", str(config), "incident", "open", "-s", "P2", "-t", "slow")
    assert result.exit_code == 3, result.stdout + result.stderr
    assert f"cannot use the journal {journal}" in result.stderr
    assert "internal error" not in result.stderr
    if where == "directory":
        assert list(journal.iterdir()) == []


def test_corrupt_sandbox_state_is_one_sentence_and_left_alone(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "sbx" / "state.json"
    state.parent.mkdir()
    state.write_text('{"state_dir": "x", "accounts": [1, 2')
    for command in ("status", "up", "down"):
        result = cli("sandbox", command, "--state-dir", str(state.parent))
        assert result.exit_code == 3, result.stdout + result.stderr
        assert f"the sandbox state {state} is unreadable" in result.stderr
    assert state.read_text() == '{"state_dir": "x", "accounts": [1, 2'
    assert sorted(p.name for p in state.parent.iterdir()) == ["state.json"]


def test_a_second_run_on_the_same_dir_replaces_what_the_first_left(server_dir: Path) -> None:
    # `demo --state-dir DIR` run twice: the first left its sandbox running (--keep) or
    # stopped; "canary-a" and the demo's users exist either way.
    directory = server_dir / "sbx"
    first = run_cli("sandbox", "up", "--api-instances", "1", "--state-dir", "sbx",
                    home=server_dir, limit=60)  # fmt: skip
    assert first.returncode == 0, first.stderr
    try:
        kept = sandbox.up(directory, fresh=True)  # running, left by another process
        assert kept.accounts["canary_a"].username == "canary-a"
        assert all(s.running for s in sandbox.status(directory))
        sandbox.down(directory)
        again = sandbox.up(directory)  # stopped, in the process that stopped it
        assert again.accounts["canary_a"].username == "canary-a"
        assert all(s.running for s in sandbox.status(directory))
    finally:
        sandbox.down(directory)
