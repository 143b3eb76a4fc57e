"""`devices stuck`: listing against the runbook's query, reminders through a real SMTP
server and a real HTTP receiver, de-duplication (also across two concurrent runs), --watch."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from e2ee_ops.dburl import libpq_url
from e2ee_ops.reference.client import ReferenceClient
from tests.integration.reference.test_runbook_sql import STUCK_DEVICES_SQL
from tests.support.cli import cli


@dataclass
class Fleet:
    ids: dict[str, int]  # username -> account id
    devices: dict[str, str]  # device name -> device id
    clients: dict[str, ReferenceClient]


def _sql(url: str, statement: str, *params: object) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def fleet(admin, reference_server, clean_db) -> Fleet:  # type: ignore[no-untyped-def]
    ids: dict[str, int] = {}
    clients: dict[str, ReferenceClient] = {}
    for name in ("alice", "bob", "carol", "dave", "erin"):
        ids[name] = admin.create_user(name, None if name == "erin" else f"{name}@example.com")
        clients[name] = ReferenceClient(reference_server.url, admin.issue_token(ids[name]))
    devices = {
        "alice-phone": clients["alice"].register_device("alice-phone", prekeys=2)["device_id"],
        "bob-phone": clients["bob"].register_device("bob-phone", prekeys=7)["device_id"],
        "carol-phone": clients["carol"].register_device("carol-phone", prekeys=30)["device_id"],
        "dave-phone": clients["dave"].register_device("dave-phone", prekeys=30)["device_id"],
        "erin-phone": clients["erin"].register_device("erin-phone", prekeys=3)["device_id"],
        "erin-old": clients["erin"].register_device("erin-old", prekeys=0)["device_id"],
        "alice-laptop": clients["alice"].register_device("alice-laptop", prekeys=40)["device_id"],
    }
    clients["erin"].revoke_device(devices["erin-old"])
    _sql(
        clean_db,
        "UPDATE e2ee_key_bundles SET signed_prekey_uploaded_at = now() - interval '100 days' "
        "WHERE device_id = %s",
        devices["carol-phone"],
    )
    _sql(
        clean_db,
        "UPDATE e2ee_devices SET last_seen_at = now() - interval '40 days' WHERE device_id = %s",
        devices["dave-phone"],
    )
    yield Fleet(ids, devices, clients)
    for c in clients.values():
        c.close()


def run(config: Path, *args: str):  # type: ignore[no-untyped-def]
    return cli("--config", str(config), "--output", "json", "devices", "stuck", *args)


def test_lists_worst_first_and_critical_equals_runbook_query(fleet: Fleet, ops_config: Path):
    result = run(ops_config)
    assert result.exit_code == 2, result.stderr
    devices = result.json["data"]["devices"]
    names = [d["device_name"] for d in devices]
    assert names[:2] == ["alice-phone", "erin-phone"]  # critical, fewest prekeys first
    assert set(names) == {"alice-phone", "erin-phone", "bob-phone", "carol-phone", "dave-phone"}
    critical = {d["device_id"] for d in devices if d["status"] == "CRITICAL"}
    url = yaml_postgres(ops_config)
    assert critical == {str(r[0]) for r in _sql(url, STUCK_DEVICES_SQL)}
    by_name = {d["device_name"]: d for d in devices}
    assert by_name["bob-phone"]["status"] == "WARNING"
    assert by_name["carol-phone"]["signed_prekey_age_days"] >= 99
    assert by_name["dave-phone"]["last_seen_days_ago"] >= 39
    assert result.json["data"]["total"] == 5 and result.json["data"]["critical"] == 2


def yaml_postgres(config: Path) -> str:
    import yaml

    return str(yaml.safe_load(config.read_text())["postgres"]["url"])


def test_filters(fleet: Fleet, ops_config: Path) -> None:
    only_bob = run(ops_config, "--user", str(fleet.ids["bob"]))
    assert only_bob.exit_code == 1
    assert [d["device_name"] for d in only_bob.json["data"]["devices"]] == ["bob-phone"]

    limited = run(ops_config, "--limit", "1")
    assert limited.exit_code == 2
    assert [d["device_name"] for d in limited.json["data"]["devices"]] == ["alice-phone"]
    assert "showing the worst 1" in limited.json["summary"]

    # --threshold 5: bob's 7 prekeys are no longer listed; key age and inactivity still are.
    names = {d["device_name"] for d in run(ops_config, "--threshold", "5").json["data"]["devices"]}
    assert names == {"alice-phone", "erin-phone", "carol-phone", "dave-phone"}

    bad = run(ops_config, "--threshold", "3")
    assert bad.exit_code == 64 and "below the critical threshold" in bad.stderr


def test_pools_only_skips_stale_and_inactive_devices(fleet: Fleet, ops_config: Path) -> None:
    pools = run(ops_config, "--pools-only")
    assert pools.exit_code == 2
    names = [d["device_name"] for d in pools.json["data"]["devices"]]
    assert names == ["alice-phone", "erin-phone", "bob-phone"]
    assert pools.json["data"]["total"] == 3 and pools.json["data"]["critical"] == 2

    # The pools fill the page: the stale and inactive devices are counted, not shown.
    page = run(ops_config, "--limit", "3")
    assert [d["device_name"] for d in page.json["data"]["devices"]] == names
    assert page.json["data"]["total"] == 5 and page.json["data"]["critical"] == 2


def test_healthy_fleet_is_ok(ops_config: Path, users) -> None:  # type: ignore[no-untyped-def]
    _, zoe = users.new("zoe")
    zoe.register_device("zoe-phone", prekeys=50)
    result = run(ops_config)
    assert result.exit_code == 0 and result.json["summary"] == "no active device is stuck"


def test_notify_plan_then_execute_then_deduplicated(
    fleet: Fleet, ops_config: Path, http_receiver, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    _, _, mailbox = smtp_server
    plan = run(ops_config, "--notify", "push,email,webhook")
    assert plan.exit_code == 0, plan.stderr
    assert plan.json["kind"] == "plan" and plan.json["executed"] is False
    assert len(plan.json["steps"]) == 4  # dave is only inactive: listed, not reminded
    assert http_receiver.posts == [] and mailbox.messages == []

    done = run(ops_config, "--notify", "push,email,webhook", "--execute", "--yes")
    assert done.exit_code == 0, done.stdout + done.stderr
    reminded = {"alice-phone", "bob-phone", "carol-phone", "erin-phone"}
    hooks = http_receiver.on("/hook")
    assert {h["device_name"] for h in hooks} == reminded and len(hooks) == 4
    pushes = http_receiver.on("/push")
    assert {p["device_id"] for p in pushes} == {fleet.devices[n] for n in reminded}
    assert all(
        h["Authorization"] == "Bearer push-gateway-secret-123"
        for *_, h in [p for p in http_receiver.posts if p[0] == "/push"]
    )
    # erin has no email address: skipped, not failed.
    assert sorted(r for rcpts, _ in mailbox.messages for r in rcpts) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    _, first = mailbox.messages[0]
    assert first["Subject"] == "Please open the app to refresh your security keys"
    assert "Please open the app." in first.get_payload(decode=True).decode()
    results = [n["result"] for n in done.json["data"]["notifications"]]
    assert results.count("sent") == 11 and results.count("skipped") == 1
    [skipped] = [n for n in done.json["data"]["notifications"] if n["result"] == "skipped"]
    assert skipped == {
        "device_id": fleet.devices["erin-phone"],
        "user_id": fleet.ids["erin"],
        "channel": "email",
        "result": "skipped",
        "detail": "user erin has no email address",
    }
    assert done.json["data"]["channels"] == ["push", "email", "webhook"]
    assert "push-gateway-secret-123" not in done.stdout + done.stderr

    again = run(ops_config, "--notify", "push,email,webhook", "--execute", "--yes")
    assert again.exit_code == 0
    assert len(http_receiver.posts) == 8 and len(mailbox.messages) == 3
    results = [n["result"] for n in again.json["data"]["notifications"]]
    assert results.count("deduplicated") == 11 and "sent" not in results

    lines = (ops_config.parent / "journal.jsonl").read_text().splitlines()
    journal = [json.loads(line) for line in lines]
    assert [e["kind"] for e in journal] == ["plan", "outcome", "plan", "outcome"]


def test_unconfigured_channel_is_a_config_error(fleet: Fleet, ops_config: Path) -> None:
    text = ops_config.read_text().replace("webhook:", "webhook_gone:", 1)
    broken = ops_config.parent / "no-webhook.yaml"
    broken.write_text(text)
    result = run(broken, "--notify", "webhook")
    assert result.exit_code == 3 and "unknown key" in result.stderr

    result = run(ops_config, "--notify", "pager")
    assert result.exit_code == 64


def test_two_concurrent_runs_notify_each_device_once(
    fleet: Fleet, ops_config: Path, http_receiver, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    _, _, mailbox = smtp_server
    http_receiver.delay = 0.2  # the first run is still sending when the second starts
    command = [
        sys.executable,
        "-c",
        "from e2ee_ops.cli.main import run; run()",
        "--config",
        str(ops_config),
        "-o",
        "json",
        "devices",
        "stuck",
        "--notify",
        "webhook,push,email",
        "--execute",
        "--yes",
    ]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=90) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    hooks = http_receiver.on("/hook")
    assert sorted(h["device_id"] for h in hooks) == sorted({h["device_id"] for h in hooks})
    assert len(hooks) == 4 and len(http_receiver.on("/push")) == 4
    assert len(mailbox.messages) == 3
    results = [n["result"] for out, _ in outputs for n in json.loads(out)["data"]["notifications"]]
    assert results.count("sent") == 11 and results.count("deduplicated") == 11


def test_watch_reports_who_recovered(fleet: Fleet, ops_config: Path) -> None:
    alice = fleet.clients["alice"]

    def refill() -> None:
        time.sleep(0.5)
        alice.upload_prekeys(fleet.devices["alice-phone"], 20)

    thread = threading.Thread(target=refill)
    thread.start()
    result = run(
        ops_config,
        "--user",
        str(fleet.ids["alice"]),
        "--watch",
        "--interval",
        "0.2",
        "--watch-timeout",
        "30",
    )
    thread.join()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.json["data"]["recovered"] == [fleet.devices["alice-phone"]]
    assert "1 of 1 device(s) recovered" in result.json["summary"]
    # Not a terminal: progress is JSON Lines on stderr, the last tick has everyone back.
    ticks = [json.loads(line) for line in result.stderr.splitlines()]
    assert ticks and all(t["kind"] == "tick" and t["total"] == 1 for t in ticks)
    assert ticks[-1]["recovered"] == 1 and ticks[-1]["waiting"] == 0


def test_watch_times_out_with_the_devices_still_stuck(fleet: Fleet, ops_config: Path) -> None:
    result = run(
        ops_config,
        "--user",
        str(fleet.ids["bob"]),
        "--watch",
        "--interval",
        "0.1",
        "--watch-timeout",
        "0.3",
    )
    assert result.exit_code == 1
    assert result.json["data"]["still_stuck"] == [fleet.devices["bob-phone"]]
    assert "manual step" in result.json["summary"]


def test_remediation_counts_every_device_stuck_at_the_first_check(
    fleet: Fleet, ops_config: Path
) -> None:
    def ops(*args: str):  # type: ignore[no-untyped-def]
        return cli("--config", str(ops_config), "--output", "json", *args)

    assert ops("incident", "open", "--severity", "P2", "--title", "keys").exit_code in (0, 1)
    first = run(ops_config, "--limit", "1")  # lists one, journals all five
    assert len(first.json["data"]["devices"]) == 1
    assert len(first.json["data"]["stuck_ids"]) == 5
    # --watch follows every device stuck at its start, not only the --limit shown.
    watched = run(
        ops_config, "--limit", "1", "--watch", "--interval", "0.1", "--watch-timeout", "0.2"
    )
    assert len(watched.json["data"]["still_stuck"]) == 5
    fleet.clients["alice"].upload_prekeys(fleet.devices["alice-phone"], 20)
    fleet.clients["bob"].upload_prekeys(fleet.devices["bob-phone"], 20)
    assert run(ops_config).exit_code == 2  # erin's phone is still critical
    ops("incident", "close", "--resolution", "reminded")
    made = cli("--config", str(ops_config), "postmortem", "checklist")
    assert made.exit_code == 0, made.stderr
    line = next(x for x in made.stdout.splitlines() if x.startswith("- Devices remediated"))
    assert line.startswith("- Devices remediated: 2 device(s)"), line
    assert fleet.devices["alice-phone"] in line and fleet.devices["bob-phone"] in line
    assert "stuck at `devices stuck` (" in line


def test_without_an_open_incident_only_the_listed_devices_are_named(
    fleet: Fleet, ops_config: Path
) -> None:
    """Outside an incident nothing counts remediation, so the query stays limit-first."""
    listed = run(ops_config, "--limit", "1")
    assert len(listed.json["data"]["devices"]) == 1
    assert listed.json["data"]["stuck_ids"] == [listed.json["data"]["devices"][0]["device_id"]]
    assert listed.json["data"]["stuck_total"] == 5
