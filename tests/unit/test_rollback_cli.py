"""`e2ee-ops rollback` usage: the options' rules, checked before anything is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import cli


def test_the_group_lists_its_commands(isolated_env: dict[str, str]) -> None:
    result = cli("rollback", "--help")
    assert result.exit_code == 0
    for command in ("flag", "migration", "git"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["flag"], "give exactly one of --disable or --enable"),
        (["flag", "--disable", "--enable"], "give exactly one of --disable or --enable"),
        (["migration", "--steps", "1", "--to", "base"], "not both"),
        (["migration", "--steps", "0"], "--steps"),
        (["migration", "--confirm-tables", "dm_messages"], "goes with --allow-data-loss"),
        (["git"], "--to"),
    ],
)
def test_usage_errors_exit_64(isolated_env: dict[str, str], args: list[str], said: str) -> None:
    result = cli("rollback", *args)
    assert result.exit_code == 64, result.stdout + result.stderr
    assert said in result.stderr and result.stdout == ""


def test_flag_without_an_env_file_says_where_to_give_one(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    result = cli("rollback", "flag", "--disable")
    assert result.exit_code == 3
    assert "no env file to edit" in result.stderr and "rollback.env_file" in result.stderr


def test_migration_without_a_database_is_a_config_error(isolated_env: dict[str, str]) -> None:
    result = cli("rollback", "migration")
    assert result.exit_code == 3 and "postgres.url" in result.stderr
