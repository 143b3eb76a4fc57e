"""Hints that fit what the operator did."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.integration.robustness.conftest import cli_env, write_config


def test_confirmation_at_a_terminal_does_not_ask_for_execute_again(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, services={"redis": {"restart": {"method": "command", "command": ["true"]}}}
    )
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "e2ee_ops", "--config", str(config),
             "redis", "recover", "--execute"],
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cli_env(tmp_path), cwd=tmp_path, start_new_session=True,
        )  # fmt: skip
        os.write(master, b"n\n")
        out, err = process.communicate(timeout=30)
    finally:
        os.close(slave)
        os.close(master)
    assert process.returncode == 64, err
    assert "Go ahead?" in err
    assert "nothing changed yet" in err
    assert "run with --execute" not in err + out
    assert "not confirmed; nothing was changed" in err
    assert not (tmp_path / "journal.jsonl").exists()
