"""`abuse top-senders` against the runbook's query; `abuse block` / `unblock` verified
through the admin API and by the blocked user's own send."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import yaml

from e2ee_ops.dburl import libpq_url
from e2ee_ops.reference.client import ApiFailure
from tests.integration.reference.test_runbook_sql import HIGH_RATE_SQL
from tests.support.cli import cli


def _sql(url: str, statement: str, *params: object) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _url(config: Path) -> str:
    return str(yaml.safe_load(config.read_text())["postgres"]["url"])


@pytest.fixture
def burst(users, ops_config: Path):  # type: ignore[no-untyped-def]
    """alice bursts to three people; bob and carol chat a little."""
    ids, clients, devices = {}, {}, {}
    for name in ("alice", "bob", "carol", "dave"):
        ids[name], clients[name] = users.new(name)
        devices[name] = clients[name].register_device(f"{name}-phone")["device_id"]
    alice = clients["alice"]
    sent = []
    for peer in ("bob", "carol", "dave"):
        conv = alice.open_conversation(ids[peer])
        sent += [alice.send(conv, devices["alice"], ids[peer])["message_id"] for _ in range(4)]
    conv = clients["bob"].open_conversation(ids["carol"])
    for _ in range(2):
        clients["bob"].send(conv, devices["bob"], ids["carol"])
    clients["carol"].send(conv, devices["carol"], ids["bob"])
    url = _url(ops_config)
    _sql(
        url, "UPDATE dm_messages SET created_at = now() - interval '2 hours' WHERE id = %s", sent[0]
    )
    for _ in range(3):
        _sql(url, "INSERT INTO dm_rate_limit_events (user_id) VALUES (%s)", ids["alice"])
    return ids, clients, devices


def test_top_senders_match_the_runbook_query(burst, ops_config: Path) -> None:  # type: ignore[no-untyped-def]
    ids, _, _ = burst
    result = cli("--config", str(ops_config), "-o", "json", "abuse", "top-senders")
    assert result.exit_code == 1, result.stdout + result.stderr  # alice: 3 429s > 1 an hour
    senders = {s["user_id"]: s for s in result.json["data"]["senders"]}
    runbook = dict(_sql(_url(ops_config), HIGH_RATE_SQL))
    assert {u: s["messages"] for u, s in senders.items() if s["messages"]} == runbook
    alice = senders[ids["alice"]]
    assert (alice["messages"], alice["recipients"], alice["new_conversations"]) == (11, 3, 3)
    assert alice["rate_limited"] == 3 and alice["status"] == "WARNING"
    assert result.json["data"]["senders"][0]["user_id"] == ids["alice"]  # worst first
    assert senders[ids["bob"]]["recipients"] == 1

    # Lower thresholds (environment, as cron would set them) make alice critical.
    env = {"E2EE_OPS_THRESHOLDS__ABUSE_FANOUT_PER_HOUR_CRITICAL": "2"}
    strict = cli("--config", str(ops_config), "-o", "json", "abuse", "top-senders", env=env)
    assert strict.exit_code == 2

    # A 5-minute window still sees the recent messages; --limit 1 keeps the worst.
    short = cli(
        "--config",
        str(ops_config),
        "-o",
        "json",
        "abuse",
        "top-senders",
        "--window",
        "5m",
        "--limit",
        "1",
    )
    assert [s["user_id"] for s in short.json["data"]["senders"]] == [ids["alice"]]

    bad = cli("--config", str(ops_config), "abuse", "top-senders", "--window", "soon")
    assert bad.exit_code == 64


def test_no_messages_is_ok(ops_config: Path) -> None:
    result = cli("--config", str(ops_config), "-o", "json", "abuse", "top-senders")
    assert result.exit_code == 0 and result.json["status"] == "OK"


def test_block_then_unblock_verified_by_the_users_own_send(
    users, ops_config: Path, admin, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    mallory_id, mallory = users.new("mallory")
    bob_id, bob = users.new("bob")
    m_dev = mallory.register_device("mallory-phone")["device_id"]
    bob.register_device("bob-phone")
    conv = mallory.open_conversation(bob_id)
    monkeypatch.setenv("MALLORY_TOKEN", mallory.http.headers["Authorization"].split()[1])
    env = {"E2EE_OPS_TOKENS__USER__ENV": "MALLORY_TOKEN"}
    base = ("--config", str(ops_config), "-o", "json", "abuse")

    plan = cli(*base, "block", str(mallory_id), "--reason", "spam burst", env=env)
    assert plan.exit_code == 0 and plan.json["executed"] is False
    assert "not blocked" in plan.json["steps"][0]["description"]
    assert admin.request("GET", f"/admin/users/{mallory_id}")["blocked"] is False

    done = cli(
        *base,
        "block",
        str(mallory_id),
        "--reason",
        "spam burst",
        "--execute",
        "--yes",
        "--verify-token",
        "user",
        env=env,
    )
    assert done.exit_code == 0, done.stdout + done.stderr
    assert "403 USER_BLOCKED" in done.json["steps"][3]["outcome"]
    assert done.json["executed"] is True
    assert [(s["executed"], s["status"]) for s in done.json["steps"]] == [(True, "OK")] * 4
    with pytest.raises(ApiFailure) as refused:
        mallory.send(conv, m_dev, bob_id)
    assert refused.value.status_code == 403 and refused.value.code == "USER_BLOCKED"
    assert admin.request("GET", f"/admin/users/{mallory_id}")["block_reason"] == "spam burst"

    undone = cli(
        *base, "unblock", str(mallory_id), "--execute", "--yes", "--verify-token", "user", env=env
    )
    assert undone.exit_code == 0, undone.stdout + undone.stderr
    assert mallory.send(conv, m_dev, bob_id)["message_id"]

    lines = (ops_config.parent / "journal.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["command"], e["kind"]) for e in entries] == [
        (f"abuse block {mallory_id}", "plan"),
        (f"abuse block {mallory_id}", "outcome"),
        (f"abuse unblock {mallory_id}", "plan"),
        (f"abuse unblock {mallory_id}", "outcome"),
    ]
    assert entries[1]["data"]["reason"] == "spam burst"


def test_block_without_the_users_token_verifies_through_the_admin_api(
    users, ops_config: Path
) -> None:  # type: ignore[no-untyped-def]
    eve_id, _ = users.new("eve")
    _, bob = users.new("bob")
    base = ("--config", str(ops_config), "-o", "json", "abuse")
    done = cli(*base, "block", str(eve_id), "--reason", "fan-out", "--execute", "--yes")
    assert done.exit_code == 0
    assert done.json["steps"][2]["status"] == "OK"
    assert "skipped" in done.json["steps"][3]["outcome"]

    # A token of someone else cannot prove eve's block: the verification fails (CRITICAL).
    env = {
        "E2EE_OPS_TOKENS__USER__ENV": "BOB_TOKEN",
        "BOB_TOKEN": bob.http.headers["Authorization"].split()[1],
    }
    wrong = cli(
        *base,
        "block",
        str(eve_id),
        "--reason",
        "fan-out",
        "--execute",
        "--yes",
        "--verify-token",
        "user",
        env=env,
    )
    assert wrong.exit_code == 2
    assert "is --verify-token this user's?" in wrong.json["steps"][3]["outcome"]


def test_block_needs_a_reason_and_a_known_user(users, ops_config: Path) -> None:  # type: ignore[no-untyped-def]
    eve_id, _ = users.new("eve")
    base = ("--config", str(ops_config), "abuse")
    assert cli(*base, "block", str(eve_id)).exit_code == 64  # --reason is required
    assert cli(*base, "block", str(eve_id), "--reason", " ").exit_code == 64
    missing = cli(*base, "block", "999999999", "--reason", "x")
    assert missing.exit_code == 3 and "404" in missing.stderr
