"""`--redis` of `sandbox up` and `demo` takes single or sentinel, else a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import cli


@pytest.mark.parametrize("command", [["sandbox", "up"], ["demo"]])
def test_an_unknown_redis_mode_is_a_usage_error_and_starts_nothing(
    command: list[str], tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    state_dir = tmp_path / "sandbox"
    result = cli(*command, "--redis", "cluster", "--state-dir", str(state_dir))
    assert result.exit_code == 64
    assert "single, sentinel" in result.stderr
    assert not state_dir.exists()
