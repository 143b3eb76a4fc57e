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

# A "restart" slow enough for a second run to arrive while it runs; it counts itself.
COUNTED_RESTART = "import sys, time\nopen(sys.argv[1], 'a').write('restart\\n')\ntime.sleep(2)\n"


@pytest.mark.parametrize("lock", ["file", "postgres"])
def test_two_recovers_at_once_restart_once(
    tmp_path: Path, lock: str, request: pytest.FixtureRequest
) -> None:
    counter = tmp_path / "restarts"
    sections: dict[str, object] = {
        "services": {"redis": {"restart": {"method": "command",
                                           "command": [sys.executable, "-c", COUNTED_RESTART,
                                                       str(counter)]}}},
        "thresholds": {"recover_deadline_seconds": 0.5},
        "locks": {"wait_seconds": 1},
    }  # fmt: skip
    if lock == "postgres":
        sections["postgres"] = {"url": request.getfixturevalue("database_url")}
    config = write_config(tmp_path, **sections)
    args = ("--config", str(config), "redis", "recover", "--execute", "--yes")
    runs = [finish_cli(p) for p in [start_cli(*args, home=tmp_path) for _ in range(2)]]

    assert counter.read_text() == "restart\n"  # exactly one run restarted Redis
    acted, refused = sorted(runs, key=lambda r: r.returncode)
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
    counter = tmp_path / "restarts"
    api = fake_server({"/dm/metrics": json_body(HEALTHY_METRICS), "/dm/devices/": drip_sse})
    config = write_config(
        tmp_path,
        api={"base_urls": [api.url]},
        redis={"url": redis_url},
        canary={"delivery_timeout_seconds": 0.5},  # this API has no canary: it fails fast
        services={"redis": {"restart": {"method": "command",
                                        "command": [sys.executable, "-c", COUNTED_RESTART,
                                                    str(counter)]}}},
        locks={"wait_seconds": 30},
    )  # fmt: skip
    args = ("--config", str(config), "-o", "json", "redis", "recover", "--execute", "--yes")
    forced = start_cli(*args, "--force", home=tmp_path)  # restarts a Redis that is up
    end = time.monotonic() + 20
    while not counter.exists() and time.monotonic() < end:
        time.sleep(0.05)
    waited = start_cli(*args, home=tmp_path)  # arrives while the restart runs
    first, second = finish_cli(forced), finish_cli(waited)

    assert counter.read_text() == "restart\n"
    assert json.loads(first.stdout)["steps"][1]["outcome"].startswith("restarted Redis")
    steps = json.loads(second.stdout)["steps"]
    assert steps[0]["outcome"] == "Redis answers PING"  # checked again after the wait
    assert steps[1]["outcome"].startswith("skipped: Redis is up")
    assert "is held by e2ee-ops redis recover" in second.stderr  # it said why it waited
