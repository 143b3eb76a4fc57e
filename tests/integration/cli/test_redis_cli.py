"""`redis check`, `redis recover` and `doctor` against the sandbox, with a real Redis outage."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from e2ee_ops import sandbox
from e2ee_ops.reference.client import ReferenceClient
from tests.integration.cli.conftest import token_of
from tests.integration.reference.streams import StreamCollector
from tests.support.cli import cli
from tests.unit.test_readme import NAGIOS_REDIS_CHECK_OK


def run(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return cli("--config", str(config), *args)


def test_doctor_is_green_on_a_healthy_sandbox(sandbox_config: Path, tmp_path: Path) -> None:
    junit = tmp_path / "doctor.xml"
    result = run(sandbox_config, "--output", "json", "doctor", "--junit", str(junit))
    assert result.exit_code == 0, result.stdout + result.stderr
    body = result.json
    assert body["status"] == "OK"
    names = {f["name"] for f in body["findings"]}
    assert {"redis ping", "postgres", "schema", "otpk pools"} <= names
    assert any(n.startswith("api health") for n in names)
    assert any(n.startswith("feature flag") for n in names)
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == str(len(body["findings"]))
    assert suite.get("failures") == "0" and suite.get("errors") == "0"


def test_redis_check_ok_then_nagios_line(sandbox_config: Path) -> None:
    result = run(sandbox_config, "redis", "check")
    assert result.exit_code == 0, result.stdout + result.stderr
    nagios = run(sandbox_config, "--output", "nagios", "redis", "check")
    assert nagios.exit_code == 0
    assert NAGIOS_REDIS_CHECK_OK.match(nagios.stdout), nagios.stdout
    assert nagios.stdout.count("\n") == 1


@pytest.fixture
def receiver(sandbox_state, admin_client):  # type: ignore[no-untyped-def]
    """A fresh user with a device whose client stays connected and acknowledges."""
    account_id = admin_client.create_user(f"receiver-{uuid.uuid4().hex[:8]}")
    token = admin_client.issue_token(account_id)
    with ReferenceClient(sandbox_state.api_url, token) as client:
        device = client.register_device("receiver-phone")["device_id"]
    collector = StreamCollector(sandbox_state.api_url, token, device).start()
    yield account_id, collector
    collector.close()


def test_outage_detected_then_recovered_with_nothing_lost(
    sandbox_state, sandbox_config, receiver
) -> None:
    receiver_id, collector = receiver
    with ReferenceClient(sandbox_state.api_url, token_of(sandbox_state, "demo")) as demo:
        demo_device = sandbox_state.accounts["demo"].device_id
        conv = demo.open_conversation(receiver_id)
        before = demo.send(conv, demo_device, receiver_id)["message_id"]
        assert collector.wait_for(lambda evs: any(e.event == "message" for e in evs), 10)

        sandbox.stop_service(sandbox_state.dir, "redis")
        during = [demo.send(conv, demo_device, receiver_id)["message_id"] for _ in range(5)]

    check = run(sandbox_config, "--output", "json", "redis", "check")
    assert check.exit_code == 2, check.stdout + check.stderr
    findings = {f["name"]: f for f in check.json["findings"]}
    assert findings["redis ping"]["status"] == "CRITICAL"
    assert findings["sse heartbeat relay_lag"]["value"] is True
    assert findings["undelivered messages (5 min)"]["value"] >= 5
    assert any(
        n.startswith("api redis_status") and f["value"] == "unavailable"
        for n, f in findings.items()
    )
    assert collector.message_ids() == [before]  # nothing pushed during the outage

    plan = run(sandbox_config, "--output", "json", "redis", "recover")
    assert plan.exit_code == 0 and plan.json["executed"] is False
    assert not sandbox.status(sandbox_state.dir)[1].running  # the plan changed nothing

    refused = run(sandbox_config, "redis", "recover", "--execute")  # no tty, no --yes
    assert refused.exit_code == 64
    assert "--yes" in refused.stderr

    recovered = run(sandbox_config, "--output", "json", "redis", "recover", "--execute", "--yes")
    assert recovered.exit_code == 0, recovered.stdout + recovered.stderr
    assert all(step["status"] == "OK" for step in recovered.json["steps"])
    assert collector.wait_for(lambda evs: len([e for e in evs if e.event == "message"]) >= 6, 10)
    assert collector.message_ids() == [before, *during]  # each exactly once

    journal = [
        json.loads(line) for line in (sandbox_state.dir / "journal.jsonl").read_text().splitlines()
    ]
    outage = [e for e in journal if e["kind"] == "redis_outage"][-1]["data"]
    assert outage["was_down"] is True and outage["all_delivered"] is True
    assert outage["stored_not_delivered"] == 0 and outage["stored"] >= 5
    assert outage["duration_seconds"] >= 0
    kinds = [e["kind"] for e in journal if e["command"] == "redis recover"]
    assert "plan" in kinds and "outcome" in kinds

    assert run(sandbox_config, "redis", "check").exit_code == 0


def test_unreachable_api_and_wrong_token_are_unknown_not_tracebacks(
    sandbox_state, sandbox_config: Path, tmp_path: Path
) -> None:
    import yaml

    config = yaml.safe_load(sandbox_config.read_text())
    bad_token = tmp_path / "bad.token"
    bad_token.write_text("e2ee_not-a-real-token-000000000")
    bad_token.chmod(0o600)
    config["tokens"]["admin"] = {"file": str(bad_token)}
    wrong = tmp_path / "wrong-token.yaml"
    wrong.write_text(yaml.safe_dump(config))
    result = run(wrong, "--output", "json", "redis", "check")
    assert result.exit_code == 3
    metrics = [f for f in result.json["findings"] if f["name"].startswith("api metrics")]
    assert metrics and metrics[0]["status"] == "UNKNOWN"
    assert "not-a-real-token" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr

    config["api"]["base_urls"] = ["http://127.0.0.1:9"]
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(yaml.safe_dump(config))
    result = run(unreachable, "--output", "json", "doctor")
    assert result.exit_code == 3
    health = [f for f in result.json["findings"] if f["name"].startswith("api health")]
    assert health[0]["status"] == "UNKNOWN" and "127.0.0.1:9" in health[0]["summary"]
    assert "Traceback" not in result.stderr

    config["postgres"]["url"] = "postgresql://ops@127.0.0.1:9/e2ee"
    no_db = tmp_path / "no-db.yaml"
    no_db.write_text(yaml.safe_dump(config))
    result = run(no_db, "--output", "json", "doctor")
    assert result.exit_code == 3
    postgres = {f["name"]: f for f in result.json["findings"]}["postgres"]
    assert postgres["status"] == "UNKNOWN"
    assert "could not connect to PostgreSQL at 127.0.0.1:9" in postgres["summary"]


def test_redis_watch_refreshes_and_exits_by_the_last_status(sandbox_config: Path) -> None:
    result = run(sandbox_config, "redis", "watch", "--interval", "0.5", "--count", "2")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "ping" in result.stdout and "relay_lag" in result.stdout
    # Piped: every refresh in full (title and status line), not only the last frame.
    assert result.stdout.count("redis check") == 2
    assert result.stdout.count("\nOK - all ") == 2


def test_redis_watch_json_is_one_object_per_refresh(sandbox_config: Path) -> None:
    result = run(
        sandbox_config, "redis", "watch", "--interval", "0.5", "--count", "2", "-o", "json"
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["title"] for line in lines] == ["redis check", "redis check"]
