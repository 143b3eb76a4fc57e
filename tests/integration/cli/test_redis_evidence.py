"""Verdicts and records from evidence: a failed probe, a slow PING, a healthy Redis and an
offline phone are not outages; a real outage is recorded with the source of each figure."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from e2ee_ops import sandbox
from e2ee_ops.reference.client import ReferenceClient
from tests.integration.cli.conftest import token_of
from tests.support.cli import cli


def run(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return cli("--config", str(config), *args)


def journal_of(config: Path) -> list[dict[str, Any]]:
    path = Path(yaml.safe_load(config.read_text())["journal"]["path"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def outages(config: Path) -> list[dict[str, Any]]:
    return [e["data"] for e in journal_of(config) if e["kind"] == "redis_outage"]


def with_redis_url(sandbox_config: Path, tmp_path: Path, url: str) -> Path:
    config = yaml.safe_load(sandbox_config.read_text())
    config["redis"]["url"] = url
    config["redis"]["timeout_seconds"] = 0.5
    config["redis"]["down_confirm_seconds"] = 1
    config["journal"]["path"] = str(tmp_path / "journal.jsonl")
    path = tmp_path / "wrong-redis.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def restore_redis(state: sandbox.SandboxState) -> None:
    """Redis running again and every API instance using it, for the tests after this one."""
    sandbox.start_service(state.dir, "redis")
    token = token_of(state, "admin")
    deadline = time.monotonic() + 20
    for url in state.api_urls:
        while time.monotonic() < deadline:
            answer = httpx.get(f"{url}/dm/metrics", headers={"Authorization": f"Bearer {token}"})
            if answer.status_code == 200 and answer.json().get("redis_status") == "ok":
                break
            time.sleep(0.2)


def redis_pid(state: sandbox.SandboxState) -> int | None:
    return sandbox.SandboxState.load(state.dir).redis_pid


@pytest.mark.parametrize("where", ["refused port", "unresolvable name", "port speaking HTTP"])
def test_a_redis_the_toolkit_cannot_reach_but_the_api_calls_healthy_is_unknown_and_not_restarted(
    sandbox_state, sandbox_config: Path, tmp_path: Path, where: str
) -> None:
    url = {
        "refused port": "redis://127.0.0.1:1",
        "unresolvable name": "redis://no-such-redis.invalid:6379",
        "port speaking HTTP": sandbox_state.api_url.replace("http://", "redis://"),
    }[where]
    config = with_redis_url(sandbox_config, tmp_path, url)
    pid = redis_pid(sandbox_state)

    check = run(config, "--output", "json", "redis", "check")
    assert check.exit_code == 3, check.stdout + check.stderr
    ping = {f["name"]: f for f in check.json["findings"]}["redis ping"]
    assert ping["status"] == "UNKNOWN"
    assert "cannot reach Redis from here" in ping["summary"]
    assert "the API reports it healthy" in ping["summary"]
    assert "outage" not in check.json["summary"].lower()

    doctor = run(config, "--output", "json", "doctor")
    assert {f["name"]: f for f in doctor.json["findings"]}["redis ping"]["status"] == "UNKNOWN"

    # A port that never answers looks like a stalled Redis: waited for, then not restarted
    # (a short wait keeps the test quick).
    recover = cli(
        "--config",
        str(config),
        *("--output", "json", "redis", "recover", "--execute", "--yes"),
        env={"E2EE_OPS_THRESHOLDS__REDIS_DOWN_SECONDS": "2"},
    )
    assert recover.exit_code == 3, recover.stdout + recover.stderr
    steps = recover.json["steps"]
    assert "not restarting Redis" in steps[1]["outcome"]
    assert redis_pid(sandbox_state) == pid  # the healthy Redis was not restarted
    assert outages(config) == []


def test_recover_on_a_healthy_redis_records_no_outage_and_exits_0(
    sandbox_state, sandbox_config: Path
) -> None:
    before = len(outages(sandbox_config))
    pid = redis_pid(sandbox_state)
    result = run(sandbox_config, "--output", "json", "redis", "recover", "--execute", "--yes")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.json["summary"].startswith("no outage")
    assert redis_pid(sandbox_state) == pid
    assert len(outages(sandbox_config)) == before  # no outage, no record


def test_a_paused_redis_is_waited_for_with_progress_not_restarted(
    sandbox_state, sandbox_config: Path, tmp_path: Path
) -> None:
    pid = redis_pid(sandbox_state)
    config = yaml.safe_load(sandbox_config.read_text())
    config["redis"]["timeout_seconds"] = 0.5  # a PING slower than this counts as not answered
    quick = tmp_path / "quick-ping.yaml"
    quick.write_text(yaml.safe_dump(config))
    client = redis.Redis.from_url(sandbox_state.redis_url)
    try:
        client.execute_command("CLIENT", "PAUSE", 5000, "ALL")
        result = run(quick, "--output", "json", "redis", "recover", "--execute", "--yes")
    finally:
        client.close()
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    assert redis_pid(sandbox_state) == pid  # a slow PING is not an outage: no restart
    steps = result.json["steps"]
    assert steps[1]["outcome"].startswith("skipped: Redis answers PING")
    assert "waiting up to 60 s for it" in result.stderr  # progress while waiting


def test_a_message_to_an_offline_phone_keeps_checks_green(
    sandbox_state, sandbox_config: Path, admin_client: ReferenceClient
) -> None:
    account = admin_client.create_user(f"offline-{uuid.uuid4().hex[:8]}")
    token = admin_client.issue_token(account)
    with ReferenceClient(sandbox_state.api_url, token) as phone:
        phone.register_device("offline-phone")  # then never connects again
    with ReferenceClient(sandbox_state.api_url, token_of(sandbox_state, "demo")) as demo:
        conv = demo.open_conversation(account)
        demo.send(conv, sandbox_state.accounts["demo"].device_id, account)

    check = run(sandbox_config, "--output", "json", "redis", "check")
    assert check.exit_code == 0, check.stdout + check.stderr
    undelivered = {f["name"]: f for f in check.json["findings"]}["undelivered messages (5 min)"]
    assert undelivered["status"] == "OK" and undelivered["value"] == 0
    assert "1 wait for devices not seen since" in undelivered["summary"]
    assert "runbook's query counts 1 message-device rows" in undelivered["summary"]
    doctor = run(sandbox_config, "--output", "json", "doctor")
    assert doctor.exit_code == 0, doctor.stdout


def test_a_killed_redis_is_recorded_from_the_service_log_with_an_offline_phone_apart(
    sandbox_state, sandbox_config: Path, admin_client: ReferenceClient
) -> None:
    account = admin_client.create_user(f"away-{uuid.uuid4().hex[:8]}")
    token = admin_client.issue_token(account)
    with ReferenceClient(sandbox_state.api_url, token) as phone:
        phone.register_device("away-phone")
    killed = sandbox.SandboxState.load(sandbox_state.dir).redis_pid
    assert killed is not None
    with ReferenceClient(sandbox_state.api_url, token_of(sandbox_state, "demo")) as demo:
        conv = demo.open_conversation(account)
        os.kill(killed, signal.SIGKILL)
        # The server notices within its retry interval; wait for its log line.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if run(sandbox_config, "--output", "json", "redis", "check").exit_code == 2:
                break
            time.sleep(0.3)
        demo.send(conv, sandbox_state.accounts["demo"].device_id, account)
    state = sandbox.SandboxState.load(sandbox_state.dir)
    state.redis_pid = None  # it is dead; the restart command starts a new one
    state.save()

    result = run(sandbox_config, "--output", "json", "redis", "recover", "--execute", "--yes")
    assert result.exit_code == 0, result.stdout + result.stderr
    record = outages(sandbox_config)[-1]
    assert record["start_source"] != "unknown" and record["redis_back_source"] != "unknown"
    assert record["duration_seconds"] > 0
    assert record["deliverable_not_delivered"] == 0
    assert record["waiting_offline"] >= 1  # the away phone's message, not a Redis problem
    # The journal's own earlier observation of the outage is there too.
    seen = [e for e in journal_of(sandbox_config) if e["kind"] == "redis_observation"]
    assert any(e["data"]["down"] for e in seen)
    restore_redis(sandbox_state)


def test_alerts_check_dates_an_outage_from_evidence_never_a_guess(
    sandbox_state, sandbox_config: Path, tmp_path: Path
) -> None:
    config = yaml.safe_load(sandbox_config.read_text())
    config["journal"]["path"] = str(tmp_path / "fresh-journal.jsonl")  # no earlier checks
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(yaml.safe_dump(config))
    sandbox.stop_service(sandbox_state.dir, "redis")
    deadline = time.monotonic() + 15
    result = run(fresh, "--output", "json", "alerts", "check")
    while time.monotonic() < deadline and not any(
        f["name"].startswith("redis down") and f["status"] != "OK" for f in result.json["findings"]
    ):
        time.sleep(0.3)
        result = run(fresh, "--output", "json", "alerts", "check")
    restore_redis(sandbox_state)
    redis_down = [f for f in result.json["findings"] if f["name"].startswith("redis down")][0]
    # Seconds into the outage: the server's own record says so, a WARNING under 60 s
    # (no longer a CRITICAL dated from the oldest undelivered message of the hour).
    assert redis_down["status"] == "WARNING", redis_down
    assert "the server's own record" in redis_down["summary"]


def test_an_api_that_reports_redis_unavailable_while_redis_answers_gets_an_api_restart(
    sandbox_state, sandbox_config: Path, tmp_path: Path, redis_url: str
) -> None:
    # e2ee-ops PINGs a healthy Redis while the API cannot reach its own.
    config = with_redis_url(sandbox_config, tmp_path, redis_url)
    sandbox.stop_service(sandbox_state.dir, "redis")
    try:
        deadline = time.monotonic() + 15
        check = run(config, "--output", "json", "redis", "check")
        while check.exit_code != 2 and time.monotonic() < deadline:
            time.sleep(0.3)
            check = run(config, "--output", "json", "redis", "check")
        assert check.exit_code == 2, check.stdout
        assert "restarts the API instances" in check.json["summary"]
        plan = run(config, "--output", "json", "redis", "recover")
        watch = plan.json["steps"][3]["description"]
        assert "restart the API instances: " in watch and "restart api" in watch
    finally:
        restore_redis(sandbox_state)
