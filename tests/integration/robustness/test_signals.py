"""SIGTERM and SIGINT stop the run cleanly: the child's process group is killed, the
journal gets an "interrupted" outcome, one sentence, exit 143 / 130."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.integration.robustness.conftest import finish_cli, start_cli, write_config

# A "restart" that would bring Redis back long after e2ee-ops was stopped.
SLOW_RESTART = (
    "import os, pathlib, sys, time\n"
    "pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
    "time.sleep(30)\n"
    "pathlib.Path(sys.argv[2]).write_text('restarted')\n"
)


def _wait_for_file(path: Path, bound: float = 20.0) -> str:
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    pytest.fail(f"{path} never appeared")


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie waiting for init


@pytest.mark.parametrize(
    ("signum", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")]
)
def test_signal_kills_the_restart_and_journals_interrupted(
    tmp_path: Path, signum: int, code: int, name: str
) -> None:
    started, restarted = tmp_path / "started.pid", tmp_path / "restarted"
    config = write_config(
        tmp_path,
        services={
            "redis": {
                "restart": {
                    "method": "command",
                    "command": [sys.executable, "-c", SLOW_RESTART, str(started), str(restarted)],
                }
            }
        },
    )
    process = start_cli(
        "--config", str(config), "redis", "recover", "--execute", "--yes", home=tmp_path
    )
    child = int(_wait_for_file(started))
    os.kill(process.pid, signum)
    run = finish_cli(process)

    assert run.returncode == code, run.stderr
    assert f"interrupted by {name}" in run.stderr
    assert "Traceback" not in run.stderr
    said = [line for line in run.stderr.splitlines() if line.startswith("e2ee-ops:")]
    assert said == [
        f"e2ee-ops: interrupted by {name}: stopped what was running; "
        "the journal records what completed"
    ]
    end = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < end:
        time.sleep(0.05)
    assert _gone(child), "the restart command outlived e2ee-ops"
    entries = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in entries] == ["plan", "outcome"]
    assert entries[1]["data"]["status"] == "INTERRUPTED"
    assert entries[1]["data"]["error"] == f"interrupted by {name}"
    [completed] = entries[1]["data"]["completed"]  # the PING check, not the restart
    assert " PING(s) over 3 s failed (cannot connect to Redis at " in completed
    assert not restarted.exists()


def test_a_second_signal_still_leaves_the_outcome_journaled(tmp_path: Path) -> None:
    started, restarted = tmp_path / "started.pid", tmp_path / "restarted"
    config = write_config(
        tmp_path,
        services={"redis": {"restart": {"method": "command", "command": [
            sys.executable, "-c", SLOW_RESTART, str(started), str(restarted)]}}},
    )  # fmt: skip
    process = start_cli(
        "--config", str(config), "redis", "recover", "--execute", "--yes", home=tmp_path
    )
    _wait_for_file(started)
    os.kill(process.pid, signal.SIGINT)
    os.kill(process.pid, signal.SIGTERM)  # an impatient operator, then the supervisor
    run = finish_cli(process)

    assert run.returncode in (130, 143), run.stderr
    assert "Traceback" not in run.stderr
    entries = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in entries] == ["plan", "outcome"]
    assert entries[1]["data"]["status"] == "INTERRUPTED"
