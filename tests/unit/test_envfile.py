"""The env-file rewrite behind `rollback flag`: one line changed, everything else kept."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from e2ee_ops.adapters.envfile import apply_env_edit, plan_env_edit
from e2ee_ops.errors import ActionFailed, ConfigError

KEY = "E2EE_DM_ENABLED"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def set_flag(path: Path, value: str = "false") -> Path | None:
    return apply_env_edit(plan_env_edit(path, KEY, value), now=NOW)


def env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text, newline="")
    return path


def test_rewrites_the_one_line_and_keeps_comments_and_order(tmp_path: Path) -> None:
    text = (
        "# the service's settings\n"
        "E2EE_DATABASE_URL=postgresql://db/app\n"
        "\n"
        "# E2EE_DM_ENABLED=maybe  (a comment, not a setting)\n"
        "E2EE_DM_ENABLED=true\n"
        "E2EE_DM_ENABLED_LEGACY=true\n"
        "E2EE_HEARTBEAT_SECONDS=15\n"
    )
    path = env(tmp_path, text)
    edit = plan_env_edit(path, KEY, "false")
    assert edit.current == "true" and edit.lines == (5,) and edit.changes
    assert "rewriting line 5" in edit.describe()
    set_flag(path)
    assert path.read_text() == text.replace("E2EE_DM_ENABLED=true\n", "E2EE_DM_ENABLED=false\n")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("export E2EE_DM_ENABLED=true\n", "export E2EE_DM_ENABLED=false\n"),
        ('E2EE_DM_ENABLED="true"\n', 'E2EE_DM_ENABLED="false"\n'),
        ("E2EE_DM_ENABLED='true'\n", "E2EE_DM_ENABLED='false'\n"),
        ("E2EE_DM_ENABLED = true\n", "E2EE_DM_ENABLED = false\n"),
        ("  E2EE_DM_ENABLED=true   # the flag\n", "  E2EE_DM_ENABLED=false   # the flag\n"),
        ('E2EE_DM_ENABLED="true" # quoted\n', 'E2EE_DM_ENABLED="false" # quoted\n'),
        ("E2EE_DM_ENABLED=\n", "E2EE_DM_ENABLED=false\n"),
        ("E2EE_DM_ENABLED=true", "E2EE_DM_ENABLED=false"),  # no final newline
        ("A=1\r\nE2EE_DM_ENABLED=true\r\n", "A=1\r\nE2EE_DM_ENABLED=false\r\n"),
    ],
)
def test_keeps_the_lines_own_spelling(tmp_path: Path, line: str, expected: str) -> None:
    path = env(tmp_path, line)
    set_flag(path)
    assert path.read_bytes().decode() == expected


def test_a_missing_line_is_appended_once(tmp_path: Path) -> None:
    path = env(tmp_path, "A=1")  # and no final newline
    edit = plan_env_edit(path, KEY, "false")
    assert edit.current is None and edit.lines == () and "append" in edit.describe()
    set_flag(path)
    assert path.read_text() == "A=1\nE2EE_DM_ENABLED=false\n"
    assert set_flag(path) is None  # the second time there is nothing to do
    assert path.read_text() == "A=1\nE2EE_DM_ENABLED=false\n"


def test_an_empty_file_gets_the_line(tmp_path: Path) -> None:
    path = env(tmp_path, "")
    set_flag(path, "true")
    assert path.read_text() == "E2EE_DM_ENABLED=true\n"


def test_duplicates_collapse_into_the_first_line(tmp_path: Path) -> None:
    # What `echo "E2EE_DM_ENABLED=false" >> .env` leaves behind, run twice.
    path = env(tmp_path, "E2EE_DM_ENABLED=true\nB=2\nE2EE_DM_ENABLED=false\nE2EE_DM_ENABLED=0\n")
    edit = plan_env_edit(path, KEY, "false")
    assert edit.current == "0"  # the last assignment is the one readers take
    assert edit.lines == (1, 3, 4) and "duplicate line(s) 3, 4" in edit.describe()
    set_flag(path)
    assert path.read_text() == "E2EE_DM_ENABLED=false\nB=2\n"


def test_backup_mode_and_no_leftovers(tmp_path: Path) -> None:
    path = env(tmp_path, "E2EE_DM_ENABLED=true\n")
    path.chmod(0o640)
    backup = set_flag(path)
    assert backup is not None and backup.parent == tmp_path
    assert backup.name == ".env.20261128T120000000000Z.bak"
    assert backup.read_text() == "E2EE_DM_ENABLED=true\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", backup.name]


def test_unchanged_file_is_not_written(tmp_path: Path) -> None:
    path = env(tmp_path, "E2EE_DM_ENABLED=false\n")
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    edit = plan_env_edit(path, KEY, "false")
    assert not edit.changes and "already false" in edit.describe()
    assert apply_env_edit(edit, now=NOW) is None
    assert path.stat().st_mtime_ns == before - 10**9
    assert list(tmp_path.iterdir()) == [path]


def test_a_symlinked_env_file_stays_a_link(tmp_path: Path) -> None:
    real = env(tmp_path, "E2EE_DM_ENABLED=true\n")
    link = tmp_path / "current.env"
    link.symlink_to(real)
    backup = set_flag(link)
    assert link.is_symlink() and real.read_text() == "E2EE_DM_ENABLED=false\n"
    assert backup is not None and backup.parent == tmp_path


def test_a_missing_file_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"the env file .*nowhere\.env does not exist"):
        plan_env_edit(tmp_path / "nowhere.env", KEY, "false")


def test_a_file_changed_since_the_plan_is_not_overwritten(tmp_path: Path) -> None:
    path = env(tmp_path, "E2EE_DM_ENABLED=true\n")
    edit = plan_env_edit(path, KEY, "false")
    path.write_text("E2EE_DM_ENABLED=true\nEDITED=by hand\n")
    with pytest.raises(ActionFailed, match="changed while"):
        apply_env_edit(edit, now=NOW)
    assert path.read_text() == "E2EE_DM_ENABLED=true\nEDITED=by hand\n"
    assert list(tmp_path.iterdir()) == [path]
