"""Incidents end to end: open, a command's entries joining the timeline, log, status,
close; the webhook and PagerDuty Events v2 (one dedup_key) on a local receiver; drills."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import cli
from tests.support.config import write_ops_config
from tests.support.receiver import HttpReceiver

ROUTING_KEY = "pd-routing-key-0123456789"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as r:
        yield r


@pytest.fixture
def config(tmp_path, reference_server, clean_db, admin_token, receiver) -> Path:  # type: ignore[no-untyped-def]
    hook = tmp_path / "webhook.url"
    hook.write_text(f"{receiver.url}/hooks/T000/B000/secretpath")
    hook.chmod(0o600)
    return write_ops_config(
        tmp_path,
        reference_server.url,
        clean_db,
        admin_token,
        incident={
            "webhook": {"file": str(hook)},
            "pagerduty": {"routing_key": {"env": "PD_KEY"}, "events_url": f"{receiver.url}/pd"},
        },
    )


def run(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return cli("--config", str(config), "--output", "json", *args, env={"PD_KEY": ROUTING_KEY})


def test_incident_timeline_gathers_commands_and_notifies(
    config: Path, receiver: HttpReceiver
) -> None:
    opened = run(config, "incident", "open", "--severity", "P1", "--title", "Redis flapping")
    assert opened.exit_code == 0, opened.stdout + opened.stderr
    incident_id = opened.json["data"]["incident_id"]
    assert incident_id.startswith("INC-")
    [hook] = receiver.at("/hooks")
    assert hook["text"].startswith(f"Incident {incident_id} opened (P1)")
    [trigger] = receiver.at("/pd")
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == incident_id
    assert trigger["routing_key"] == ROUTING_KEY and trigger["payload"]["severity"] == "error"
    assert ROUTING_KEY not in opened.stdout + opened.stderr

    again = run(config, "incident", "open", "--severity", "P2", "--title", "another")
    assert again.exit_code == 64 and incident_id in again.stderr

    # A command run while the incident is open joins its timeline.
    checked = run(config, "alerts", "check")
    assert checked.exit_code == checked.json["exit_code"]
    assert checked.json["status"] in ("OK", "WARNING", "CRITICAL")  # it could tell
    assert run(config, "incident", "log", "users report delays", "--step", "assess").exit_code == 0

    status = run(config, "incident", "status")
    assert status.exit_code == 1  # steps still open
    data = status.json["data"]
    assert data["open"] is True and data["incident_id"] == incident_id
    assert [t["command"] for t in data["timeline"]] == [
        "incident open",
        "incident open",
        "incident open",
        "alerts check",
        "incident log",
    ]
    assert data["steps"]["acknowledge"] and data["steps"]["assess"]
    assert data["steps"]["contain"] is None and data["steps"]["communicate"] is None

    closed = run(config, "incident", "close", "--resolution", "Redis restarted")
    assert closed.exit_code == 0, closed.stdout + closed.stderr
    resolve = receiver.at("/pd")[-1]
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": incident_id,
    }
    assert "resolved" in receiver.at("/hooks")[-1]["text"]
    after = run(config, "incident", "status", "--incident", incident_id).json["data"]
    assert after["open"] is False
    assert after["steps"]["resolve"] and after["steps"]["communicate"]
    assert after["steps"]["postmortem"] is None

    checklist = cli("--config", str(config), "postmortem", "checklist")
    assert checklist.exit_code == 0, checklist.stderr
    assert checklist.stdout.startswith("# Post-mortem: Incident")
    assert "- [ ] Document root cause — not verifiable" in checklist.stdout
    assert run(config, "incident", "status").json["data"]["steps"]["postmortem"]

    journal = [json.loads(x) for x in (config.parent / "journal.jsonl").read_text().splitlines()]
    assert ROUTING_KEY not in json.dumps(journal) and "secretpath" not in json.dumps(journal)
    assert run(config, "incident", "log", "late").exit_code == 64  # nothing open now


def test_a_drill_is_marked_and_never_pages(config: Path, receiver: HttpReceiver) -> None:
    opened = run(config, "incident", "open", "--drill", "--severity", "P0", "--title", "game day")
    assert opened.exit_code == 0, opened.stdout + opened.stderr
    incident_id = opened.json["data"]["incident_id"]
    assert incident_id.startswith("DRILL-")
    assert receiver.at("/hooks")[0]["text"].startswith("[DRILL] ")
    assert run(config, "incident", "close", "--resolution", "practised").exit_code == 0
    assert receiver.at("/pd") == []
    assert all(h["text"].startswith("[DRILL] ") for h in receiver.at("/hooks"))
    checklist = cli("--config", str(config), "postmortem", "checklist")
    assert "**DRILL**" in checklist.stdout


def test_unreachable_channel_is_a_warning_not_a_lost_incident(tmp_path, config: Path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    settings = yaml.safe_load(config.read_text())
    settings["incident"]["pagerduty"]["events_url"] = "http://127.0.0.1:9/pd"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(settings))
    opened = run(broken, "incident", "open", "--severity", "P3", "--title", "typo")
    assert opened.exit_code == 1
    assert "PagerDuty trigger failed" in opened.stdout
    assert run(broken, "incident", "status").json["data"]["open"] is True
    assert run(broken, "incident", "close", "--resolution", "done").exit_code == 1
