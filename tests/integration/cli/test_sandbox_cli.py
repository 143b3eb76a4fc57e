"""`e2ee-ops sandbox up/status/down`: a separate sandbox, started and torn down for real."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from e2ee_ops.sandbox import pid_alive
from tests.support.cli import cli


def test_sandbox_lifecycle_leaves_no_process_behind(server_dir: Path) -> None:
    state_dir = server_dir / "sbx"
    up = cli("--output", "json", "sandbox", "up", "--state-dir", str(state_dir))
    try:
        assert up.exit_code == 0, up.stdout + up.stderr
        services = {item["service"]: item for item in up.json["items"]}
        # The demo's default: a fleet of two API instances on one PostgreSQL and Redis.
        assert set(services) == {"postgres", "redis", "api 1", "api 2"}
        assert all(s["state"] == "running" for s in services.values())
        pids = [int(s["pid"]) for s in services.values()]

        for token_file in (state_dir / "secrets").iterdir():
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        config = state_dir / "config.yaml"
        text = config.read_text()
        for token_file in (state_dir / "secrets").iterdir():
            assert token_file.read_text().strip() not in text  # referenced, never inlined
        validate = cli("--config", str(config), "config", "validate")
        assert validate.exit_code == 0, validate.stdout + validate.stderr

        doctor = cli("--config", str(config), "--output", "json", "doctor")
        assert doctor.exit_code == 0, doctor.stdout

        status = cli("--output", "json", "sandbox", "status", "--state-dir", str(state_dir))
        assert status.exit_code == 0
    finally:
        down = cli("--output", "json", "sandbox", "down", "--state-dir", str(state_dir))
    assert down.exit_code == 0, down.stdout + down.stderr
    assert all(item["state"] == "stopped" for item in down.json["items"])
    assert not any(pid_alive(pid) for pid in pids)


def test_sandbox_status_without_a_sandbox_is_one_clear_error(tmp_path: Path) -> None:
    result = cli("sandbox", "status", "--state-dir", str(tmp_path / "nothing-here"))
    assert result.exit_code == 2
    assert "no sandbox in" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert not os.listdir(tmp_path)
