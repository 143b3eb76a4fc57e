"""Unit-test fixtures: an environment with no user config, state or E2EE_OPS_* leaking in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """HOME, XDG dirs and cwd under tmp_path; every E2EE_OPS_* variable removed."""
    for name in list(os.environ):
        if name.startswith("E2EE_OPS_") or name == "NO_COLOR":
            monkeypatch.delenv(name)
    env = {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
        "XDG_STATE_HOME": str(tmp_path / "home" / ".local" / "state"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return env
