"""One actor at a time: two acting runs at once never both act."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.integration.robustness.conftest import finish_cli, start_cli, write_config
from tests.integration.robustness.fakes import drip_sse, json_body
from tests.integration.robustness.test_deadlines import HEALTHY_METRICS

# A "restart" that counts itself, then runs until the test releases it (at most 20 s):
# the run that started it holds the lock meanwhile.
GATED_RESTART = (
    "import os, sys, time\n"
    "open(sys.argv[1], 'a').write('restart\\n')\n"
    "end = time.monotonic() + 20\n"
    "while not os.path.exists(sys.argv[2]) and time.monotonic() < end:\n"
    "    time.sleep(0.05)\n"
)


def _restart_command(tmp_path: Path) -> dict[str, object]:
    command = [sys.executable, "-c", GATED_RESTART, str(tmp_path / "restarts"),
               str(tmp_path / "release")]  # fmt: skip
    return {"redis": {"restart": {"method": "command", "command": command}}}


def _wait_for_restart(tmp_path: Path) -> None:
    end = time.monotonic() + 20
    while not (tmp_path / "restarts").exists() and time.monotonic() < end:
        time.sleep(0.05)


@pytest.mark.parametrize("lock", ["file", "postgres"])
def test_two_recovers_at_once_restart_once(
    tmp_path: Path, lock: str, request: pytest.FixtureRequest
) -> None:
    sections: dict[str, object] = {
        "services": _restart_command(tmp_path),
        "thresholds": {"recover_deadline_seconds": 0.5},
        "locks": {"wait_seconds": 1},
    }
    if lock == "postgres":
        sections["postgres"] = {"url": request.getfixturevalue("database_url")}
    config = write_config(tmp_path, **sections)
    args = ("--config", str(config), "redis", "recover", "--execute", "--yes")
    first = start_cli(*args, home=tmp_path)
    _wait_for_restart(tmp_path)  # the first run holds the lock and is restarting
    refused = finish_cli(start_cli(*args, home=tmp_path))
    (tmp_path / "release").touch()
    acted = finish_cli(first)

    assert (tmp_path / "restarts").read_text() == "restart\n"  # one run restarted Redis
    assert acted.returncode == 2  # this Redis never comes back: verification fails
    assert refused.returncode == 3, refused.stderr
    said = [line for line in refused.stderr.splitlines() if line.startswith("e2ee-ops:")]
    assert len(said) == 1
    assert "is held by e2ee-ops redis recover by robustness pid" in said[0]
    assert "nothing was changed" in said[0]
    entries = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in entries] == ["plan", "outcome"]  # the refused run wrote nothing


def test_incident_open_at_the_same_instant_opens_one(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    processes = [
        start_cli("--config", str(config), "incident", "open", "-s", "P2", "-t", f"race {i}",
                  home=tmp_path)
        for i in range(4)
    ]  # fmt: skip
    runs = [finish_cli(p) for p in processes]
    assert sorted(r.returncode for r in runs) == [0, 64, 64, 64], [r.stderr for r in runs]
    assert all("is still open" in r.stderr for r in runs if r.returncode == 64)
    entries = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in entries].count("incident_open") == 1


def test_a_run_that_waited_rechecks_and_does_not_restart_again(
    fake_server, tmp_path: Path, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    api = fake_server({"/dm/metrics": json_body(HEALTHY_METRICS), "/dm/devices/": drip_sse})
    config = write_config(
        tmp_path,
        api={"base_urls": [api.url]},
        redis={"url": redis_url},
        canary={"delivery_timeout_seconds": 0.5},  # this API has no canary: it fails fast
        services=_restart_command(tmp_path),
        locks={"wait_seconds": 30},
    )
    args = ("--config", str(config), "-o", "json", "redis", "recover", "--execute", "--yes")
    forced = start_cli(*args, "--force", home=tmp_path)  # restarts a Redis that is up
    _wait_for_restart(tmp_path)
    waited = start_cli(*args, home=tmp_path)  # arrives while the restart runs
    time.sleep(1)  # (scenario, not an assertion) let it reach the lock and wait
    (tmp_path / "release").touch()
    first, second = finish_cli(forced), finish_cli(waited)

    assert (tmp_path / "restarts").read_text() == "restart\n"
    assert json.loads(first.stdout)["steps"][1]["outcome"].startswith("restarted Redis")
    steps = json.loads(second.stdout)["steps"]
    assert steps[0]["outcome"].startswith("Redis answers PING")  # checked after the wait
    assert steps[1]["outcome"].startswith("skipped: Redis answers PING")
    journal = (tmp_path / "journal.jsonl").read_text().splitlines()
    kinds = [json.loads(line)["kind"] for line in journal]
    assert kinds == ["plan", "outcome", "plan", "outcome"]  # one after the other
